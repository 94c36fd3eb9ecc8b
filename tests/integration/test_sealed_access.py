"""Sealed juvenile records end to end through a real cpx-gateway with real CURVE clients
(docs/sealed.md): sealing on arrival and by a retroactive SealOrder, routing only to the
policy's recipients, EDUCATION's request answered "no record" (audited, alert raised),
forged sender, the COURT's lawful path, grants refused when expired / exhausted /
re-scoped / used by another department, the auditor's access log, no plaintext in the
data directory or an audit export, vault key rotation while the gateway runs, and a
statistical test that a refused request is indistinguishable from "no record"."""
import math
import os
import random
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpxclient  # noqa: E402

failures = []
NAME = "SealedName Zhangsan"
NAME_ZH = "张封存"
NARR = "SEALNARR-7c1f purse taken at the Huangshan market"
NAME2_ZH = "李仅凭"
NARR2 = "SEALNARR-subject-only 9e4d bicycle lock cut"
MARK = "ORDINARYMARK-5d2e delivered but stored encrypted"


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def envelope(S, sender, sealed=False):
    env = S["E"].Envelope()
    env.message_id = os.urandom(16)
    env.sender = sender
    env.created_ms = int(time.time() * 1000)
    env.priority = S["C"].ROUTINE
    env.sensitivity = S["C"].SEALED if sealed else S["C"].NORMAL
    return env


def access_request(S, sender, subject="", case_id="", basis=None, case_number="(2026)苏0281刑初12号"):
    B = S["B"]
    env = envelope(S, sender)
    r = env.sealed_access_request
    r.officer_id = "officer-7"
    if subject:
        r.subject_id_number = subject
    if case_id:
        r.subject_case_id = case_id
    r.basis = basis or B.CASE_HANDLING
    if r.basis == B.CASE_HANDLING:
        r.requester_case_number = case_number
    else:
        r.regulation = "national regulation art. 3"
    r.purpose = "handling a case"
    return env


def access_read(S, sender, grant_id, subject):
    env = envelope(S, sender)
    r = env.sealed_access_read
    r.grant_id = grant_id
    r.officer_id = "officer-7"
    r.subject_id_number = subject
    return env


def signed(client, env):
    cpxclient.sign(env, client.key, client.pub)
    return env


def frame_text(f):
    """One line naming an Ack or Nack frame, for a check's message."""
    if f is None:
        return "no answer"
    k = f.WhichOneof("frame")
    if k != "nack":
        return k
    return "nack code=%d %s" % (f.nack.code, " ".join(str(e).replace("\n", " ") for e in f.nack.errors))


def decision_for(client, req_id, timeout_ms=10000, confirm=True, held=None):
    """The SealedAccessDecision answering req_id (other deliveries are confirmed). held:
    frames kept by Client.reply, looked at first (the decision can overtake the Ack)."""
    deadline = time.time() + timeout_ms / 1000.0
    while time.time() < deadline:
        if held:
            f = held.pop(0)
            if f.WhichOneof("frame") != "deliver":
                continue
        else:
            client.heartbeat()
            f = client.wait("deliver", min(400, int((deadline - time.time()) * 1000) + 1))
        if f is None:
            continue
        if confirm:
            client.confirm(f.deliver)
        e = f.deliver.envelope
        if e.WhichOneof("body") == "sealed_access_decision" and e.sealed_access_decision.request_id == req_id:
            return e.sealed_access_decision, f
    return None, None


def drain(client, ms=1500):
    got = []
    t_end = time.time() + ms / 1000.0
    while time.time() < t_end:
        client.heartbeat()
        f = client.wait("deliver", 300)
        if f is not None:
            got.append(f.deliver)
            client.confirm(f.deliver)
    return got


def ks_pvalue(a, b):
    """Two-sample Kolmogorov-Smirnov statistic and its asymptotic p-value."""
    a, b = sorted(a), sorted(b)
    i = j = 0
    d = 0.0
    while i < len(a) and j < len(b):
        if a[i] <= b[j]:
            i += 1
        else:
            j += 1
        d = max(d, abs(i / len(a) - j / len(b)))
    n = len(a) * len(b) / (len(a) + len(b))
    lam = (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n)) * d
    p = 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return d, max(0.0, min(1.0, p))


def perm_pvalue(a, b, rounds=2000):
    """Permutation test on the difference of medians."""
    def med(x):
        s = sorted(x)
        return s[len(s) // 2]
    obs = abs(med(a) - med(b))
    pool = a + b
    hits = 0
    rnd = random.Random(7)
    for _ in range(rounds):
        rnd.shuffle(pool)
        if abs(med(pool[:len(a)]) - med(pool[len(a):])) >= obs:
            hits += 1
    return (hits + 1) / (rounds + 1)


def timing_indistinguishable(measure, tries=2):
    """Answer times about a subject with a sealed record (a) and one without (b) must
    not differ measurably. measure() takes fresh samples (a, b), or None when an answer
    went wrong. Two tests at p < 0.01 on shared, noisy cores come out significant about
    once in fifty runs of a gateway that leaks nothing, so a significant result is
    measured again: a real difference shows again, in the same direction; chance
    rarely does. Returns (ok, text for the check)."""
    parts, slower = [], None
    for _ in range(tries):
        got = measure()
        if not got or not got[0] or not got[1]:
            return False, "timing samples missing (an answer was not NO_RECORD)"
        ta, tb = got
        d, pks = ks_pvalue(ta, tb)
        pperm = perm_pvalue(ta, tb)
        ma, mb = sorted(ta)[len(ta) // 2] * 1000, sorted(tb)[len(tb) // 2] * 1000
        parts.append("with a record median %.2f ms, without %.2f ms, KS D=%.3f p=%.3f, permutation p=%.3f"
                     % (ma, mb, d, pks, pperm))
        if pks > 0.01 and pperm > 0.01:
            return True, "; measured again: ".join(parts)
        if slower is not None and slower != (ma > mb):
            return True, "; measured again: ".join(parts) + " (opposite direction: noise)"
        slower = ma > mb
    return False, "; measured again: ".join(parts)


def files_containing(root, needles):
    hits = []
    for dp, _, fs in os.walk(root):
        for fn in fs:
            p = os.path.join(dp, fn)
            with open(p, "rb") as f:
                data = f.read()
            for n in needles:
                if n in data:
                    hits.append((p, n))
    return hits


def scratch_lmdb(path, values):
    """A control: the same strings written unencrypted into a real LMDB with mdb_load,
    so the scan below is shown to find plaintext in data.mdb pages."""
    os.makedirs(path, exist_ok=True)
    lines = ["VERSION=3", "format=print", "type=btree", "mapsize=1048576", "HEADER=END"]
    for i, v in enumerate(values):
        lines.append(" k%d" % i)
        lines.append(" " + "".join("\\%02x" % c for c in v))
    lines.append("DATA=END")
    subprocess.run(["mdb_load", "-f", "/dev/stdin", path], input="\n".join(lines) + "\n",
                   text=True, check=True)


SEALED_POLICY = ("vault_key: keys/vault.key\npseudonym_key: keys/pseudonym.key\n"
                 "seal_orders_from: [COURT, PROCURATORATE]\n"
                 "juvenile_offence_from: [POLICE, PROCURATORATE, COURT]\n"
                 "recipients: [POLICE, PROCURATORATE, COURT, JUSTICE]\n"
                 "alert: [COURT]\ngrant_lifetime_ms: 600000\ngrant_reads: 3\n"
                 "access:\n  - { department: COURT, basis: CASE_HANDLING }\n"
                 "  - { department: PROCURATORATE, basis: CASE_HANDLING, lifetime_ms: 800 }\n"
                 "  - { department: POLICE, basis: STATUTORY_QUERY, approval: sealing_authority, reads: 1 }\n")


def subject_order_without_case_index(build):
    """A subject-only SealOrder on a gateway without case tracking: the earlier messages
    are found by walking the (encrypted) message store for the ID number alone."""
    gw = cpxclient.Gateway(build, depts=("POLICE", "COURT", "WOMENS_FED"), extra_cfg="sealed: sealed.yaml\n")
    try:
        gw.ctl("sealed", "keygen", "--dir", gw.keys)
        with open(os.path.join(gw.dir, "sealed.yaml"), "w") as f:
            f.write(SEALED_POLICY)
        gw.start()
        S = gw.S
        police, court = gw.client("POLICE"), gw.client("COURT")
        court.heartbeat()
        V = cpxclient.id_number(region="320281", born=(2012, 9, 9), seq=909)
        sent = []
        for i in range(2):  # two separate cases: no index links them
            z = cpxclient.report(S, "POLICE", recipients=["WOMENS_FED"], harm=False)
            z.discovery_report.minor.id_number = V if i == 0 else V.lower()
            z.discovery_report.observation.what = "%s (no index %d)" % (NARR2, i)
            r = police.reply(signed(police, z))
            check(r is not None and r.WhichOneof("frame") == "ack", "no case index: report %d about V accepted" % i)
            sent.append(z.message_id)
        other = cpxclient.report(S, "POLICE", recipients=["WOMENS_FED"], harm=False)
        r = police.reply(signed(police, other))
        so = envelope(S, "COURT")
        so.seal_order.subject_id_number = V
        so.seal_order.order_number = "(2026)苏0281刑封3号"
        so.seal_order.legal_basis = "Criminal Procedure Law art. 286"
        so.seal_order.ordered_on.year, so.seal_order.ordered_on.month, so.seal_order.ordered_on.day = 2026, 1, 7
        r = court.reply(signed(court, so))
        check(r is not None and r.WhichOneof("frame") == "ack", "no case index: subject-only seal order accepted")
        wf = gw.client("WOMENS_FED")
        wf.heartbeat()
        got = [d.envelope.message_id for d in drain(wf, 2000)]
        check(not any(m in got for m in sent) and other.message_id in got,
              "no case index: WOMENS_FED gets the unrelated report but neither message about V")
        q = signed(court, access_request(S, "COURT", subject=V))
        court.reply(q)
        d, _ = decision_for(court, q.message_id)
        rd = signed(court, access_read(S, "COURT", d.grant_id if d is not None else b"\0" * 16, V))
        court.reply(rd)
        d, _ = decision_for(court, rd.message_id)
        ids = sorted(S["E"].Envelope.FromString(x).message_id for x in (d.records if d is not None else []))
        check(ids == sorted(sent), "no case index: COURT reads both from the vault (%d)" % len(ids))
        for c in (police, court, wf):
            c.close()
    finally:
        if failures:
            print(gw.logtext())
        gw.cleanup()


def main(build):
    depts = ("POLICE", "COURT", "PROCURATORATE", "EDUCATION", "WOMENS_FED", "CIVIL_AFFAIRS", "JUSTICE")
    gw = cpxclient.Gateway(build, depts=depts, extra_cfg="sealed: sealed.yaml\ncases: casepolicy.yaml\n")
    try:
        gw.ctl("sealed", "keygen", "--dir", gw.keys)
        with open(os.path.join(gw.dir, "casepolicy.yaml"), "w") as f:
            f.write("version: 1\nkeys:\n  index: keys/CASES.index.key\n  records: keys/CASES.records.key\n")
        with open(os.path.join(gw.dir, "sealed.yaml"), "w") as f:
            f.write("vault_key: keys/vault.key\npseudonym_key: keys/pseudonym.key\n"
                    "seal_orders_from: [COURT, PROCURATORATE]\n"
                    "juvenile_offence_from: [POLICE, PROCURATORATE, COURT]\n"
                    "recipients: [POLICE, PROCURATORATE, COURT, JUSTICE]\n"
                    "alert: [COURT]\ngrant_lifetime_ms: 600000\ngrant_reads: 3\n"
                    "access:\n  - { department: COURT, basis: CASE_HANDLING }\n"
                    "  - { department: PROCURATORATE, basis: CASE_HANDLING, lifetime_ms: 800 }\n"
                    "  - { department: POLICE, basis: STATUTORY_QUERY, approval: sealing_authority, reads: 1 }\n")
        gw.start()
        S = gw.S
        B, F = S["B"], S["F"]
        data = os.path.join(gw.dir, "data")
        X = cpxclient.id_number(region="320281", born=(2009, 3, 4), seq=321)
        Y = cpxclient.id_number(region="320281", born=(2009, 5, 6), seq=123)
        police = gw.client("POLICE")
        court = gw.client("COURT")
        court.heartbeat()

        # 1. an ordinary report about X waits for WOMENS_FED (offline) and CIVIL_AFFAIRS
        early = cpxclient.report(S, "POLICE", recipients=["WOMENS_FED"], harm=False)
        early.discovery_report.minor.id_number = X
        early.discovery_report.minor.name = NAME_ZH
        early.discovery_report.observation.what = "left behind; " + NAME + "; " + NARR
        r = police.reply(signed(police, early))
        check(r is not None and r.WhichOneof("frame") == "ack", "ordinary report about X accepted")
        case_c = r.ack.case_id if r is not None and r.WhichOneof("frame") == "ack" else ""
        # ... two about Z (sealed later by an order naming only Z), and an ordinary one
        # whose marker must reach CIVIL_AFFAIRS but never sit in clear in data.mdb
        Z = cpxclient.id_number(region="320281", born=(2010, 7, 8), seq=555)
        zs = []
        for i in range(2):
            z = cpxclient.report(S, "POLICE", recipients=["WOMENS_FED"], harm=False)
            z.discovery_report.minor.id_number = Z
            z.discovery_report.minor.name = NAME2_ZH
            z.discovery_report.observation.what = "%s (%d)" % (NARR2, i)
            r = police.reply(signed(police, z))
            check(r is not None and r.WhichOneof("frame") == "ack", "ordinary report %d about Z accepted" % i)
            zs.append((z, r.ack.case_id if r is not None and r.WhichOneof("frame") == "ack" else ""))
        case_d = zs[0][1]
        plain = cpxclient.report(S, "POLICE", recipients=["CIVIL_AFFAIRS"], harm=False)
        plain.discovery_report.observation.what = MARK
        r = police.reply(signed(police, plain))
        check(r is not None and r.WhichOneof("frame") == "ack", "ordinary report with a marker accepted")
        store_key = os.path.join(gw.keys, "GATEWAY.store.key")
        check(os.path.exists(store_key) and (os.stat(store_key).st_mode & 0o077) == 0,
              "store key file (cpxctl keygen GATEWAY) mode 0600, outside the data directory")

        # 2. a juvenile-offence report marked SEALED: only the policy's recipients get it
        edu = gw.client("EDUCATION")
        edu.heartbeat()
        sealed_rep = cpxclient.report(S, "POLICE", recipients=["COURT", "EDUCATION"], harm=False)
        sealed_rep.sensitivity = S["C"].SEALED
        sealed_rep.discovery_report.minor.id_number = X
        sealed_rep.discovery_report.minor.name = NAME_ZH
        sealed_rep.discovery_report.circumstances.append(B.JUVENILE_OFFENCE)
        sealed_rep.discovery_report.observation.what = "theft suspect " + NAME
        r = police.reply(signed(police, sealed_rep))
        check(r is not None and r.WhichOneof("frame") == "ack", "sealed report accepted")
        got = drain(court, 1500)
        check(any(d.envelope.message_id == sealed_rep.message_id for d in got), "COURT receives the sealed report")
        got = drain(edu, 1000)
        check(not any(d.envelope.message_id == sealed_rep.message_id for d in got),
              "EDUCATION (named by the sender) does not receive it")

        # 2b. JUSTICE gets a sealed message only when party to its case: not for a case it
        #     has no part in; yes once COURT (a judicial organ) referred the case to it
        jus = gw.client("JUSTICE")
        jus.heartbeat()
        W = cpxclient.id_number(region="320281", born=(2011, 2, 3), seq=77)
        s1 = cpxclient.report(S, "POLICE", recipients=["COURT", "JUSTICE"], harm=False)
        s1.sensitivity = S["C"].SEALED
        s1.discovery_report.minor.id_number = W
        r = police.reply(signed(police, s1))
        check(r is not None and r.WhichOneof("frame") == "ack", "sealed report for COURT and JUSTICE accepted: %s" % (r.nack if r is not None and r.WhichOneof("frame") == "nack" else ""))
        case_e = r.ack.case_id if r is not None and r.WhichOneof("frame") == "ack" else ""
        got = drain(court, 1200)
        check(any(d.envelope.message_id == s1.message_id for d in got), "COURT receives it")
        got = drain(jus, 1200)
        check(not any(d.envelope.message_id == s1.message_id for d in got),
              "JUSTICE, named but not party to the case, does not")
        ref = envelope(S, "COURT", sealed=True)
        ref.case_id = case_e
        ref.priority = S["C"].URGENT
        ref.recipients.append("JUSTICE")
        ref.referral.to = "JUSTICE"
        ref.referral.task = S["C"].JUDICIAL_PROTECTION
        ref.referral.reason = "legal aid for the minor"
        ref.referral.due_by_ms = ref.created_ms + 30 * 86400000
        ref.referral.priority = S["C"].URGENT
        r = court.reply(signed(court, ref))
        check(r is not None and r.WhichOneof("frame") == "ack", "COURT's sealed referral to JUSTICE accepted: %s" % (r.nack if r is not None and r.WhichOneof("frame") == "nack" else ""))
        got = drain(jus, 1500)
        check(any(d.envelope.message_id == ref.message_id for d in got), "JUSTICE receives the referral (now party)")
        s2 = cpxclient.report(S, "POLICE", recipients=["COURT", "JUSTICE"], harm=False, case_id=case_e)
        s2.sensitivity = S["C"].SEALED
        s2.discovery_report.minor.id_number = W
        r = police.reply(signed(police, s2))
        check(r is not None and r.WhichOneof("frame") == "ack", "a later sealed report in that case accepted: %s" % (r.nack if r is not None and r.WhichOneof("frame") == "nack" else ""))
        got = drain(jus, 1500)
        check(any(d.envelope.message_id == s2.message_id for d in got), "JUSTICE, party now, receives it")
        drain(court, 500)

        # 3. POLICE forging sender COURT is refused at the session
        forged = access_request(S, "COURT", subject=X)
        r = police.reply(signed(police, forged))
        check(r is not None and r.WhichOneof("frame") == "nack" and r.nack.code == F.SENDER_MISMATCH,
              "POLICE claiming to be COURT refused (SENDER_MISMATCH)")

        # 4. a SealOrder from COURT retroactively takes case C and subject X out of view
        so = envelope(S, "COURT")
        o = so.seal_order
        o.subject_id_number = X
        o.case_ids.append(case_c)
        o.order_number = "(2026)苏0281刑封1号"
        o.legal_basis = "Criminal Procedure Law art. 286"
        o.ordered_on.year, o.ordered_on.month, o.ordered_on.day = 2026, 1, 5
        r = court.reply(signed(court, so))
        check(r is not None and r.WhichOneof("frame") == "ack", "seal order accepted: %s" % (r.nack if r is not None and r.WhichOneof("frame") == "nack" else ""))
        # 4b. a SealOrder naming only the subject's ID number finds every earlier message
        so2 = envelope(S, "COURT")
        so2.seal_order.subject_id_number = Z
        so2.seal_order.order_number = "(2026)苏0281刑封2号"
        so2.seal_order.legal_basis = "Criminal Procedure Law art. 286"
        so2.seal_order.ordered_on.year, so2.seal_order.ordered_on.month, so2.seal_order.ordered_on.day = 2026, 1, 6
        r = court.reply(signed(court, so2))
        check(r is not None and r.WhichOneof("frame") == "ack", "seal order naming only subject Z accepted")
        wf = gw.client("WOMENS_FED")
        wf.heartbeat()
        got = drain(wf, 2000)
        check(not any(d.envelope.message_id == early.message_id for d in got),
              "WOMENS_FED never receives the earlier message after the seal order (%d deliveries)" % len(got))
        check(not any(d.envelope.message_id in (zs[0][0].message_id, zs[1][0].message_id) for d in got),
              "nor either message about Z (sealed by subject alone)")
        civ = gw.client("CIVIL_AFFAIRS")
        civ.heartbeat()
        got = drain(civ, 1500)
        check(not any(d.envelope.message_id == early.message_id for d in got), "nor does CIVIL_AFFAIRS")
        check(any(d.envelope.message_id == plain.message_id and d.envelope.discovery_report.observation.what == MARK
                  for d in got), "CIVIL_AFFAIRS receives the ordinary message, marker intact (decrypted from the store)")
        st = gw.status()
        check(re.search(r"dept=WOMENS_FED .*queued=0", st) is not None, "WOMENS_FED's queue is empty")
        # ... and the case leaves every ordinary case view
        data = os.path.join(gw.dir, "data")
        shown = gw.ctl("case", "show", case_c, "--data", data, "--as", "WOMENS_FED", check=False)
        check(case_c and shown.returncode != 0 and case_c not in shown.stdout,
              "case show: WOMENS_FED finds no case %s after the seal order" % case_c)
        shown = gw.ctl("case", "show", case_c, "--data", data, check=False)
        check(shown.returncode != 0, "nor does the leading-group office's view")
        listed = gw.ctl("case", "list", "--data", data, "--json", check=False).stdout
        check(case_c not in listed, "case list does not show it")
        stats = gw.ctl("case", "stats", "--data", data, "--json", check=False).stdout
        check(case_c not in stats, "case stats do not name it")
        for z, cid in zs:
            shown = gw.ctl("case", "show", cid, "--data", data, check=False)
            check(cid and shown.returncode != 0, "case %s of subject Z left the case views" % cid)
            check(cid not in listed, "case list does not show %s" % cid)

        # 4c. the audit timeline of a sealed case answers as for an unknown case; the
        #     auditor (pseudonym key) learns only that it is sealed
        pkey = os.path.join(gw.keys, "pseudonym.key")
        for cid in (case_c, case_d):
            unk = gw.ctl("audit", "timeline", "JY-2099-999999", "--data", data, check=False)
            tl = gw.ctl("audit", "timeline", cid, "--data", data, check=False)
            check(tl.returncode == unk.returncode and tl.stdout.replace(cid, "ID") == unk.stdout.replace("JY-2099-999999", "ID"),
                  "timeline %s without the auditor key = unknown case: %r" % (cid, tl.stdout[:200]))
            tj = gw.ctl("audit", "timeline", cid, "--data", data, "--json", check=False).stdout
            check(tj == "", "timeline --json of the sealed case prints nothing (as for an unknown case)")
            au = gw.ctl("audit", "timeline", cid, "--data", data, "--auditor", pkey, check=False).stdout
            check(("%s is sealed" % cid) in au and "POLICE" not in au and "WOMENS_FED" not in au,
                  "auditor's timeline: sealed, without content: %r" % au.strip())
        wrong = os.path.join(gw.dir, "wrongkeys")
        os.makedirs(wrong, exist_ok=True)
        gw.ctl("sealed", "keygen", "--dir", wrong)
        au = gw.ctl("audit", "timeline", case_c, "--data", data, "--auditor", os.path.join(wrong, "pseudonym.key"), check=False).stdout
        check(au.strip() == "no events for case %s" % case_c, "a wrong auditor key gets the unknown-case answer")
        tail = gw.ctl("audit", "tail", "-n", "100000", "--data", data).stdout
        check(case_c not in tail and case_d not in tail and "sealed=" not in tail and "P:" not in tail,
              "audit tail names neither sealed case nor any sealed leaf")
        dl = gw.ctl("deadletter", "list", "--data", data).stdout
        check(case_c not in dl and case_d not in dl, "deadletter list names no sealed case")

        # 5. EDUCATION asks: "no record", the same as for a subject without records
        drain(court, 500)
        q1 = signed(edu, access_request(S, "EDUCATION", subject=X))
        r = edu.reply(q1)
        d1, f1 = decision_for(edu, q1.message_id)
        q2 = signed(edu, access_request(S, "EDUCATION", subject=Y))
        edu.reply(q2)
        d2, f2 = decision_for(edu, q2.message_id)
        check(d1 is not None and d1.outcome == B.NO_RECORD and not d1.grant_id and not d1.records,
              "EDUCATION asking about sealed X gets NO_RECORD")
        check(d2 is not None and d2.outcome == B.NO_RECORD, "EDUCATION asking about Y (no record) gets NO_RECORD")
        if f1 is not None and f2 is not None:
            s1 = len(f1.deliver.envelope.SerializeToString())
            s2 = len(f2.deliver.envelope.SerializeToString())
            check(s1 == s2, "the two answers have the same size (%d, %d bytes)" % (s1, s2))
        alerts = [d for d in drain(court, 1500) if d.envelope.WhichOneof("body") == "notice" and
                  d.envelope.notice.kind == B.SEALED_ACCESS_ALERT]
        check(any(q1.message_id in a.envelope.notice.related for a in alerts),
              "COURT (sealing authority) alerted of EDUCATION's request")

        # 6. the lawful path: COURT with a case number gets a grant, then the records
        q = signed(court, access_request(S, "COURT", subject=X))
        court.reply(q)
        d, _ = decision_for(court, q.message_id)
        check(d is not None and d.outcome == B.GRANTED and len(d.grant_id) == 16 and d.reads_allowed == 3,
              "COURT's CASE_HANDLING request GRANTED (3 reads)")
        grant = d.grant_id if d is not None else b"\0" * 16
        rd = signed(court, access_read(S, "COURT", grant, X))
        court.reply(rd)
        d, _ = decision_for(court, rd.message_id)
        recs = []
        if d is not None:
            for raw in d.records:
                e = S["E"].Envelope()
                e.ParseFromString(raw)
                recs.append(e.message_id)
        check(d is not None and d.outcome == B.GRANTED and sealed_rep.message_id in recs and
              early.message_id in recs, "COURT reads the records: the sealed report and the moved one (%d)" % len(recs))
        qz = signed(court, access_request(S, "COURT", subject=Z))
        court.reply(qz)
        d, _ = decision_for(court, qz.message_id)
        rz = signed(court, access_read(S, "COURT", d.grant_id if d is not None else b"\0" * 16, Z))
        court.reply(rz)
        d, _ = decision_for(court, rz.message_id)
        zrecs = [S["E"].Envelope.FromString(raw) for raw in (d.records if d is not None else [])]
        check(sorted(e.message_id for e in zrecs) == sorted(z.message_id for z, _ in zs) and
              all(NARR2 in e.discovery_report.observation.what for e in zrecs),
              "COURT reads both messages about Z from the vault (%d)" % len(zrecs))

        # 7. grants refused: another department, re-scoped, exhausted, expired
        proc = gw.client("PROCURATORATE")
        proc.heartbeat()
        drain(proc, 500)
        other = signed(proc, access_read(S, "PROCURATORATE", grant, X))
        proc.reply(other)
        d, _ = decision_for(proc, other.message_id)
        check(d is not None and d.outcome == B.NO_RECORD and not d.records, "grant replayed by another department refused")
        resc = signed(court, access_read(S, "COURT", grant, Y))
        court.reply(resc)
        d, _ = decision_for(court, resc.message_id)
        check(d is not None and d.outcome == B.NO_RECORD, "grant used for another subject refused")
        outs = []
        for _ in range(3):
            rr = signed(court, access_read(S, "COURT", grant, X))
            court.reply(rr)
            d, _ = decision_for(court, rr.message_id)
            outs.append(d.outcome if d is not None else None)
        check(outs == [B.GRANTED, B.GRANTED, B.NO_RECORD], "reads beyond the grant refused: %s" % outs)
        pq = signed(proc, access_request(S, "PROCURATORATE", subject=X))
        proc.reply(pq)
        d, _ = decision_for(proc, pq.message_id)
        check(d is not None and d.outcome == B.GRANTED, "PROCURATORATE granted (lifetime 800 ms)")
        time.sleep(1.2)
        pr = signed(proc, access_read(S, "PROCURATORATE", d.grant_id if d is not None else grant, X))
        proc.reply(pr)
        d, _ = decision_for(proc, pr.message_id)
        check(d is not None and d.outcome == B.NO_RECORD, "read after expiry refused")

        # 8. a statutory query needs the sealing court's approval
        sq = signed(police, access_request(S, "POLICE", subject=X, basis=B.STATUTORY_QUERY))
        police.reply(sq)
        police.heartbeat()
        d, _ = decision_for(police, sq.message_id)
        check(d is not None and d.outcome == B.PENDING_APPROVAL, "POLICE's statutory query PENDING_APPROVAL")
        ap = envelope(S, "COURT")
        ap.sealed_access_approval.request_id = sq.message_id
        ap.sealed_access_approval.approve = True
        ap.sealed_access_approval.approver = "Judge Chen"
        r = court.reply(signed(court, ap))
        check(r is not None and r.WhichOneof("frame") == "ack", "COURT approves")
        d, _ = decision_for(police, sq.message_id)
        check(d is not None and d.outcome == B.GRANTED and d.reads_allowed == 1, "POLICE granted after approval (1 read)")

        # 9. timing: refused-with-record vs no-record, many tries, no measurable difference
        def measure():
            drain(edu, 300)
            ta, tb = [], []
            # blocks of X,Y then Y,X: a drift in the machine's load (fsync bursts from other
            # work) falls on both subjects alike instead of on whichever came in a run
            order = [s for i in range(40) for s in ((X, Y) if i % 2 == 0 else (Y, X))]
            for subj in order:
                q = signed(edu, access_request(S, "EDUCATION", subject=subj))
                t0 = time.perf_counter()
                edu.submit(q)
                d, _ = decision_for(edu, q.message_id)
                dt = time.perf_counter() - t0
                if d is None or d.outcome != B.NO_RECORD:
                    return None
                (ta if subj == X else tb).append(dt)
            return ta, tb
        ok, text = timing_indistinguishable(measure)
        print("timing: " + text)
        check(ok, "no significant timing difference (" + text + ")")

        # 10. the auditor's access log (needs the pseudonym key)
        log = gw.ctl("sealed", "access-log", X, "--data", data, "--auditor",
                     os.path.join(gw.keys, "pseudonym.key")).stdout
        check(re.search(r"event=SEALED_ACCESS_REQUESTED by=EDUCATION", log) is not None and
              re.search(r"event=SEALED_ACCESS_REFUSED .*result=not_allowed", log) is not None,
              "access log: EDUCATION's request and its refusal")
        check(re.search(r"event=SEALED_ACCESS_GRANTED by=GATEWAY to=COURT", log) is not None and
              re.search(r"event=SEALED_ACCESS_READ by=GATEWAY to=COURT .*records=2", log) is not None,
              "access log: COURT's grant and read with seq numbers")
        check(re.search(r"event=SEAL_ORDERED by=COURT", log) is not None, "access log: the seal order")
        noauth = gw.ctl("sealed", "access-log", X, "--data", data, check=False)
        check(noauth.returncode != 0, "access log refused without the auditor credential")

        # 11. vault key rotation while the gateway runs; records still readable after it
        rot = gw.ctl("sealed", "rotate-key", "--data", data, "--vault-key", os.path.join(gw.keys, "vault.key"),
                     "--pseudonym-key", os.path.join(gw.keys, "pseudonym.key"), "--gateway-key",
                     os.path.join(gw.keys, "GATEWAY.sign.key"), "--batch", "2", check=False)
        check(rot.returncode == 0 and "rotated vault key" in rot.stdout, "rotate-key: %s" % (rot.stdout + rot.stderr).strip())
        # (a rotation under load can outlast the heartbeat timeout: greet the gateway
        # again, and keep a decision that overtakes its Ack)
        court.heartbeat()
        held = []
        q = signed(court, access_request(S, "COURT", subject=X))
        r = court.reply(q, keep=held)
        d, _ = decision_for(court, q.message_id, held=held)
        check(d is not None and d.outcome == B.GRANTED,
              "after rotation, COURT's request granted (%s; %s)" % (frame_text(r), None if d is None else d.outcome))
        rd = signed(court, access_read(S, "COURT", d.grant_id if d is not None else grant, X))
        r = court.reply(rd, keep=held)
        d, _ = decision_for(court, rd.message_id, held=held)
        check(d is not None and d.outcome == B.GRANTED and len(d.records) == 2,
              "records readable after rotation (%s; %s)" % (frame_text(r), None if d is None else
                                                           (d.outcome, len(d.records))))
        log = gw.ctl("sealed", "access-log", X, "--data", data, "--auditor", os.path.join(gw.keys, "pseudonym.key")).stdout

        # 12. nothing in clear: data directory and an audit export
        for c in (police, court, edu, wf, civ, proc, jus):
            c.close()
        gw.stop()
        export = os.path.join(gw.dir, "export.bin")
        gw.ctl("audit", "export", "--data", data, "--out", export, check=False)
        needles = [X.encode(), NAME.encode(), NAME_ZH.encode(), NARR.encode(), Z.encode(), NAME2_ZH.encode(),
                   NARR2.encode(), MARK.encode()]
        # every byte of data.mdb (free pages included) and of every export
        hits = files_containing(data, needles) + (files_containing(os.path.dirname(export), needles)
                                                  if os.path.exists(export) else [])
        hits = [h for h in hits if not h[0].endswith(".py") and "/py/" not in h[0] and "/keys/" not in h[0]
                and not h[0].endswith(".log") and "/scratch/" not in h[0]]
        check(os.path.exists(export), "audit export written")
        check(not hits, "no sealed name, ID number or narrative, nor the ordinary marker, in clear in "
                        "the data directory or export: %s" % hits[:3])
        scratch = os.path.join(gw.dir, "scratch")
        scratch_lmdb(scratch, needles)
        found = {n for _, n in files_containing(scratch, needles)}
        check(found == set(needles), "control: the same scan finds all %d strings written unencrypted to an LMDB (%d)"
              % (len(needles), len(found)))

        # 12b. the store key: a wrong one or a missing one stops the start, loudly
        os.rename(store_key, store_key + ".good")
        p = subprocess.run([gw.bin, "--config", gw.config], capture_output=True, text=True, timeout=20)
        check(p.returncode != 0 and "store key file missing" in p.stderr and not os.path.exists(store_key),
              "missing store key: refuses to start, makes no new key: %s" % p.stderr.strip()[-160:])
        with open(store_key, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        os.chmod(store_key, 0o600)
        p = subprocess.run([gw.bin, "--config", gw.config], capture_output=True, text=True, timeout=20)
        check(p.returncode != 0 and "wrong store key" in p.stderr, "wrong store key: refuses to start: %s"
              % p.stderr.strip()[-160:])
        os.replace(store_key + ".good", store_key)

        # 13. a wrong vault key: the gateway refuses to start
        os.rename(os.path.join(gw.keys, "vault.key"), os.path.join(gw.keys, "vault.key.good"))
        subprocess.run([gw.cpxctl, "sealed", "keygen", "--dir", os.path.join(gw.dir, "other")], capture_output=True)
        os.makedirs(os.path.join(gw.dir, "other"), exist_ok=True)
        r = subprocess.run([gw.cpxctl, "sealed", "keygen", "--dir", os.path.join(gw.dir, "other")], capture_output=True)
        os.rename(os.path.join(gw.dir, "other", "vault.key"), os.path.join(gw.keys, "vault.key"))
        p = subprocess.run([gw.bin, "--config", gw.config], capture_output=True, text=True, timeout=20)
        check(p.returncode != 0 and "lost or wrong vault key" in p.stderr, "wrong vault key: gateway refuses to start")
    finally:
        if failures:
            print(gw.logtext())
        gw.cleanup()
    subject_order_without_case_index(build)
    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
