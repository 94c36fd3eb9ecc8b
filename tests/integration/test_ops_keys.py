#!/usr/bin/env python3
"""Runbook "rotate a department's keys; revoke a compromised one" (docs/operations.md §3)
against a running gateway: messages signed with the old key, new keys enrolled under the
same code while the gateway runs, the old signing key revoked (KEY_REVOKED leaf); the
old key is then refused, the new one accepted, and `cpxctl audit verify` still verifies
every sender signature — including those made with the revoked key before revocation."""
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpxclient  # noqa: E402

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok -", what)


def verify(gw):
    r = gw.ctl("audit", "verify", "--data", os.path.join(gw.dir, "data"), "--gateway-key",
               os.path.join(gw.keys, "GATEWAY.sign.pub"), "--json", check=False)
    return r.returncode, (json.loads(r.stdout) if r.stdout.strip().startswith("{") else {"raw": r.stdout + r.stderr})


def main():
    gw = cpxclient.Gateway(BUILD, depts=("POLICE", "CIVIL_AFFAIRS"))
    try:
        gw.start()
        data = os.path.join(gw.dir, "data")
        old = gw.client("POLICE")
        for i in range(3):
            e = cpxclient.report(gw.S, "POLICE", seq=i)
            cpxclient.sign(e, old.key, old.pub)
            f = old.reply(e)
            check(f is not None and f.WhichOneof("frame") == "ack", "signed with the old key: accepted")
        old_kid = cpxclient.key_id(old.pub).hex()
        old_key, old_pub = old.key, old.pub

        # new keys made elsewhere, enrolled under the same code while the gateway runs
        newdir = os.path.join(gw.dir, "newkeys")
        os.mkdir(newdir)
        gw.ctl("keygen", "POLICE", "--dir", newdir)
        out = gw.ctl("keyid", os.path.join(newdir, "POLICE.sign.pub")).stdout
        kid = out.split("key_id=")[1].split()[0] if "key_id=" in out else out.strip()
        gw.ctl("enroll", "--data", data, "--gateway-key", os.path.join(gw.keys, "GATEWAY.sign.key"), "POLICE",
               "--curve-pub", os.path.join(newdir, "POLICE.curve.pub"),
               "--sign-pub", os.path.join(newdir, "POLICE.sign.pub"))
        old.close()
        for suffix in ("curve.key", "curve.pub", "sign.key", "sign.pub"):
            shutil.copy(os.path.join(newdir, "POLICE." + suffix), os.path.join(gw.keys, "POLICE." + suffix))
        new = gw.client("POLICE")
        check(kid and kid != old_kid, "new key id %s (old %s)" % (kid, old_kid))

        # before the revocation both signing keys are valid
        e = cpxclient.report(gw.S, "POLICE", seq=10)
        cpxclient.sign(e, old_key, old_pub)
        f = new.reply(e)
        check(f is not None and f.WhichOneof("frame") == "ack", "old signing key still valid before revocation")

        gw.ctl("revoke", "--data", data, "--gateway-key", os.path.join(gw.keys, "GATEWAY.sign.key"), "POLICE",
                   "--key-id", old_kid)
        time.sleep(0.3)
        e = cpxclient.report(gw.S, "POLICE", seq=11)
        cpxclient.sign(e, old_key, old_pub)
        f = new.reply(e)
        check(f is not None and f.WhichOneof("frame") == "nack" and f.nack.code == gw.S["F"].UNKNOWN_KEY and
              any(x.rule == "revoked" for x in f.nack.errors), "revoked key refused (UNKNOWN_KEY, revoked)")
        e = cpxclient.report(gw.S, "POLICE", seq=12)
        cpxclient.sign(e, new.key, new.pub)
        f = new.reply(e)
        check(f is not None and f.WhichOneof("frame") == "ack", "new key accepted")
        new.close()

        tail = [json.loads(l) for l in gw.ctl("audit", "tail", "-n", "1000", "--data", data, "--json").stdout.splitlines()]
        check(any(l["event"] == "KEY_REVOKED" and l["sender"] == "POLICE" for l in tail), "KEY_REVOKED leaf in the log")
        check(sum(1 for l in tail if l["event"] == "KEY_ENROLLED" and l["sender"] == "POLICE") == 2,
              "two KEY_ENROLLED leaves for POLICE")
        check(gw.stop() == 0, "gateway stopped")
        rc, rep = verify(gw)
        sigs = rep.get("sender_signatures", {})
        check(rc == 0 and rep.get("ok") is True, "cpxctl audit verify passes after the revocation")
        check(isinstance(sigs, dict) and sigs.get("failed", 1) == 0,
              "no sender signature failed (%s)" % json.dumps(sigs))
        check(isinstance(sigs, dict) and sigs.get("checked", 0) == 5,
              "all 5 accepted messages' signatures verified, 4 of them by the now revoked key (%s)" % json.dumps(sigs))
    except Exception:
        print(gw.logtext(), file=sys.stderr)
        raise
    finally:
        gw.cleanup()


if __name__ == "__main__":
    main()
