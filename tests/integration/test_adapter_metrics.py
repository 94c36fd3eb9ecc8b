"""The adapter serves its own counters: a file adapter (EDUCATION mapping) with
`metrics: 127.0.0.1:0` against a real gateway; after a 200-row roster is acknowledged,
/metrics shows exactly those counts in Prometheus text format, /healthz is ready while
the loop runs, nothing but GET is taken, and the endpoint goes away with the adapter."""
import os
import subprocess
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpxclient  # noqa: E402
from test_adapter_file import SRC, check, failures, free_port, roster, status, wait_for  # noqa: E402


def get(url, method="GET"):
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def main(build):
    gw = cpxclient.Gateway(build, depts=("EDUCATION", "CIVIL_AFFAIRS", "TOWN_HUASHI"))
    port = free_port()
    with open(gw.config) as f:
        cfg = f.read().replace("tcp://127.0.0.1:0", "tcp://127.0.0.1:%d" % port)
    with open(gw.config, "w") as f:
        f.write(cfg)
    adapter_bin = os.path.join(build, "adapters", "cpx-adapter")
    d = gw.dir
    acfg = os.path.join(d, "education.yaml")
    with open(acfg, "w") as f:
        f.write("department: EDUCATION\ngateway: tcp://127.0.0.1:%d\nkeys: keys\n"
                "gateway_key: keys/GATEWAY.curve.pub\nspool: edu-spool\nconnector: file\n"
                "metrics: 127.0.0.1:0\nheartbeat_ms: 300\n"
                "file:\n  dir: edu\n  mapping: %s\n"
                % (port, os.path.join(SRC, "deploy", "jiangyin", "adapters", "education-dropout.yaml")))
    alog = open(os.path.join(d, "adapter.log"), "ab")
    proc = None
    try:
        gw.start()
        proc = subprocess.Popen([adapter_bin, "--config", acfg], stdout=alog, stderr=alog)
        ep_file = os.path.join(d, "edu-spool", "metrics.endpoint")
        check(wait_for(lambda: os.path.exists(ep_file) and open(ep_file).read().strip(), 10, "endpoint"),
              "adapter wrote its metrics endpoint")
        base = "http://" + open(ep_file).read().strip()
        check(base.startswith("http://127.0.0.1:"), "metrics on loopback (%s)" % base)
        inbox = os.path.join(d, "edu", "inbox")
        wait_for(lambda: os.path.isdir(inbox), 10, "inbox")
        roster(os.path.join(inbox, "dropouts.csv"), 200)
        check(wait_for(lambda: metric(get(base + "/metrics")[1], "cpx_adapter_acked_total") == 200, 60, "acked"),
              "/metrics: 200 acknowledged")
        code, text = get(base + "/metrics")
        check(code == 200 and '# TYPE cpx_adapter_acked_total counter' in text, "Prometheus text format")
        check(metric(text, "cpx_adapter_spooled_total") == 200, "/metrics: 200 spooled")
        check(metric(text, "cpx_adapter_pending") == 0, "/metrics: nothing pending")
        check('# TYPE cpx_adapter_duplicate_acks_total counter' in text and
              metric(text, "cpx_adapter_duplicate_acks_total") is not None, "/metrics: duplicate_acks counter")
        check('department="EDUCATION"' in text, "labelled with the department")
        st = status(adapter_bin, acfg)
        check(st.get("acked") == "200", "the same count as cpx-adapter --status (%s)" % st.get("acked"))
        check(get(base + "/healthz")[0] == 200, "/healthz ready while the loop runs")
        check(get(base + "/metrics", "POST")[0] == 405, "only GET is taken")
        check(get(base + "/nothing")[0] == 404, "unknown path: 404")
        proc.terminate()
        proc.wait(timeout=20)
        proc = None
        try:
            get(base + "/healthz")
            gone = False
        except (urllib.error.URLError, ConnectionError, OSError):
            gone = True
        check(gone, "the endpoint goes away with the adapter")
    finally:
        if proc:
            proc.kill()
            proc.wait()
        gw.cleanup()
    print("%d failed" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
