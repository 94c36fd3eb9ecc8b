#!/usr/bin/python3
"""Adapter throughput against the gateway's own batch-submit throughput, same run.

  /usr/bin/python3 tests/bench/bench_adapter.py [BUILD_DIR] [--rows 100000] [--rounds 2]
                                                [--only file|sql]

Starts its own cpx-gateway (8 GiB map) on 127.0.0.1 and, for sql, its own PostgreSQL,
then for each connector:
  yardstick: bench_adapter_load maps the same rows with the same mapping, batch-signs
             them (256 per signature) and submits them straight to the gateway with
             cpx_client, timed from the first signature to the last Ack;
  file:      a GB18030 roster of N rows (EDUCATION mapping) renamed into inbox/ of a
             running cpx-adapter, timed until every row is acknowledged;
  sql:       N incidents in the POLICE 110 table (police-110.sql), cpx-adapter started,
             timed from its start until every row is acknowledged; the yardstick reads
             the same rows exported from the view.
The yardstick runs before and after each adapter run (the gateway slows as its store
grows, and the machine may be shared); prints every run and the ratio of the medians,
adapter / yardstick (target >= 0.7). A progress bar on a terminal, plain lines otherwise."""
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
import cpxclient  # noqa: E402
import test_adapter_file as tfile  # noqa: E402  (roster generator)
import test_adapter_sql as tsql  # noqa: E402  (PostgresServer, incidents)

TTY = sys.stdout.isatty()


class Progress:
    def __init__(self, label, total):
        self.label, self.total, self.t0, self.last_line = label, total, time.time(), 0

    def show(self, done):
        el = time.time() - self.t0
        rate = done / el if el > 0 else 0
        if TTY:
            w = 40
            k = int(w * done / self.total) if self.total else w
            sys.stdout.write("\r  %-10s [%s%s] %7d/%d %8.0f rows/s %6.1fs" %
                             (self.label, "#" * k, "." * (w - k), done, self.total, rate, el))
            sys.stdout.flush()
        elif el - self.last_line >= 5:
            self.last_line = el
            print("  %s: %d/%d rows, %.0f rows/s, %.1fs" % (self.label, done, self.total, rate, el), flush=True)

    def end(self):
        if TTY:
            sys.stdout.write("\n")


def adapter_status(adapter_bin, cfg):
    r = subprocess.run([adapter_bin, "--config", cfg, "--status"], capture_output=True, text=True)
    return dict(l.split("=", 1) for l in r.stdout.split() if "=" in l)


def yardstick(build, gw, port, dept, mapping, csv, n, label):
    p = subprocess.Popen([os.path.join(build, "tests", "bench_adapter_load"), "--keys", gw.keys,
                          "--dept", dept, "--endpoint", "tcp://127.0.0.1:%d" % port, "--mapping", mapping,
                          "--csv", csv, "--progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    bar = Progress(label, n)
    for line in p.stderr:
        if line.startswith("progress "):
            bar.show(int(line.split()[1]))
        else:
            sys.stderr.write(line)
    out = p.stdout.read()
    p.wait()
    bar.show(n)
    bar.end()
    if p.returncode != 0:
        raise RuntimeError("bench_adapter_load failed: " + out)
    kv = dict(x.split("=", 1) for x in out.split())
    return int(kv["rows"]), float(kv["rows_per_s"])


def wait_acked(adapter_bin, cfg, base, n, label, t0, timeout=900):
    """Seconds from t0 until the adapter's acked counter reaches base + n."""
    bar = Progress(label, n)
    bar.t0 = t0
    while True:
        acked = int(adapter_status(adapter_bin, cfg).get("acked", 0) or 0) - base
        bar.show(min(acked, n))
        if acked >= n:
            break
        if time.time() - t0 > timeout:
            raise RuntimeError("timeout: %d of %d acknowledged" % (acked, n))
        time.sleep(0.1)
    dt = time.time() - t0
    bar.end()
    return dt


def adapter_common(port, spool, connector):
    return ("gateway: tcp://127.0.0.1:%d\nkeys: keys\ngateway_key: keys/GATEWAY.curve.pub\n"
            "spool: %s\nconnector: %s\nbatch: 256\ncycle_max: 2000\nmax_pending: 50000\n"
            "resend_after_ms: 10000\nheartbeat_ms: 1000\nstatus_every_ms: 10000\n"
            "log_level: warn\n" % (port, spool, connector))


def median(xs):
    xs = sorted(xs)
    k = len(xs)
    return xs[k // 2] if k % 2 else (xs[k // 2 - 1] + xs[k // 2]) / 2


def run_rounds(name, rounds, yard, adapter_round, results):
    """yardstick, then (adapter, yardstick) x rounds: the gateway slows as its store and
    queues grow and the machine may be shared, so both are sampled across the run and
    the ratio is of medians."""
    ys = [yard()]
    ads = []
    for r in range(rounds):
        rows, dt = adapter_round(r)
        ads.append(rows / dt)
        ys.append(yard())
    results.append((name, ys, ads))


def bench_file(build, gw, port, n, rounds, results):
    adapter_bin = os.path.join(build, "adapters", "cpx-adapter")
    mapping = os.path.join(SRC, "deploy", "jiangyin", "adapters", "education-dropout.yaml")
    d = gw.dir
    work = os.path.join(d, "filebench")
    os.makedirs(work)
    csv = os.path.join(work, "roster.csv")
    print("file connector: writing a %d-row GB18030 roster" % n, flush=True)
    tfile.roster(csv, n)
    cfg = os.path.join(d, "edu-bench.yaml")
    with open(cfg, "w") as f:
        f.write("department: EDUCATION\n" + adapter_common(port, "edu-bench-spool", "file") +
                "file:\n  dir: edu-bench\n  mapping: %s\n" % mapping)
    inbox = os.path.join(d, "edu-bench", "inbox")

    def yard():
        return yardstick(build, gw, port, "EDUCATION", mapping, csv, n, "gateway")[1]

    def adapter_round(r):
        log = open(os.path.join(d, "adapter-file.log"), "ab")
        p = subprocess.Popen([adapter_bin, "--config", cfg], stdout=log, stderr=log)
        try:
            end = time.time() + 20
            while not os.path.isdir(inbox) and time.time() < end:
                time.sleep(0.05)
            time.sleep(0.5)  # connected
            base = int(adapter_status(adapter_bin, cfg).get("acked", 0) or 0)
            name = "roster-%d.csv" % r  # another file name: other message ids
            shutil.copy(csv, os.path.join(inbox, "." + name))
            t0 = time.time()
            os.rename(os.path.join(inbox, "." + name), os.path.join(inbox, name))
            return n, wait_acked(adapter_bin, cfg, base, n, "adapter", t0)
        finally:
            p.terminate()
            p.wait()
            log.close()

    run_rounds("file", rounds, yard, adapter_round, results)


def bench_sql(build, gw, port, n, rounds, results):
    adapter_bin = os.path.join(build, "adapters", "cpx-adapter")
    mapping = os.path.join(SRC, "deploy", "jiangyin", "adapters", "police-110.yaml")
    pg = tsql.PostgresServer()
    try:
        pg.start()
        pg.create(os.path.join(SRC, "deploy", "jiangyin", "adapters", "police-110.sql"))
        csv = os.path.join(gw.dir, "incidents.csv")
        cfg = os.path.join(gw.dir, "police-bench.yaml")
        with open(cfg, "w") as f:
            f.write("department: POLICE\n" + adapter_common(port, "police-bench-spool", "sql") +
                    "sql:\n  conninfo: \"%s\"\n  source: cpx_outgoing_incidents\n  cursor: incident_seq\n"
                    "  channel: cpx_incidents\n  fetch: 2000\n  mapping: %s\n  delivery_table: cpx_deliveries\n"
                    % (pg.conninfo(), mapping))

        def insert(r):
            print("sql connector: inserting %d incidents" % n, flush=True)
            for s in range(0, n, 5000):
                pg.psql(tsql.incidents_sql(r * n + s, min(5000, n - s)))

        insert(0)
        with open(csv, "w", encoding="utf-8") as f:
            f.write(pg.psql("SET TimeZone TO 'Asia/Shanghai'; COPY (SELECT * FROM cpx_outgoing_incidents "
                            "ORDER BY incident_seq) TO STDOUT WITH (FORMAT csv, HEADER)") + "\n")

        def yard():
            return yardstick(build, gw, port, "POLICE", mapping, csv, n, "gateway")[1]

        def adapter_round(r):
            if r:
                insert(r)  # new rows while the adapter is stopped; it resumes at its cursor
            base = int(adapter_status(adapter_bin, cfg).get("acked", 0) or 0) if r else 0
            log = open(os.path.join(gw.dir, "adapter-sql.log"), "ab")
            t0 = time.time()
            p = subprocess.Popen([adapter_bin, "--config", cfg], stdout=log, stderr=log)
            try:
                return n, wait_acked(adapter_bin, cfg, base, n, "adapter", t0)
            finally:
                p.terminate()
                p.wait()
                log.close()

        run_rounds("sql", rounds, yard, adapter_round, results)
    finally:
        pg.cleanup()


def main():
    args = sys.argv[1:]
    build = os.path.join(SRC, "build")
    n, only, rounds = 100000, None, 2
    i = 0
    while i < len(args):
        if args[i] == "--rows":
            n = int(args[i + 1])
            i += 2
        elif args[i] == "--rounds":
            rounds = int(args[i + 1])
            i += 2
        elif args[i] == "--only":
            only = args[i + 1]
            i += 2
        else:
            build = args[i]
            i += 1
    # a folder of our own (others may sweep /tmp/cpxgw.*), 711 so that the postgres
    # user reaches the PostgreSQL data inside it
    base = tempfile.mkdtemp(prefix="cpx-bench-adapter.")
    os.chmod(base, 0o711)
    tempfile.tempdir = base
    gw = cpxclient.Gateway(build, depts=("EDUCATION", "POLICE", "CIVIL_AFFAIRS", "TOWN_HUASHI",
                                          "TOWN_ZHOUZHUANG", "TOWN_CHENGJIANG", "TOWN_QINGYANG",
                                          "TOWN_XUXIAKE", "TOWN_XINQIAO"))
    port = tsql.free_port()
    with open(gw.config) as f:
        cfg = f.read().replace("tcp://127.0.0.1:0", "tcp://127.0.0.1:%d" % port)
    cfg = cfg.replace("map_size: 256MiB", "map_size: 8GiB").replace("log_level: info", "log_level: warn")
    with open(gw.config, "w") as f:
        f.write(cfg)
    results = []

    def report():
        print("\nrows/s to acknowledged, %d rows per run; ratio = median(adapter) / median(gateway)" % n)
        print("connector  gateway batch-submit runs      adapter runs        ratio (target >= 0.7)")
        for name, ys, ads in results:
            print("%-10s %-30s %-19s %.2f" % (name, " ".join("%.0f" % y for y in ys),
                                             " ".join("%.0f" % a for a in ads), median(ads) / median(ys)),
                  flush=True)

    try:
        gw.start()
        if only in (None, "file"):
            bench_file(build, gw, port, n, rounds, results)
            report()
        if only in (None, "sql"):
            bench_sql(build, gw, port, n, rounds, results)
            report()
    finally:
        gw.cleanup()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
