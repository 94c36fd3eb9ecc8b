"""Case tracking across failed cycles and kill -9 (docs/cases.md, "Finding a minor's open
case"): the gateway finds a minor's open case in a table held in memory, changed with
each cycle, undone when the cycle's transaction aborts and rebuilt from the committed
case records at start. Several thousand batch-signed reports about a few hundred
minors (ten each, so most link to a case opened earlier, often in the same cycle) are
sent, the first batches each with a poison report in the middle (the
CPX_FAILPOINT_CYCLE_REF failpoint fails its cycle after the reports before it opened or
joined cases; the cycle's frames are retried one by one, the batch's members told to
resend), and the gateway is killed -9
mid-stream and restarted; everything is resent. Then every report about one minor is
on one case, there is exactly one case per minor (cpxctl case stats), the poison is
refused and the audit log verifies."""
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpxclient  # noqa: E402

MINORS = 300
N = int(os.environ.get("CPX_CASES_CRASH_N", "3000"))
BATCH = 100
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def collect(cl, acks, nacks, until_n, timeout):
    t_end = time.time() + timeout
    while time.time() < t_end and len(acks) + len(nacks) < until_n:
        f = cl.recv(200)
        if f is None:
            continue
        k = f.WhichOneof("frame")
        if k == "ack":
            acks.setdefault(f.ack.message_id, f.ack)
        elif k == "nack":
            nacks[f.nack.message_id] = f.nack


def full_log(gw):
    with open(os.path.join(gw.dir, "gateway.log"), "rb") as f:
        return f.read().decode(errors="replace")


def main(build):
    os.environ["CPX_FAILPOINT_CYCLE_REF"] = "poison"
    gw = cpxclient.Gateway(build, depts=("POLICE", "CIVIL_AFFAIRS"))
    with cpxclient.GatewayTest(gw, failures):
        S = gw.S
        with open(os.path.join(gw.dir, "casepolicy.yaml"), "w") as f:
            f.write("version: 1\nkeys:\n  index: keys/CASES.index.key\n  records: keys/CASES.records.key\n")
        with open(gw.config, "a") as f:
            f.write("cases: casepolicy.yaml\n")
        gw.start()
        police = gw.client("POLICE")
        envs = [cpxclient.report(S, "POLICE", harm=(i % 7 == 0), seq=i % MINORS) for i in range(N)]
        # the first batches carry a poison report in the middle: their cycle fails after
        # the reports before it opened or joined cases, and is undone
        poison, frames = [], []
        for i in range(0, N, BATCH):
            b = envs[i:i + BATCH]
            if len(poison) < 5:
                p = cpxclient.report(S, "POLICE", harm=False, seq=MINORS + len(poison))
                p.discovery_report.local_ref = "poison"
                poison.append(p)
                b = b[:BATCH // 2] + [p] + b[BATCH // 2:]
            cpxclient.sign_batch(b, police.key, police.pub)
            frames.append(b)
        acks, nacks = {}, {}
        for b in frames:
            police.submit_batch(b)
        collect(police, acks, nacks, N // 3, 60)
        gw.stop(signal.SIGKILL)
        check(0 < len(acks) < N, "killed with %d of %d acknowledged" % (len(acks), N))
        police.close()
        log = full_log(gw)
        check(log.count("cycle failed") >= len(poison), "each poisoned batch failed its cycle (%d)"
              % log.count("cycle failed"))

        gw.start()
        check(full_log(gw).count("open-case table built") == 2, "the open-case table was rebuilt at start")
        police = gw.client("POLICE")
        acks2, nacks2 = {}, {}
        for attempt in range(5):
            missing = [e for e in envs if e.message_id not in acks2]
            if not missing:
                break
            for i in range(0, len(missing), BATCH):  # each keeps its own batch proof
                police.submit_batch(missing[i:i + BATCH])
            collect(police, acks2, {}, len(acks2) + len(missing), 60)
        for p in poison:
            police.submit(p)
        collect(police, {}, nacks2, len(poison), 20)
        check(len(acks2) == N, "after restart all %d acknowledged (%d)" % (N, len(acks2)))
        check(all(m.message_id in nacks2 and not nacks2[m.message_id].retryable for m in poison),
              "every poison report refused for good")
        same = all(acks2[m].case_id == a.case_id for m, a in acks.items() if m in acks2)
        check(same, "acknowledged before the crash: the same case after it")
        by_minor = {}
        for i, e in enumerate(envs):
            a = acks2.get(e.message_id)
            if a is not None:
                by_minor.setdefault(i % MINORS, set()).add(a.case_id)
        split = {k: v for k, v in by_minor.items() if len(v) != 1}
        check(not split, "every minor's reports on one case (%d minors split, e.g. %s)"
              % (len(split), list(split.items())[:2]))
        cases = set(c for v in by_minor.values() for c in v)
        check(len(cases) == MINORS, "one case per minor: %d cases for %d minors" % (len(cases), MINORS))
        police.close()
        cpxclient.stop_and_verify(gw, check)
        st = gw.ctl("case", "stats", "--json", "--data", os.path.join(gw.dir, "data"), check=False)
        js = json.loads(st.stdout or "{}")
        check(js.get("cases") == MINORS, "cpxctl case stats: %s cases" % js.get("cases"))
    return cpxclient.verdict(failures)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CPX_BINARY_DIR", "build")))
