"""Privilege separation: the running cpx-gateway never holds its Ed25519 private key.

The gateway starts cpx-signer; the test reads every readable mapping of the gateway
process through /proc/PID/mem and looks for the key's 32-byte private seed and its PEM
text. The scan is shown to work: the same scan finds the seed in the signer, and in a
gateway started with `keys.signer: in-process`. The gateway has no descriptor on the key
file. Messages are acknowledged under heads the signer signed; killing the signer makes
the gateway stop (no Ack for work after the kill, only retryable Nacks) and exit 1; after
a restart that work is accepted once; a signer that stops answering gets the waiting
report a retryable Nack and the gateway exits 1; `cpxctl audit verify` passes."""
import os
import re
import signal
import subprocess
import sys
import time

from cryptography.hazmat.primitives import serialization

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpxclient  # noqa: E402

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def exe(pid):
    try:
        return os.path.basename(os.readlink("/proc/%d/exe" % pid))
    except OSError:
        return ""


def memory_contains(pid, needles):
    """Which of needles occur in any readable mapping of pid (via /proc/PID/mem)."""
    found = set()
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            addr, perms = line.split()[:2]
            if perms[0] != "r" or "[vvar" in line or "[vsyscall" in line:
                continue
            lo, hi = (int(x, 16) for x in addr.split("-"))
            if hi - lo > (1 << 30):  # ASan's shadow (terabytes of reserved zeros)
                continue
            off = lo
            while off < hi:
                n = min(hi - off, 1 << 24)
                try:
                    mem.seek(off)
                    chunk = mem.read(n)
                except (OSError, ValueError, OverflowError):
                    break
                for i, nd in enumerate(needles):
                    if nd in chunk:
                        found.add(i)
                off += n
    return found


def key_needles(gw):
    path = os.path.join(gw.keys, "GATEWAY.sign.key")
    pem = open(path, "rb").read()
    sk = serialization.load_pem_private_key(pem, password=None)
    seed = sk.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    b64 = [ln for ln in pem.splitlines() if ln and not ln.startswith(b"-----")][0]
    return path, [seed, b64]


def signer_of(gw):
    kids = [p for p in children(gw.proc.pid) if exe(p) == "cpx-signer"]
    return kids[0] if kids else None


def open_fds(pid):
    out = []
    d = "/proc/%d/fd" % pid
    for fd in os.listdir(d):
        try:
            out.append(os.readlink(os.path.join(d, fd)))
        except OSError:
            pass
    return out


def submit_signed(gw, cl, seq):
    env = cpxclient.report(gw.S, "POLICE", seq=seq)
    cpxclient.sign(env, cl.key, cl.pub)
    return env, cl.reply(env)


def in_process_control(build):
    """With keys.signer: in-process the same scan must find the key in the gateway."""
    gw = cpxclient.Gateway(build, depts=("POLICE",))
    try:
        cfg = open(gw.config).read().replace("  signing_key: keys/GATEWAY.sign.key\n",
                                             "  signing_key: keys/GATEWAY.sign.key\n"
                                             "  signer: in-process\n")
        open(gw.config, "w").write(cfg)
        gw.start()
        _, needles = key_needles(gw)
        check(signer_of(gw) is None, "in-process: no cpx-signer child")
        check(0 in memory_contains(gw.proc.pid, needles),
              "control: the scan finds the private seed in an in-process gateway")
    finally:
        gw.cleanup()


def config_errors(build):
    """A missing signer program or a bad keys.signer value is named, and never started."""
    gw = cpxclient.Gateway(build, depts=("POLICE",))
    try:
        base = open(gw.config).read()
        line = "  signing_key: keys/GATEWAY.sign.key\n"
        for extra, want in (("  signer_program: /nonexistent/cpx-signer\n", "keys.signer_program: /nonexistent/cpx-signer"),
                            ("  signer: sometimes\n", "keys.signer: expected process or in-process")):
            open(gw.config, "w").write(base.replace(line, line + extra))
            r = subprocess.run([gw.bin, "--config", gw.config, "--check"], capture_output=True, text=True)
            check(r.returncode == 2 and want in r.stderr, "--check refuses (%s): %s" % (want, r.stderr.strip()[:200]))
            r = subprocess.run([gw.bin, "--config", gw.config], capture_output=True, text=True, timeout=30)
            check(r.returncode != 0, "the gateway does not start without its signer (rc=%d)" % r.returncode)
    finally:
        gw.cleanup()


def main(build):
    gw = cpxclient.Gateway(build, depts=("POLICE", "CIVIL_AFFAIRS"))
    try:
        gw.start()
        police = gw.client("POLICE")
        env, r = submit_signed(gw, police, 1)
        check(r is not None and r.WhichOneof("frame") == "ack", "report acknowledged (head signed by the signer)")
        signer = signer_of(gw)
        check(signer is not None, "cpx-gateway runs a cpx-signer child (pid %s)" % signer)

        key_path, needles = key_needles(gw)
        gw_found = memory_contains(gw.proc.pid, needles)
        check(not gw_found, "gateway memory holds neither the private seed nor its PEM text")
        if signer:
            check(0 in memory_contains(signer, needles),
                  "control: the same scan finds the seed in the signer's memory")
        real_key = os.path.realpath(key_path)
        check(all(os.path.realpath(t) != real_key for t in open_fds(gw.proc.pid)),
              "gateway has no open descriptor on the key file")
        if signer:
            d = "/proc/%d/fd" % signer
            extra = sorted((int(fd), os.readlink(os.path.join(d, fd))) for fd in os.listdir(d) if int(fd) > 2)
            check(len(extra) == 1 and extra[0][1].startswith("socket:"),
                  "signer holds only its channel besides stdio (no store, no network): %s" % extra)

        # kill the signer: nothing after it is acknowledged; the gateway exits 1
        os.kill(signer, signal.SIGKILL)
        env2, r2 = submit_signed(gw, police, 2)
        kind = r2.WhichOneof("frame") if r2 is not None else None
        check(kind != "ack", "no Ack after the signer died (got %s)" % kind)
        if kind == "nack":
            check(r2.nack.retryable, "its Nack is retryable")
        try:
            rc = gw.proc.wait(20)
        except Exception:
            rc = None
        check(rc == 1, "gateway exited 1 for its supervisor (rc=%s)" % rc)
        check(re.search(r"signer", gw.logtext()) is not None and
              "signer process died" in gw.logtext(), "the log says the signer died")
        gw.proc = None
        police.close()

        # restart: the pending report goes in once; the log verifies
        gw.start()
        police = gw.client("POLICE")
        r3 = police.reply(env2)
        check(r3 is not None and r3.WhichOneof("frame") == "ack" and not r3.ack.duplicate,
              "after restart the report sent during the outage is accepted (first time)")
        r4 = police.reply(env)
        check(r4 is not None and r4.WhichOneof("frame") == "ack" and r4.ack.duplicate,
              "the report acknowledged before the kill is a duplicate")
        signer2 = signer_of(gw)
        police.close()
        rc = gw.stop()
        check(rc == 0, "SIGTERM: gateway exits 0 (rc=%s)" % rc)
        time.sleep(0.2)
        check(signer2 is not None and not os.path.exists("/proc/%d/exe" % signer2),
              "the signer exits with the gateway")

        # a signer that stops answering (SIGSTOP): the cycle waiting on it fails after
        # 10 s with a retryable Nack, and the gateway exits 1
        gw.start()
        police = gw.client("POLICE")
        signer3 = signer_of(gw)
        os.kill(signer3, signal.SIGSTOP)
        env3 = cpxclient.report(gw.S, "POLICE", seq=3)
        cpxclient.sign(env3, police.key, police.pub)
        r5 = police.reply(env3, timeout_ms=20000)
        kind = r5.WhichOneof("frame") if r5 is not None else None
        check(kind == "nack" and r5.nack.retryable,
              "hung signer: the waiting report gets a retryable Nack (got %s)" % kind)
        try:
            rc = gw.proc.wait(20)
        except Exception:
            rc = None
        check(rc == 1, "hung signer: gateway exited 1 (rc=%s)" % rc)
        gw.proc = None
        check(not os.path.exists("/proc/%d/exe" % signer3), "the hung signer was killed by the exiting gateway")
        police.close()
        v = gw.ctl("audit", "verify", "--data", os.path.join(gw.dir, "data"), "--gateway-key",
                   os.path.join(gw.keys, "GATEWAY.sign.pub"), check=False)
        check(v.returncode == 0, "cpxctl audit verify: %s" % (v.stdout.strip() or v.stderr.strip())[:300])
    finally:
        if failures:
            print(gw.logtext())
        gw.cleanup()
    in_process_control(build)
    config_errors(build)
    print("FAILED: %d" % len(failures) if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
