"""cpx-adapter (file connector) against a real cpx-gateway, with the EDUCATION mapping
from deploy/jiangyin/adapters: a 10,000-row GB18030 roster, the adapter killed -9 in the
middle and restarted (every row acknowledged exactly once), bad rows rejected with
reasons while good rows pass, the gateway stopped for a while (the spool drains when it
returns), a delivery with Chinese text written to outbox/ once, and 100 deliveries
queued while the adapter was stopped taken in Deliveries frames and confirmed once each."""
import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpxclient  # noqa: E402

SRC = os.environ.get("CPX_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
failures = []
passed = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    (passed if cond else failures).append(what)


def id_number(region, birth, seq, male):
    """A GB 11643 citizen ID number with its check digit."""
    body = "%s%s%03d" % (region, birth.replace("-", ""), seq * 2 % 1000 + (1 if male else 0))
    body = body[:17]
    w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    s = sum(int(c) * k for c, k in zip(body, w))
    return body + "10X98765432"[s % 11]


TOWNS = ["华士镇", "周庄镇", "澄江街道", "青阳镇", "徐霞客镇", "新桥镇"]
NAMES = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄强", "周杰", "吴霞"]
HEADER = "学籍号,姓名,性别,身份证号,出生日期,学校,所属镇街,村社区,家庭住址,辍学日期,辍学原因,是否留守,联系教师,备注\r\n"


def roster(path, n, start=0, extra=b""):
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path))
    with open(tmp, "wb") as f:
        f.write(b"\x84\x31\x95\x33")  # GB18030 BOM
        f.write(HEADER.encode("gb18030"))
        for i in range(start, start + n):
            male = i % 2 == 0
            birth = "%04d-%02d-%02d" % (2010 + i % 6, 1 + i % 12, 1 + i % 28)
            idn = id_number("320281", birth, i % 500, male) if i % 7 else ""
            row = ",".join([
                "JY%07d" % i, NAMES[i % 10] + ("" if i % 3 else "某"), "男" if male else "女", idn, birth,
                "江阴市第%d中学" % (1 + i % 9), TOWNS[i % 6], "红星村", "\"%s，人民路%d号\"" % (TOWNS[i % 6], i),
                "2026-11-%02d" % (1 + i % 20), "家庭经济困难" if i % 4 else "", "是" if i % 5 == 0 else "否",
                "王老师", "连续两周未到校，电话联系不上家长"]) + "\r\n"
            f.write(row.encode("gb18030"))
        f.write(extra)
    os.rename(tmp, path)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def status(adapter_bin, cfg):
    r = subprocess.run([adapter_bin, "--config", cfg, "--status"], capture_output=True, text=True)
    return dict(l.split("=", 1) for l in r.stdout.split() if "=" in l)


def wait_for(cond, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.1)
    print("timeout waiting for " + what, flush=True)
    return False


def main(build):
    gw = cpxclient.Gateway(build, depts=("EDUCATION", "POLICE", "CIVIL_AFFAIRS", "TOWN_HUASHI"))
    port = free_port()
    with open(gw.config) as f:
        cfg = f.read().replace("tcp://127.0.0.1:0", "tcp://127.0.0.1:%d" % port)
    with open(gw.config, "w") as f:
        f.write(cfg)
    adapter_bin = os.path.join(build, "adapters", "cpx-adapter")
    d = gw.dir
    exch = os.path.join(d, "edu")
    acfg = os.path.join(d, "education.yaml")
    with open(acfg, "w") as f:
        f.write("department: EDUCATION\ngateway: tcp://127.0.0.1:%d\nkeys: keys\n"
                "gateway_key: keys/GATEWAY.curve.pub\nspool: edu-spool\nconnector: file\n"
                "batch: 256\ncycle_max: 500\nresend_after_ms: 2000\nheartbeat_ms: 300\nstatus_every_ms: 2000\n"
                "file:\n  dir: edu\n  mapping: %s\n"
                % (port, os.path.join(SRC, "deploy", "jiangyin", "adapters", "education-dropout.yaml")))
    alog = open(os.path.join(d, "adapter.log"), "ab")
    proc = None

    def start_adapter(env=None):
        return subprocess.Popen([adapter_bin, "--config", acfg], stdout=alog, stderr=alog,
                                env=dict(os.environ, **(env or {})))

    try:
        gw.start()
        proc = start_adapter()
        inbox = os.path.join(exch, "inbox")
        check(wait_for(lambda: os.path.isdir(inbox), 10, "inbox"), "adapter started and made its folders")

        # 1. 10,000 rows + 4 bad ones; kill -9 in the middle, restart
        bad = b"".join([
            b"JY9000001," + "张".encode("gb18030") + b"\x81\x20," + "男".encode("gb18030") +
            b",,2012-01-01,x," + "华士镇".encode("gb18030") + b",,,2026-11-01,,,,\r\n",
            ("JY9000002,李四,未知,,2012-01-01,江阴市第一中学,华士镇,,,2026-11-01,,否,,\r\n").encode("gb18030"),
            ("JY9000003,李四,男\r\n").encode("gb18030"),
            ("JY9000004,李四,男,,2012-01-01,江阴市第一中学,火星镇,,,2026-11-01,,否,,\r\n").encode("gb18030"),
        ])
        roster(os.path.join(inbox, "dropouts-2026-w48.csv"), 10000, extra=bad)
        check(wait_for(lambda: int(status(adapter_bin, acfg).get("acked", 0)) >= 2500, 60, "acked"),
              "adapter submitting the roster")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        st = status(adapter_bin, acfg)
        print("after kill -9: " + " ".join("%s=%s" % kv for kv in sorted(st.items())), flush=True)
        # "In the middle" is judged by acknowledgements: under load the reader can have
        # spooled the whole roster before the kill while most Acks are still due.
        check(0 < int(st["acked"]) < 10000,
              "killed in the middle (%s of 10000 rows spooled, %s acknowledged)" % (st["spooled"], st["acked"]))
        proc = start_adapter()
        receipt = os.path.join(exch, "done", "dropouts-2026-w48.csv.receipt")
        check(wait_for(lambda: os.path.exists(receipt), 240, "receipt"), "file done after restart")
        r = json.load(open(receipt))
        check(r["acknowledged"] == 10000 and r["rejected"] == 4 and r["records"] == 10004,
              "receipt: 10000 acknowledged, 4 rejected (%s)" % r)
        st = status(adapter_bin, acfg)
        check(st["spooled"] == "10000" and st["acked"] == "10000" and st["pending"] == "0",
              "every row spooled once and acknowledged once (spooled=%s acked=%s pending=%s)"
              % (st["spooled"], st["acked"], st["pending"]))
        check("duplicate_acks" in st, "--status shows duplicate_acks (%s)" % st.get("duplicate_acks"))
        errs = open(os.path.join(exch, "rejected", "dropouts-2026-w48.csv.errors"), encoding="utf-8").read()
        print(errs, flush=True)
        check("dropouts-2026-w48.csv:10002: record: encoding: bytes invalid in GB18030 at line 10002 byte offset 12" in errs,
              "invalid GB18030 bytes refused with line and byte offset")
        check("dropouts-2026-w48.csv:10003: discovery_report.minor.sex: value_map" in errs, "unknown sex code refused")
        check("dropouts-2026-w48.csv:10004: record: field_count" in errs, "short row refused")
        check("dropouts-2026-w48.csv:10005: discovery_report.minor.town: value_map" in errs, "unknown town refused")
        check(os.path.exists(os.path.join(exch, "done", "dropouts-2026-w48.csv")) and
              not os.path.exists(os.path.join(inbox, "dropouts-2026-w48.csv")), "file moved to done/")

        # 2. gateway down for a while: the spool holds, then drains
        gw.stop()
        roster(os.path.join(inbox, "dropouts-2026-w49.csv"), 500, start=20000)
        check(wait_for(lambda: int(status(adapter_bin, acfg).get("pending", 0)) == 500, 30, "spooled while down"),
              "500 rows spooled while the gateway is down")
        time.sleep(2)
        gw.start()
        receipt2 = os.path.join(exch, "done", "dropouts-2026-w49.csv.receipt")
        check(wait_for(lambda: os.path.exists(receipt2), 120, "drain"), "spool drained after the gateway returned")
        st = status(adapter_bin, acfg)
        check(st["acked"] == "10500" and st["pending"] == "0", "nothing lost (acked=%s)" % st["acked"])
        gst = gw.status()
        m = re.search(r"^queue dept=CIVIL_AFFAIRS waiting=(\d+)", gst, re.M)
        check(m is not None and m.group(1) == "10500",
              "gateway accepted each row exactly once (CIVIL_AFFAIRS queue: %s)" % (m.group(1) if m else "?"))

        # 2b. killed after the commit that settled a file, before its receipt and move
        # (a failpoint raises SIGKILL there): the restart publishes it without reading,
        # spooling or submitting any row again, so the counters stay exact
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        proc = start_adapter({"CPX_FAILPOINT_FILE_PUBLISH": "dropouts-2026-w50.csv"})
        roster(os.path.join(inbox, "dropouts-2026-w50.csv"), 300, start=30000)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            pass
        check(proc.returncode == -signal.SIGKILL, "failpoint killed the adapter (rc=%s)" % proc.returncode)
        receipt3 = os.path.join(exch, "done", "dropouts-2026-w50.csv.receipt")
        check(os.path.exists(os.path.join(inbox, "dropouts-2026-w50.csv")) and not os.path.exists(receipt3),
              "killed before the file was published")
        st = status(adapter_bin, acfg)
        check(st["spooled"] == "10800" and st["acked"] == "10800" and st["pending"] == "0",
              "file settled before the kill (spooled=%s acked=%s pending=%s)"
              % (st["spooled"], st["acked"], st["pending"]))
        proc = start_adapter()
        # the receipt is written first, then the file moved: wait for the move
        check(wait_for(lambda: os.path.exists(receipt3) and
                       os.path.exists(os.path.join(exch, "done", "dropouts-2026-w50.csv")), 30,
                       "receipt and move after failpoint"),
              "settled file published after the restart")
        r = json.load(open(receipt3)) if os.path.exists(receipt3) else {}
        check(r.get("acknowledged") == 300 and r.get("records") == 300, "receipt: 300 acknowledged (%s)" % r)
        check(not os.path.exists(os.path.join(inbox, "dropouts-2026-w50.csv")), "file moved to done/")
        time.sleep(1)
        st = status(adapter_bin, acfg)
        check(st["spooled"] == "10800" and st["acked"] == "10800" and st["pending"] == "0",
              "no row read or acknowledged twice after the restart (spooled=%s acked=%s pending=%s)"
              % (st["spooled"], st["acked"], st["pending"]))
        check(int(st["acked"]) + int(st["nacked"]) + int(st["pending"]) == int(st["spooled"]),
              "acked + nacked + pending == spooled")

        # 3. a delivery: POLICE reports to EDUCATION with Chinese text -> outbox/ JSON
        police = gw.client("POLICE")
        env = cpxclient.report(gw.S, "POLICE", recipients=["EDUCATION"])
        env.discovery_report.observation.what = "学生身上有伤痕，疑似家庭暴力"
        cpxclient.sign(env, police.key, police.pub)
        rep = police.reply(env)
        check(rep is not None and rep.WhichOneof("frame") == "ack", "police report acknowledged")
        outfile = os.path.join(exch, "outbox", env.message_id.hex() + ".json")
        check(wait_for(lambda: os.path.exists(outfile), 30, "outbox"), "delivery written to outbox/")
        if os.path.exists(outfile):
            out = json.load(open(outfile, encoding="utf-8"))
            check(out["body"]["observation"]["what"] == "学生身上有伤痕，疑似家庭暴力" and out["sender"] == "POLICE",
                  "Chinese text intact in the delivery")
        check(wait_for(lambda: int(status(adapter_bin, acfg).get("confirmed", 0)) >= 1, 10, "confirm"),
              "delivery confirmed")
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        check(proc.returncode == 0, "adapter stops cleanly on SIGTERM")
        log = open(os.path.join(d, "adapter.log"), encoding="utf-8", errors="replace").read()
        check(re.search(r"level=info mod=adapter msg=status dept=EDUCATION spooled=\d+", log) is not None,
              "periodic key=value status lines in the log")

        # 4. 100 deliveries queued while the adapter is stopped: back, it asks for
        # Deliveries frames (64 per frame), hands each message to outbox/ once and
        # confirms them all (one DELIVERY_ACKNOWLEDGED leaf each)
        time.sleep(2)  # the gateway has marked EDUCATION offline
        st0 = status(adapter_bin, acfg)
        envs = [cpxclient.report(gw.S, "POLICE", recipients=["EDUCATION"], harm=False, seq=i) for i in range(100)]
        cpxclient.sign_batch(envs, police.key, police.pub)
        police.submit_batch(envs, grouped_acks=True)
        acks, nacks, kinds = police.collect([e.message_id for e in envs], 20000)
        check(len(acks) == 100 and kinds == ["acks"], "100 more for EDUCATION acknowledged in one acks frame (%s)" % kinds)
        log_at = os.path.getsize(os.path.join(d, "adapter.log"))
        proc = start_adapter({"CPX_LOG_LEVEL": "debug"})
        files = [os.path.join(exch, "outbox", e.message_id.hex() + ".json") for e in envs]
        check(wait_for(lambda: all(os.path.exists(p) for p in files), 60, "100 deliveries"),
              "100 queued deliveries written to outbox/ (%d)" % sum(os.path.exists(p) for p in files))
        want = int(st0.get("confirmed", 0)) + 100
        check(wait_for(lambda: int(status(adapter_bin, acfg).get("confirmed", 0)) >= want, 20, "confirmations"),
              "the 100 confirmed")
        time.sleep(1.5)  # past retry.base_ms: a delivery not confirmed would come again
        st = status(adapter_bin, acfg)
        # a slow cycle may see some redelivered before its confirmations arrive: they are
        # confirmed again, never handed over again
        check(int(st["delivered"]) - int(st0["delivered"]) == 100 and int(st["confirmed"]) >= want,
              "each handed over once, all confirmed (delivered +%d, confirmed +%d)"
              % (int(st["delivered"]) - int(st0["delivered"]), int(st["confirmed"]) - int(st0["confirmed"])))
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        with open(os.path.join(d, "adapter.log"), encoding="utf-8", errors="replace") as f:
            f.seek(log_at)
            sizes = [int(n) for n in re.findall(r'msg="deliveries frame" n=(\d+)', f.read())]
        check(sum(sizes) >= 100 and max(sizes or [0]) > 1 and max(sizes or [0]) <= 64,
              "they came in Deliveries frames of at most 64 (%s)" % sizes)
        police.close()
        gw.stop()
        leaves = [json.loads(l) for l in gw.ctl("audit", "tail", "-n", "1000000", "--data",
                                                os.path.join(gw.dir, "data"), "--json").stdout.splitlines()]
        per = {}
        for leaf in leaves:
            if leaf["event"] == "DELIVERY_ACKNOWLEDGED":
                per[leaf.get("ref_seq")] = per.get(leaf.get("ref_seq"), 0) + 1
        counts = [per.get(a.leaf_seq, 0) for a in acks.values()]
        check(len(counts) == 100 and all(n == 1 for n in counts),
              "one DELIVERY_ACKNOWLEDGED leaf for each of the 100 (%s)" % sorted(set(counts)))
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        if failures:
            print("---- adapter log (tail)")
            print(open(os.path.join(d, "adapter.log"), errors="replace").read()[-3000:])
            print("---- gateway log (tail)")
            print(gw.logtext())
        alog.close()
        gw.cleanup()
    print("%d passed, %d failed" % (len(passed), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(SRC, "build")))
