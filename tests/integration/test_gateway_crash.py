"""kill -9 under load: several thousand batch-signed reports are submitted, the gateway
is killed mid-stream and again mid-delivery. After each restart, every acknowledged
message is still there exactly once (a resend gets the original Ack), every message is
eventually acknowledged and delivered, and `cpxctl audit verify` passes."""
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpxclient  # noqa: E402

N = int(os.environ.get("CPX_CRASH_N", "4000"))
BATCH = 100
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def collect(cl, acks, until_n, timeout):
    t_end = time.time() + timeout
    while time.time() < t_end and len(acks) < until_n:
        f = cl.recv(200)
        if f is None:
            continue
        k = f.WhichOneof("frame")
        if k == "ack":
            acks.setdefault(f.ack.message_id, f.ack)
        elif k == "nack" and not f.nack.retryable:
            print("unexpected nack", f.nack)


def main(build):
    gw = cpxclient.Gateway(build, depts=("POLICE", "CIVIL_AFFAIRS"))
    with cpxclient.GatewayTest(gw, failures):
        S = gw.S
        gw.start()
        police = gw.client("POLICE")
        envs = [cpxclient.report(S, "POLICE", harm=(i % 7 == 0), seq=i % 500) for i in range(N)]
        for i in range(0, N, BATCH):
            cpxclient.sign_batch(envs[i:i + BATCH], police.key, police.pub)
        acks = {}
        for i in range(0, N, BATCH):
            police.submit_batch(envs[i:i + BATCH])
        collect(police, acks, N // 3, 60)
        gw.stop(signal.SIGKILL)
        before = dict(acks)
        check(0 < len(before) < N, "killed with %d of %d acknowledged" % (len(before), N))
        police.close()

        gw.start()
        police = gw.client("POLICE")
        # resend everything (acknowledged ones too: they must come back as duplicates)
        acks2 = {}
        for attempt in range(5):
            missing = [e for e in envs if e.message_id not in acks2]
            if not missing:
                break
            for e in missing:
                police.submit(e)
            collect(police, acks2, N, 60)
        check(len(acks2) == N, "after restart all %d acknowledged (%d)" % (N, len(acks2)))
        same = all(acks2[m].duplicate and acks2[m].leaf_seq == a.leaf_seq and acks2[m].case_id == a.case_id
                   for m, a in before.items() if m in acks2)
        check(same, "every message acknowledged before the crash is answered with its original Ack")
        seqs = [a.leaf_seq for a in acks2.values()]
        check(len(set(seqs)) == len(seqs), "no message applied twice (distinct ACCEPTED leaves)")

        # delivery, with another kill -9 in the middle
        civ = gw.client("CIVIL_AFFAIRS")
        civ.heartbeat()
        got = set()
        t_end = time.time() + 30
        while time.time() < t_end and len(got) < N // 2:
            f = civ.recv(200)
            if f is not None and f.WhichOneof("frame") == "deliver":
                got.add(f.deliver.envelope.message_id)
                civ.confirm(f.deliver)
        gw.stop(signal.SIGKILL)
        civ.close()
        police.close()
        gw.start()
        civ = gw.client("CIVIL_AFFAIRS")
        t_end = time.time() + 90
        last_hb = 0
        while time.time() < t_end and len(got) < N:
            if time.time() - last_hb > 0.1:
                civ.heartbeat()
                last_hb = time.time()
            f = civ.recv(200)
            if f is not None and f.WhichOneof("frame") == "deliver":
                got.add(f.deliver.envelope.message_id)
                civ.confirm(f.deliver)
        check(got == set(e.message_id for e in envs), "every message delivered to CIVIL_AFFAIRS (%d)" % len(got))
        time.sleep(1.5)
        civ.close()
        cpxclient.stop_and_verify(gw, check)
        st = gw.status()
        check(re.search(r"queue dept=CIVIL_AFFAIRS", st) is None and "dead_letters=0" in st,
              "outbox empty after confirmations, no dead letters")
    return cpxclient.verdict(failures)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CPX_BINARY_DIR", "build")))
