"""Gateway signing-key rotation A -> B -> C through cpxctl and a real gateway restarted on
each new key: the running gateway notices the first rotation and stops signing, refuses to
start on the rotated-away key, starts on the new one; `cpxctl audit verify` passes live and
from exports (cut before and after the hand-overs); old heads verify with stock openssl
against their own key; inclusion and consistency proofs across the rotations check out;
negatives: the wrong first key, a stale old key, a head's key without the log's first key."""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpxclient  # noqa: E402

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def send_reports(gw, n):
    police = gw.client("POLICE")
    acked = 0
    for _ in range(n):
        env = cpxclient.report(gw.S, "POLICE")
        cpxclient.sign(env, police.key, police.pub)
        r = police.reply(env)
        acked += r is not None and r.WhichOneof("frame") == "ack"
    police.close()
    return acked


def set_signing_key(gw, name):
    with open(gw.config) as f:
        cfg = f.read()
    cfg = re.sub(r"signing_key: keys/\S+", "signing_key: keys/%s" % name, cfg)
    with open(gw.config, "w") as f:
        f.write(cfg)


def rotate(gw, old, new):
    r = gw.ctl("gateway-key", "rotate", "--data", gw.data, "--old-key", os.path.join(gw.keys, old),
               "--new-key", os.path.join(gw.keys, new), check=False)
    m = re.search(r"hand-over leaf seq (\d+), head of tree size (\d+)", r.stdout)
    return r, (int(m.group(1)), int(m.group(2))) if m else (None, None)


def openssl_verify(gw, size, pub):
    sb, sig = os.path.join(gw.dir, "head.bin"), os.path.join(gw.dir, "head.sig")
    gw.ctl("audit", "head", "--data", gw.data, "--size", str(size), "--out-signing-bytes", sb,
           "--out-sig", sig)
    r = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", os.path.join(gw.keys, pub),
                        "-rawin", "-in", sb, "-sigfile", sig], capture_output=True, text=True)
    return r.returncode == 0 and "Signature Verified Successfully" in r.stdout


def main(build):
    gw = cpxclient.Gateway(build, depts=("POLICE", "CIVIL_AFFAIRS"))
    gw.data = os.path.join(gw.dir, "data")
    A, B, C = "GATEWAY.sign", "GWB.sign", "GWC.sign"
    try:
        gw.keygen("GWB")
        gw.keygen("GWC")
        gw.start()
        check(send_reports(gw, 3) == 3, "key A: 3 reports acknowledged")

        # rotation A -> B while the gateway runs: a second writer; the gateway stops signing
        r, (s1, h1) = rotate(gw, A + ".key", B + ".pub")
        check(r.returncode == 0 and s1 is not None and h1 == s1 + 1,
              "rotate A -> B with the gateway running: hand-over at seq %s, head %s" % (s1, h1))
        exited = None
        for _ in range(100):
            exited = gw.proc.poll()
            if exited is not None:
                break
            time.sleep(0.1)
        check(exited is not None and exited != 0, "running gateway noticed the rotation and exited (%s)" % exited)
        check("not the audit log's current gateway key" in gw.logtext(),
              "gateway said why it stopped signing")
        gw.stop()

        # the old key no longer starts the gateway
        try:
            gw.start()
            started = True
        except RuntimeError:
            started = False
        check(not started and "Refusing to start" in gw.logtext(), "gateway with key A refuses to start")
        gw.stop()

        set_signing_key(gw, B + ".key")
        gw.start()
        check(send_reports(gw, 3) == 3, "key B: 3 reports acknowledged")
        gw.stop()

        # rotation B -> C with the gateway stopped; a stale old key is refused
        r, _ = rotate(gw, A + ".key", C + ".pub")
        check(r.returncode == 1, "rotate from the retired key A refused (exit %d)" % r.returncode)
        r, (s2, h2) = rotate(gw, B + ".key", C + ".pub")
        check(r.returncode == 0 and h2 == s2 + 1, "rotate B -> C: hand-over at seq %s, head %s" % (s2, h2))
        set_signing_key(gw, C + ".key")
        gw.start()
        check(send_reports(gw, 3) == 3, "key C: 3 reports acknowledged")
        gw.stop()

        show = gw.ctl("gateway-key", "show", "--data", gw.data).stdout
        check(show.count("hand-over") == 2, "gateway-key show lists both hand-overs")

        # live verify from the first key (given, and taken from the store)
        a_pub = os.path.join(gw.keys, A + ".pub")
        v = gw.ctl("audit", "verify", "--data", gw.data, "--gateway-key", a_pub, check=False)
        check(v.returncode == 0 and "2 gateway key rotations followed" in v.stdout,
              "audit verify (live, first key) passes: " + v.stdout.strip()[:200])
        v = gw.ctl("audit", "verify", "--data", gw.data, check=False)
        check(v.returncode == 0, "audit verify (live, store's first key) passes")
        v = gw.ctl("audit", "verify", "--data", gw.data, "--gateway-key",
                   os.path.join(gw.keys, C + ".pub"), check=False)
        check(v.returncode == 1 and "head signature" in v.stdout,
              "audit verify from the current key instead of the first fails: " + v.stdout.strip()[:160])

        # exports: whole log, cut between the rotations, cut after both
        for frm in (0, s1 + 2, s2 + 2):
            out = os.path.join(gw.dir, "x%d.bin" % frm)
            e = gw.ctl("audit", "export", "--data", gw.data, "--from", str(frm), "--to", "0", "--out", out,
                       check=False)
            v = gw.ctl("audit", "verify", "--export", out, "--gateway-key", a_pub, check=False)
            check(e.returncode == 0 and v.returncode == 0 and "2 gateway key rotations" in v.stdout,
                  "export from %d verifies alone: %s" % (frm, v.stdout.strip()[:160]))
            v = gw.ctl("audit", "verify", "--export", out, "--gateway-key", os.path.join(gw.keys, B + ".pub"),
                       check=False)
            check(v.returncode == 1, "export from %d refused under a key that is not the first" % frm)

        # stock openssl: each head against its own key
        check(openssl_verify(gw, h1, A + ".pub"), "openssl: hand-over head %d verifies with key A" % h1)
        check(not openssl_verify(gw, h1, B + ".pub"), "openssl: hand-over head %d does not verify with key B" % h1)
        check(openssl_verify(gw, h1 + 1, B + ".pub"), "openssl: the next head verifies with key B")
        check(openssl_verify(gw, h2, B + ".pub"), "openssl: second hand-over head %d verifies with key B" % h2)
        check(openssl_verify(gw, h2 + 1, C + ".pub"), "openssl: heads after it verify with key C")
        check(not openssl_verify(gw, h2 + 1, A + ".pub"), "openssl: ... and not with key A")

        # proofs across the rotations, checked offline
        d = gw.dir
        gw.ctl("audit", "head", "--data", gw.data, "--out", os.path.join(d, "latest.sth"))
        gw.ctl("audit", "head", "--data", gw.data, "--size", "1", "--out", os.path.join(d, "first.sth"))
        head = gw.ctl("audit", "head", "--data", gw.data, "--json").stdout
        size = int(re.search(r'"tree_size":(\d+)', head).group(1))
        first = gw.ctl("audit", "head", "--data", gw.data, "--size", "1", "--json").stdout
        fsize = int(re.search(r'"tree_size":(\d+)', first).group(1))
        gw.ctl("audit", "prove", "1", "--tree-size", str(size), "--data", gw.data, "--out", os.path.join(d, "p.bin"))
        c_pub = os.path.join(gw.keys, C + ".pub")
        p = gw.ctl("audit", "check-proof", "--proof", os.path.join(d, "p.bin"), "--head", os.path.join(d, "latest.sth"),
                   "--gateway-key", c_pub, "--first-key", a_pub, check=False)
        check(p.returncode == 0, "inclusion of leaf 1 (key A era) in the key-C head: " + p.stdout.strip())
        p = gw.ctl("audit", "check-proof", "--proof", os.path.join(d, "p.bin"), "--head", os.path.join(d, "latest.sth"),
                   "--gateway-key", c_pub, check=False)
        check(p.returncode == 1, "... refused without the log's first key (log id)")
        gw.ctl("audit", "consistency", str(fsize), str(size), "--data", gw.data, "--out", os.path.join(d, "c.bin"))
        p = gw.ctl("audit", "check-proof", "--proof", os.path.join(d, "c.bin"), "--head", os.path.join(d, "latest.sth"),
                   "--old-head", os.path.join(d, "first.sth"), "--old-head-key", a_pub, "--gateway-key", c_pub,
                   "--first-key", a_pub, check=False)
        check(p.returncode == 0, "consistency %d (key A) -> %d (key C): %s" % (fsize, size, p.stdout.strip()))
        p = gw.ctl("audit", "check-proof", "--proof", os.path.join(d, "c.bin"), "--head", os.path.join(d, "latest.sth"),
                   "--old-head", os.path.join(d, "first.sth"), "--gateway-key", c_pub, "--first-key", a_pub,
                   check=False)
        check(p.returncode == 1, "... refused when the old head's key is taken to be key C")
    finally:
        if failures:
            print(gw.logtext()[-2000:])
        gw.cleanup()
    if failures:
        print("%d FAILED" % len(failures))
        return 1
    print("all ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
