#!/usr/bin/python3
"""Seeds tests/fuzz/corpus/{frames,proof,export,gwconfig}/ from real traffic: a gateway
on loopback, reports and a batch from the Python client, the Acks and Deliveries it
sent back, proofs and an export bundle made by cpxctl, the shipped configurations.
  tests/chaos/make_corpus.py BUILD_DIR"""
import glob
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chaoslib import SRC, Gateway, cpxclient  # noqa: E402


def put(kind, name, data):
    d = os.path.join(SRC, "tests", "fuzz", "corpus", kind)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main(build):
    gw = Gateway(build, ("POLICE", "CIVIL_AFFAIRS"))
    try:
        gw.start()
        S = gw.S
        pol = gw.client("POLICE")
        civ = gw.client("CIVIL_AFFAIRS")
        civ.heartbeat()
        envs = [cpxclient.report(S, "POLICE", harm=i % 2 == 0, seq=i) for i in range(4)]
        cpxclient.sign_batch(envs, pol.key, pol.pub)
        f = S["F"].ClientFrame()
        for e in envs:
            f.submit.batch.envelopes.add().CopyFrom(e)
        put("frames", "client-batch-4.pb", f.SerializeToString())
        pol.send(f)
        one = cpxclient.report(S, "POLICE", harm=False, seq=7)
        cpxclient.sign(one, pol.key, pol.pub)
        g = S["F"].ClientFrame()
        g.submit.envelope.CopyFrom(one)
        put("frames", "client-submit.pb", g.SerializeToString())
        pol.send(g)
        bad = cpxclient.report(S, "POLICE")
        bad.discovery_report.minor.id_number = "320281201501010010"
        cpxclient.sign(bad, pol.key, pol.pub)
        h = S["F"].ClientFrame()
        h.submit.envelope.CopyFrom(bad)
        pol.send(h)
        hb = S["F"].ClientFrame()
        hb.heartbeat.sent_ms = 1780000000000
        put("frames", "client-heartbeat.pb", hb.SerializeToString())
        n = 0
        for _ in range(40):
            raw = pol.sock.recv() if pol.sock.poll(200) else None
            if raw:
                put("frames", "server-%02d.pb" % n, raw)
                n += 1
            raw = civ.sock.recv() if civ.sock.poll(50) else None
            if raw:
                fr = S["F"].ServerFrame()
                fr.ParseFromString(raw)
                put("frames", "server-%02d.pb" % n, raw)
                n += 1
                if fr.WhichOneof("frame") == "deliver":
                    civ.confirm(fr.deliver)
                    da = S["F"].ClientFrame()
                    da.delivery_ack.delivery_id = fr.deliver.delivery_id
                    da.delivery_ack.message_id = fr.deliver.envelope.message_id
                    da.delivery_ack.status = S["F"].TAKEN
                    put("frames", "client-delivery-ack.pb", da.SerializeToString())
            civ.heartbeat()
        pol.close()
        civ.close()
        gw.stop()
        size = gw.head_size()
        tmp = os.path.join(gw.dir, "p")
        for seq in (0, 1, size - 1):
            gw.ctl("audit", "prove", str(seq), "--data", gw.data, "--out", tmp)
            put("proof", "inclusion-%d-of-%d.pb" % (seq, size), open(tmp, "rb").read())
        for a in (1, 3, size - 1):
            if gw.ctl("audit", "consistency", str(a), str(size), "--data", gw.data, "--out", tmp,
                      check=False).returncode == 0:
                put("proof", "consistency-%d-%d.pb" % (a, size), open(tmp, "rb").read())
        gw.ctl("audit", "head", "--data", gw.data, "--out", tmp)
        put("proof", "head.pb", open(tmp, "rb").read())
        for a, b in ((0, 0), (2, 0), (size - 2, 0)):
            if gw.ctl("audit", "export", "--data", gw.data, "--from", str(a), "--to", str(b), "--out", tmp,
                      check=False).returncode == 0:
                put("export", "bundle-%d.bin" % a, open(tmp, "rb").read())
        for c in [gw.config] + glob.glob(os.path.join(SRC, "deploy", "jiangyin", "gateway.yaml")):
            put("gwconfig", os.path.basename(os.path.dirname(c)) + "-" + os.path.basename(c), open(c, "rb").read())
    finally:
        gw.cleanup()
    print("corpus written")


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build"))
