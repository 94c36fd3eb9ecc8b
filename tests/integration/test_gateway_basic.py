"""cpx-gateway end to end, driven by a Python client written from docs/protocol.md:
enrolled vs unknown key, forged sender, bad signature, invalid body, duplicates, batch,
delivery and confirmation, offline recipient, dead letters and their retry."""
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


def tree_size(gw):
    m = re.search(r"^tree_size=(\d+)", gw.status(), re.M)
    return int(m.group(1)) if m else -1


def main(build):
    gw = cpxclient.Gateway(build, depts=("POLICE", "CIVIL_AFFAIRS", "EDUCATION"))
    with cpxclient.GatewayTest(gw, failures):
        gw.start()
        S = gw.S
        F = S["F"]
        police = gw.client("POLICE")

        # 1. a valid, signed report is acknowledged with leaf, tree size and a new case id
        env = cpxclient.report(S, "POLICE", recipients=["EDUCATION"])
        cpxclient.sign(env, police.key, police.pub)
        r = police.reply(env)
        check(r is not None and r.WhichOneof("frame") == "ack", "valid report acknowledged")
        ack = r.ack
        check(ack.tree_size > ack.leaf_seq and re.match(r"^JY-\d{4}-\d{6}$", ack.case_id) is not None,
              "ack carries leaf %d < tree size %d and case id %s" % (ack.leaf_seq, ack.tree_size, ack.case_id))

        # 2. the same message again: the original Ack, flagged duplicate
        r2 = police.reply(env)
        check(r2 is not None and r2.WhichOneof("frame") == "ack" and r2.ack.duplicate and
              r2.ack.leaf_seq == ack.leaf_seq and r2.ack.tree_size == ack.tree_size and
              r2.ack.case_id == ack.case_id, "duplicate answered with the original Ack")

        # 3. forged sender: POLICE's connection claims to be EDUCATION
        forged = cpxclient.report(S, "EDUCATION")
        cpxclient.sign(forged, police.key, police.pub)
        r = police.reply(forged)
        check(r is not None and r.WhichOneof("frame") == "nack" and r.nack.code == F.SENDER_MISMATCH and
              not r.nack.retryable and r.nack.leaf_seq > 0 and r.nack.errors[0].path == "sender",
              "forged sender refused (SENDER_MISMATCH, audited)")

        # 4. bad signature: a field changed after signing
        bad = cpxclient.report(S, "POLICE")
        cpxclient.sign(bad, police.key, police.pub)
        bad.discovery_report.observation.what = "changed after signing"
        r = police.reply(bad)
        check(r is not None and r.WhichOneof("frame") == "nack" and r.nack.code == F.BAD_SIGNATURE,
              "tampered body refused (BAD_SIGNATURE)")
        bad2 = cpxclient.report(S, "POLICE")
        cpxclient.sign(bad2, police.key, police.pub)
        bad2.priority = S["C"].ROUTINE
        r = police.reply(bad2)
        check(r is not None and r.WhichOneof("frame") == "nack" and r.nack.code == F.BAD_SIGNATURE,
              "tampered header refused (BAD_SIGNATURE)")

        # 5. signed with another department's key id
        edu_key, edu_pub = cpxclient.load_sign_key(os.path.join(gw.keys, "EDUCATION.sign.key"))
        wk = cpxclient.report(S, "POLICE")
        cpxclient.sign(wk, edu_key, edu_pub)
        r = police.reply(wk)
        check(r is not None and r.WhichOneof("frame") == "nack" and r.nack.code == F.UNKNOWN_KEY,
              "key id not enrolled for the sender refused (UNKNOWN_KEY)")

        # 6. invalid body: wrong ID check digit -> Nack naming the field and rule
        inv = cpxclient.report(S, "POLICE")
        idn = inv.discovery_report.minor.id_number
        inv.discovery_report.minor.id_number = idn[:-1] + ("0" if idn[-1] != "0" else "1")
        inv.discovery_report.observation.what = ""
        cpxclient.sign(inv, police.key, police.pub)
        r = police.reply(inv)
        paths = [e.path for e in r.nack.errors] if r is not None and r.WhichOneof("frame") == "nack" else []
        check(r is not None and r.WhichOneof("frame") == "nack" and r.nack.code == F.INVALID and
              "discovery_report.minor.id_number" in paths and
              "discovery_report.observation.what" in paths and r.nack.leaf_seq > 0,
              "invalid body refused with every field error: %s" % paths)

        # 7. garbage frame -> DECODE_FAILED
        police.sock.send(b"\xff\xff\xff\xff")
        f = police.wait("nack")
        check(f is not None and f.nack.code == F.DECODE_FAILED, "undecodable frame refused")

        # 8. unknown key: the handshake is refused, nothing answered, an AUTH_REFUSED leaf written
        before = tree_size(gw)
        gw.keygen("STRANGER")
        stranger = gw.client("STRANGER")
        s_env = cpxclient.report(S, "STRANGER")
        stranger.submit(s_env)
        check(stranger.recv(1500) is None, "unknown CURVE key gets no answer")
        time.sleep(1.2)
        check(tree_size(gw) > before, "unknown key audited (tree grew %d -> %d)" % (before, tree_size(gw)))
        before = tree_size(gw)
        for _ in range(3):  # a flood: rate-limited to one leaf per key per minute
            s2 = gw.client("STRANGER")
            s2.submit(s_env)
            s2.recv(300)
            s2.close()
        time.sleep(1.2)
        after = tree_size(gw)
        check(after == before, "repeated refusals of one key rate-limited (%d extra leaves)" % (after - before))
        stranger.close()

        # 9. delivery: EDUCATION and CIVIL_AFFAIRS get the report; confirmations remove it
        edu = gw.client("EDUCATION")
        edu.heartbeat()
        d = edu.wait("deliver", 5000)
        check(d is not None and d.deliver.envelope.message_id == env.message_id and d.deliver.attempt >= 1 and
              d.deliver.leaf_seq == ack.leaf_seq, "recipient gets the delivery when it connects")
        check(d is not None and d.deliver.case_id == ack.case_id and d.deliver.envelope == env,
              "the delivery carries the case id and the envelope exactly as signed")
        if d is not None:
            edu.confirm(d.deliver)
        civ = gw.client("CIVIL_AFFAIRS")
        civ.heartbeat()
        got = {}
        t_end = time.time() + 5
        while time.time() < t_end and env.message_id not in got:
            f = civ.wait("deliver", 1000)
            if f is not None:
                got[f.deliver.envelope.message_id] = f.deliver
                civ.confirm(f.deliver)
        check(env.message_id in got, "lead department (CIVIL_AFFAIRS) gets it too")

        # 10. batch: 50 envelopes, one root signature; one of them tampered
        batch = [cpxclient.report(S, "POLICE", recipients=["EDUCATION"], harm=False) for _ in range(50)]
        cpxclient.sign_batch(batch, police.key, police.pub)
        batch[7].discovery_report.reporter.name = "tampered"
        police.submit_batch(batch)
        replies = {}
        t_end = time.time() + 10
        while time.time() < t_end and len(replies) < 50:
            f = police.wait("ack|nack", 2000)
            if f is None:
                break
            x = getattr(f, f.WhichOneof("frame"))
            replies[x.message_id] = f
        n_ack = sum(1 for f in replies.values() if f.WhichOneof("frame") == "ack")
        bad_f = replies.get(batch[7].message_id)
        check(len(replies) == 50 and n_ack == 49 and bad_f is not None and
              bad_f.WhichOneof("frame") == "nack" and bad_f.nack.code == F.BAD_SIGNATURE,
              "batch: 49 acknowledged, the tampered one refused (%d replies, %d acks)" % (len(replies), n_ack))

        # 11. EDUCATION offline -> deliveries wait; reconnect -> delivered, in order, IMMEDIATE first
        edu.close()
        time.sleep(2.0)  # offline_after_ms 1500
        st = gw.status()
        # the status record is rewritten at most once per status_interval_ms (1 s) when
        # it changed: it may show the offline state up to a second after the fact
        t_end = time.time() + 3
        while re.search(r"dept=EDUCATION state=offline", st) is None and time.time() < t_end:
            time.sleep(0.2)
            st = gw.status()
        check(re.search(r"dept=EDUCATION state=offline", st) is not None, "silent recipient marked offline")
        routine = cpxclient.report(S, "POLICE", recipients=["EDUCATION"], harm=False)
        cpxclient.sign(routine, police.key, police.pub)
        r = police.reply(routine)
        urgent = cpxclient.report(S, "POLICE", recipients=["EDUCATION"], harm=True)
        cpxclient.sign(urgent, police.key, police.pub)
        r2 = police.reply(urgent)
        check(r and r2 and r.WhichOneof("frame") == "ack" and r2.WhichOneof("frame") == "ack",
              "accepted while the recipient is offline")
        edu = gw.client("EDUCATION")
        edu.heartbeat()
        seen = []
        t_end = time.time() + 8
        want = {m.message_id for m in batch if m is not batch[7]} | {routine.message_id, urgent.message_id}
        while time.time() < t_end and not want.issubset(set(seen)):
            f = edu.wait("deliver", 1000)
            if f is None:
                continue
            seen.append(f.deliver.envelope.message_id)
            edu.confirm(f.deliver)
        check(want.issubset(set(seen)), "offline recipient gets all %d deliveries on reconnect" % len(want))
        check(seen and seen[0] == urgent.message_id, "IMMEDIATE delivered before the ROUTINE backlog")

        # 12. never confirmed -> dead letter after max_attempts (3), retry re-queues it
        never = cpxclient.report(S, "POLICE", recipients=["EDUCATION"], harm=False)
        cpxclient.sign(never, police.key, police.pub)
        police.reply(never)
        attempts = []
        t_end = time.time() + 8
        while time.time() < t_end:
            f = edu.wait("deliver", 500)
            edu.heartbeat()
            if f is not None and f.deliver.envelope.message_id == never.message_id:
                attempts.append(f.deliver.attempt)
            if "dead delivery" in gw.ctl("deadletter", "list", "--data", os.path.join(gw.dir, "data")).stdout:
                break
        dl = gw.ctl("deadletter", "list", "--data", os.path.join(gw.dir, "data")).stdout
        check(attempts[:3] == [1, 2, 3], "resent with increasing attempt numbers: %s" % attempts)
        check("dead delivery=" in dl and "not confirmed after 3 attempts" in dl, "dead-lettered after 3 attempts")
        m = re.search(r"dead delivery=(\d+)", dl)
        if m:
            gw.ctl("deadletter", "retry", "--data", os.path.join(gw.dir, "data"), "--gateway-key",
                   os.path.join(gw.keys, "GATEWAY.sign.key"), m.group(1))
            f = None
            t_end = time.time() + 5
            while time.time() < t_end:
                edu.heartbeat()
                f = edu.wait("deliver", 500)
                if f is not None and f.deliver.envelope.message_id == never.message_id:
                    break
                f = None
            check(f is not None and f.deliver.attempt == 1, "dead letter retried by cpxctl is delivered again")
            if f is not None:
                edu.confirm(f.deliver)

        # 13. REFUSED_BY_LOCAL dead-letters with the reason
        ref = cpxclient.report(S, "POLICE", recipients=["EDUCATION"], harm=False)
        cpxclient.sign(ref, police.key, police.pub)
        police.reply(ref)
        f = None
        t_end = time.time() + 5
        while time.time() < t_end:
            f = edu.wait("deliver", 500)
            if f is not None and f.deliver.envelope.message_id == ref.message_id:
                break
            f = None
        if f is not None:
            edu.confirm(f.deliver, status=F.REFUSED_BY_LOCAL, reason="no such pupil in roster")
        time.sleep(0.5)
        dl = gw.ctl("deadletter", "list", "--data", os.path.join(gw.dir, "data")).stdout
        check("no such pupil in roster" in dl, "REFUSED_BY_LOCAL dead-letters with the reason")

        # 14. heartbeats from the gateway
        hb = edu.wait("heartbeat", 2000)
        check(hb is not None and hb.heartbeat.sent_ms > 0, "gateway sends heartbeats")

        # 15. clean stop: SIGTERM -> exit 0, and the log verifies
        for c in (police, edu, civ):
            c.close()
        cpxclient.stop_and_verify(gw, check)
        st = gw.status()
        check("dead_letters=1" in st, "status after stop shows the dead letter")
    return cpxclient.verdict(failures)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CPX_BINARY_DIR", "build")))
