"""Nothing of a cycle leaves the gateway before its commit is durable. The flush of
the commit that accepted a report is made to fail (CPX_FAILPOINT_SYNC_FAIL, as a
failing disk would): the sender must get no Ack and the gateway must stop with an
error. Restarted without the failpoint, the same envelope resent is answered from
the store (duplicate, same leaf), the recipient gets it exactly once, and the log
verifies."""
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


def main():
    build = sys.argv[1]
    import tempfile
    import atexit
    import shutil
    schema_dir = tempfile.mkdtemp(prefix="cpx-syncfail-py-")
    atexit.register(shutil.rmtree, schema_dir, True)  # the generated classes go with the test
    S = cc.load_schema(schema_dir)
    gw = cc.Gateway(build, depts=("POLICE", "CIVIL_AFFAIRS"))
    try:
        os.environ["CPX_FAILPOINT_SYNC_FAIL"] = "1"
        gw.start()
        del os.environ["CPX_FAILPOINT_SYNC_FAIL"]
        po = gw.client("POLICE")
        env = cc.report(S, "POLICE", recipients=["CIVIL_AFFAIRS"], harm=False)
        cc.sign(env, po.key, po.pub)
        po.submit(env)
        f = po.wait("ack|nack", 3000)
        check(f is None, "no reply for a commit whose flush failed (got %s)" %
              (f.WhichOneof("frame") if f is not None else "nothing"))
        t_end = time.time() + 10
        while gw.proc.poll() is None and time.time() < t_end:
            time.sleep(0.1)
        rc = gw.proc.poll()
        check(rc is not None and rc != 0, "gateway stopped with an error (exit %r)" % (rc,))
        check("flushing the last commit failed" in gw.logtext(), "the failed flush is logged")
        po.close()
        gw.proc = None

        gw.start()
        po = gw.client("POLICE")
        po.submit(env)
        f = po.wait("ack|nack", 5000)
        check(f is not None and f.WhichOneof("frame") == "ack",
              "after restart the resent envelope is acknowledged")
        first_seq = f.ack.leaf_seq if f is not None and f.WhichOneof("frame") == "ack" else None
        po.submit(env)
        g = po.wait("ack|nack", 5000)
        check(g is not None and g.WhichOneof("frame") == "ack" and g.ack.duplicate and
              g.ack.leaf_seq == first_seq, "a second resend gets the same Ack, marked duplicate")
        civ = gw.client("CIVIL_AFFAIRS")
        civ.heartbeat()
        got = []
        t_end = time.time() + 6
        while time.time() < t_end:
            d = civ.wait("deliver", 500)
            if d is None:
                if got:
                    break
                continue
            if d.deliver.envelope.message_id == env.message_id:
                got.append(d.deliver.delivery_id)
            civ.confirm(d.deliver)
        check(len(set(got)) == 1, "the recipient gets it exactly once (%d deliveries)" % len(set(got)))
        civ.close()
        po.close()
    finally:
        gw.stop()
    out = gw.ctl("audit", "verify", "--data", os.path.join(gw.dir, "data"), check=False)
    check(out.returncode == 0, "audit verify passes")
    gw.cleanup()
    print("%d failed" % fails)
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
