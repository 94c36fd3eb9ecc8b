"""Routing through a running gateway with the shipped Jiangyin rules: a harm report
reaches POLICE, CIVIL_AFFAIRS and the minor's town office (not enrolled: it waits in
its outbox); a referral linked by in_reply_to reaches its named recipient in the same
case; the disposition goes back to the referrer; an unknown case is refused."""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpxclient  # noqa: E402

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def deliveries(cl, want_ids, timeout=5):
    got = {}
    t_end = time.time() + timeout
    cl.heartbeat()
    while time.time() < t_end and not set(want_ids).issubset(got):
        f = cl.wait("deliver", 500)
        cl.heartbeat()
        if f is not None:
            got[f.deliver.envelope.message_id] = f.deliver
            cl.confirm(f.deliver)
    return got


def main(build):
    routes = os.path.join(cpxclient.SRC, "deploy", "jiangyin", "routes.yaml")
    gw = cpxclient.Gateway(build, depts=("POLICE", "CIVIL_AFFAIRS", "EDUCATION", "HEALTH"), routes=routes)
    with cpxclient.GatewayTest(gw, failures):
        gw.start()
        S = gw.S
        C, B = S["C"], S["B"]
        edu, police, civ, health = (gw.client(d) for d in ("EDUCATION", "POLICE", "CIVIL_AFFAIRS", "HEALTH"))

        rep = cpxclient.report(S, "EDUCATION", harm=True, town="TOWN_HUASHI")
        cpxclient.sign(rep, edu.key, edu.pub)
        a = edu.reply(rep)
        check(a is not None and a.WhichOneof("frame") == "ack", "harm report accepted")
        case = a.ack.case_id
        check(rep.message_id in deliveries(police, [rep.message_id]), "harm report -> POLICE")
        check(rep.message_id in deliveries(civ, [rep.message_id]), "harm report -> CIVIL_AFFAIRS")
        time.sleep(1.2)
        check(re.search(r"queue dept=TOWN_HUASHI waiting=1", gw.status()) is not None,
              "harm report -> TOWN_HUASHI (not enrolled: waits in its outbox)")
        check(re.search(r"queue dept=EDUCATION", gw.status()) is None, "never sent back to its sender")

        ref = S["E"].Envelope()
        ref.message_id = os.urandom(16)
        ref.sender = "CIVIL_AFFAIRS"
        ref.created_ms = int(time.time() * 1000)
        ref.priority = C.URGENT
        ref.sensitivity = C.NORMAL
        ref.in_reply_to = rep.message_id
        ref.referral.to = "HEALTH"
        ref.referral.task = C.MEDICAL_PROTECTION
        ref.referral.reason = "injuries need examination"
        ref.referral.due_by_ms = ref.created_ms + 86400000
        ref.referral.priority = C.URGENT
        cpxclient.sign(ref, civ.key, civ.pub)
        a = civ.reply(ref)
        check(a is not None and a.WhichOneof("frame") == "ack" and a.ack.case_id == case,
              "referral linked to the report's case by in_reply_to (%s)" % (a.ack.case_id if a else None))
        check(ref.message_id in deliveries(health, [ref.message_id]), "referral -> its named recipient HEALTH")

        dis = S["E"].Envelope()
        dis.message_id = os.urandom(16)
        dis.sender = "HEALTH"
        dis.created_ms = int(time.time() * 1000)
        dis.priority = C.ROUTINE
        dis.sensitivity = C.NORMAL
        dis.in_reply_to = ref.message_id
        dis.disposition.referral_id = ref.message_id
        dis.disposition.action = B.MEDICAL_TREATMENT
        dis.disposition.status = B.DISPOSITION_DONE
        cpxclient.sign(dis, health.key, health.pub)
        a = health.reply(dis)
        check(a is not None and a.WhichOneof("frame") == "ack" and a.ack.case_id == case, "disposition accepted in the case")
        check(dis.message_id in deliveries(civ, [dis.message_id]), "disposition -> back to the referrer CIVIL_AFFAIRS")

        unk = cpxclient.report(S, "EDUCATION", harm=False, case_id="JY-2026-999999")
        cpxclient.sign(unk, edu.key, edu.pub)
        r = edu.reply(unk)
        check(r is not None and r.WhichOneof("frame") == "nack" and r.nack.code == S["F"].UNKNOWN_REFERENCE and
              r.nack.errors[0].path == "case_id", "unknown case id refused (UNKNOWN_REFERENCE)")
        for c in (edu, police, civ, health):
            c.close()
        cpxclient.stop_and_verify(gw, check)
        tl = gw.ctl("audit", "timeline", case, "--data", os.path.join(gw.dir, "data"), check=False).stdout
        check(tl.count("ACCEPTED") >= 3, "the case timeline shows report, referral and disposition")
    return cpxclient.verdict(failures)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CPX_BINARY_DIR", "build")))
