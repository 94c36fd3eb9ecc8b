"""One department's message that makes a cycle fail inside the gateway (an internal
error, forced here by the CPX_FAILPOINT_CYCLE_REF failpoint) must not stop anyone
else's traffic or the gateway: the cycle's other frames are retried one by one and
acknowledged, the lone culprit is refused for good with INTERNAL, the members of a batch
holding it are told to retry, and the log verifies."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpxclient as cc  # noqa: E402

fails = 0


def check(cond, what):
    global fails
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        fails += 1


def collect(client, ids, timeout=10.0):
    got = {}
    t0 = time.time()
    while len(got) < len(ids) and time.time() - t0 < timeout:
        f = client.recv(500)
        if f is None:
            continue
        k = f.WhichOneof("frame")
        if k in ("ack", "nack"):
            m = getattr(f, k)
            if m.message_id in ids:
                got[m.message_id] = (k, m.code if k == "nack" else 0, m.retryable if k == "nack" else None)
    return got


def main():
    build = sys.argv[1]
    import tempfile
    import atexit
    import shutil
    schema_dir = tempfile.mkdtemp(prefix="cpx-poison-py-")
    atexit.register(shutil.rmtree, schema_dir, True)  # the generated classes go with the test
    S = cc.load_schema(schema_dir)
    os.environ["CPX_FAILPOINT_CYCLE_REF"] = "poison"
    gw = cc.Gateway(build, depts=("POLICE", "CIVIL_AFFAIRS", "HEALTH"))
    gw.start()
    try:
        po, he = gw.client("POLICE"), gw.client("HEALTH")
        kp, pp = cc.load_sign_key(os.path.join(gw.dir, "keys", "POLICE.sign.key"))
        kh, ph = cc.load_sign_key(os.path.join(gw.dir, "keys", "HEALTH.sign.key"))
        # single envelopes from two departments, the poison among them, sent back to back
        goods_p = [cc.report(S, "POLICE", harm=False) for _ in range(4)]
        goods_h = [cc.report(S, "HEALTH", harm=False) for _ in range(4)]
        bad = cc.report(S, "POLICE", harm=False)
        bad.discovery_report.local_ref = "poison"
        for e in goods_p + [bad]:
            cc.sign(e, kp, pp)
        for e in goods_h:
            cc.sign(e, kh, ph)
        for a, b in zip(goods_p[:2] + [bad] + goods_p[2:], goods_h + [None]):
            po.submit(a)
            if b is not None:
                he.submit(b)
        gp = collect(po, {e.message_id for e in goods_p + [bad]})
        gh = collect(he, {e.message_id for e in goods_h})
        check(all(gp.get(e.message_id, ("",))[0] == "ack" for e in goods_p), "POLICE's other reports acknowledged")
        check(all(gh.get(e.message_id, ("",))[0] == "ack" for e in goods_h), "HEALTH's reports acknowledged")
        r = gp.get(bad.message_id)
        check(r is not None and r[0] == "nack" and r[1] == S["F"].INTERNAL and r[2] is False,
              "the culprit refused with INTERNAL, not retryable (%r)" % (r,))
        # a batch holding the poison: every member told to retry
        batch = [cc.report(S, "POLICE", harm=False) for _ in range(3)]
        batch[1].discovery_report.local_ref = "poison"
        cc.sign_batch(batch, kp, pp)
        po.submit_batch(batch)
        gb = collect(po, {e.message_id for e in batch})
        check(len(gb) == 3 and all(v[0] == "nack" and v[2] is True for v in gb.values()),
              "a batch holding it: all members told to retry (%r)" % (list(gb.values()),))
        # the gateway keeps serving
        e = cc.report(S, "HEALTH", harm=False)
        cc.sign(e, kh, ph)
        he.submit(e)
        g = collect(he, {e.message_id})
        check(g.get(e.message_id, ("",))[0] == "ack", "later traffic acknowledged")
        check(gw.proc.poll() is None, "gateway still running")
        gw.stop()
        out = gw.ctl("audit", "verify", "--data", os.path.join(gw.dir, "data"), check=False)
        check(out.returncode == 0, "audit verify passes")
    finally:
        gw.cleanup()
    print("%d failed" % fails)
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
