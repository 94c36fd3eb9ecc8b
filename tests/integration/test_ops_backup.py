#!/usr/bin/env python3
"""Follows the backup and restore runbook of docs/operations.md against a real gateway:

  1. reports stream into the gateway (load) while `mdb_copy DATA BACKUP` runs;
  2. the copy is restored into a new folder and a gateway is started on it;
  3. `cpxctl audit verify` passes on the restored store;
  4. every message acknowledged before the copy started is in the restored log (its
     ACCEPTED leaf at the sequence number its Ack named) and a resend of it is answered
     as a duplicate with the original leaf — nothing acknowledged before the backup is lost;
  5. the restored gateway accepts new work and its log still verifies."""
import json
import os
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpxclient  # noqa: E402

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok -", what)


class Load(threading.Thread):
    """POLICE submits reports one after another; records (ack time, envelope, Ack)."""

    def __init__(self, gw):
        super().__init__(daemon=True)
        self.gw = gw
        self.acked = []
        self.stop = False
        self.error = None

    def run(self):
        try:
            c = self.gw.client("POLICE")
            i = 0
            while not self.stop:
                envs = []
                for _ in range(20):
                    e = cpxclient.report(self.gw.S, "POLICE", harm=(i % 2 == 0), seq=i % 400)
                    cpxclient.sign(e, c.key, c.pub)
                    envs.append(e)
                    i += 1
                for e in envs:
                    c.submit(e)
                got = 0
                while got < len(envs):
                    f = c.wait("ack|nack", 10000)
                    if f is None:
                        raise RuntimeError("no reply under load")
                    if f.WhichOneof("frame") == "ack":
                        env = next(x for x in envs if x.message_id == f.ack.message_id)
                        self.acked.append((time.time(), env, f.ack))
                    got += 1
            c.close()
        except Exception as e:  # reported by the main thread
            self.error = e


def main():
    gw = cpxclient.Gateway(BUILD, depts=("POLICE", "CIVIL_AFFAIRS"))
    restored = None
    try:
        gw.start()
        data = os.path.join(gw.dir, "data")
        load = Load(gw)
        load.start()
        while len(load.acked) < 200 and load.error is None:
            time.sleep(0.05)
        check(load.error is None, "load running: %d acknowledged so far" % len(load.acked))

        # the runbook: an online copy while the gateway is writing
        backup = os.path.join(gw.dir, "backup-1")
        os.mkdir(backup, 0o700)
        t0 = time.time()
        before = [a for a in load.acked if a[0] < t0]
        r = subprocess.run(["mdb_copy", data, backup], capture_output=True, text=True)
        t1 = time.time()
        check(r.returncode == 0, "mdb_copy of the live store (%.2f s): %s" % (t1 - t0, r.stderr.strip()))
        time.sleep(0.5)
        load.stop = True
        load.join(30)
        check(load.error is None, "load finished without errors")
        during = [a for a in load.acked if a[0] >= t0]
        check(len(during) > 0, "the gateway kept acknowledging during and after the copy (%d)" % len(during))
        gw.stop()

        # restore into a new folder, start a gateway on it (same keys)
        newdata = os.path.join(gw.dir, "restored")
        os.mkdir(newdata, 0o700)
        shutil.copy(os.path.join(backup, "data.mdb"), os.path.join(newdata, "data.mdb"))
        cfg = open(gw.config).read().replace("data_dir: data", "data_dir: restored")
        restored_cfg = os.path.join(gw.dir, "restored.yaml")
        with open(restored_cfg, "w") as f:
            f.write(cfg)
        v = gw.ctl("audit", "verify", "--data", newdata, "--gateway-key", os.path.join(gw.keys, "GATEWAY.sign.pub"),
                   "--json", check=False)
        check(v.returncode == 0, "cpxctl audit verify passes on the restored copy: %s" % v.stdout.strip()[:200])
        rep = json.loads(v.stdout)
        size = rep.get("tree_size", 0)
        need = max(a[2].leaf_seq for a in before) + 1
        check(size >= need, "restored log holds every leaf acknowledged before the backup (size %d >= %d)"
              % (size, need))
        leaves = {}
        for line in gw.ctl("audit", "tail", "-n", "1000000", "--data", newdata, "--json").stdout.splitlines():
            l = json.loads(line)
            leaves[l["seq"]] = l
        missing = [a for a in before if leaves.get(a[2].leaf_seq, {}).get("event") != "ACCEPTED" or
                   leaves[a[2].leaf_seq]["case_ref"] != a[2].case_id]
        check(not missing, "all %d messages acknowledged before the backup are ACCEPTED leaves at their seq"
              % len(before))

        gw.config, gw.proc = restored_cfg, None
        os.rename(data, data + ".old")
        os.symlink(newdata, data)  # gateway.endpoint is looked up under data/
        gw.start()
        c = gw.client("POLICE")
        sample = before[:: max(1, len(before) // 25)]
        dup = 0
        for _, env, ack in sample:
            f = c.reply(env)
            if f is not None and f.WhichOneof("frame") == "ack" and f.ack.duplicate and f.ack.leaf_seq == ack.leaf_seq:
                dup += 1
        check(dup == len(sample), "resends of %d pre-backup messages answered as duplicates with the original leaf"
              % len(sample))
        e = cpxclient.report(gw.S, "POLICE", seq=7)
        cpxclient.sign(e, c.key, c.pub)
        f = c.reply(e)
        check(f is not None and f.WhichOneof("frame") == "ack" and not f.ack.duplicate,
              "the restored gateway accepts new work")
        c.close()
        cpxclient.stop_and_verify(gw, check, data=newdata)  # the restored gateway appended to it
        print("backup/restore: %d acknowledged before the copy, %d during/after; restored tree size %d"
              % (len(before), len(during), size))
    except Exception:
        print(gw.logtext(), file=sys.stderr)
        raise
    finally:
        gw.cleanup()
        del restored


if __name__ == "__main__":
    main()
