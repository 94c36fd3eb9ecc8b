"""cpx-adapter (sql connector) against a real PostgreSQL 15 started here and a real
cpx-gateway, with the POLICE configuration and schema from deploy/jiangyin/adapters:
rows inserted into the 110 incident table are acknowledged (LISTEN/NOTIFY); the adapter
killed -9 mid-stream and restarted delivers every row exactly once; a row the mapping
refuses is recorded with its row key, field and rule while the good rows pass;
PostgreSQL restarted mid-run -> the adapter reconnects and carries on; a delivery to
POLICE lands in cpx_deliveries once, even when it is delivered again.

PostgresServer is also used by tests/bench/bench_adapter.py."""
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpxclient  # noqa: E402

SRC = os.environ.get("CPX_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PGBIN = os.environ.get("CPX_PGBIN", "/usr/lib/postgresql/15/bin")
failures = []
passed = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    (passed if cond else failures).append(what)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_for(cond, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.1)
    print("timeout waiting for " + what, flush=True)
    return False


class PostgresServer:
    """A throwaway PostgreSQL: data, log and unix socket in a temp dir, TCP only on
    127.0.0.1 at an ephemeral port. Run as the `postgres` user when we are root
    (postgres refuses to run as root)."""

    def __init__(self, db="police110"):
        self.dir = tempfile.mkdtemp(prefix="cpxpg.")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "sock")
        os.mkdir(self.sock)
        self.port = free_port()
        self.db = db
        self.as_user = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for p in (self.dir, self.sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.run([os.path.join(PGBIN, "initdb"), "-D", self.data, "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--locale=C"])
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\n"
                    "max_connections = 30\nshared_buffers = 64MB\n" % (self.port, self.sock))

    def run(self, argv, **kw):
        return subprocess.run(self.as_user + argv, check=True, capture_output=True, text=True, **kw)

    def start(self):
        self.run([os.path.join(PGBIN, "pg_ctl"), "-D", self.data, "-l", os.path.join(self.dir, "pg.log"),
                  "-w", "-t", "60", "start"])

    def stop(self, mode="fast"):
        subprocess.run(self.as_user + [os.path.join(PGBIN, "pg_ctl"), "-D", self.data, "-m", mode,
                                       "-w", "stop"], capture_output=True)

    def conninfo(self, db=None):
        return "host=127.0.0.1 port=%d dbname=%s user=postgres connect_timeout=5" % (self.port, db or self.db)

    def psql(self, sql, db=None, check=True):
        r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                            "-p", str(self.port), "-U", "postgres", "-d", db or self.db],
                           input=sql, capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError("psql failed: %s" % r.stderr)
        return r.stdout.strip()

    def create(self, schema_file):
        self.psql("CREATE DATABASE %s" % self.db, db="postgres")
        self.psql(open(schema_file, encoding="utf-8").read())

    def cleanup(self):
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


TOWNS = ["TOWN_HUASHI", "TOWN_ZHOUZHUANG", "TOWN_CHENGJIANG", "TOWN_QINGYANG", "TOWN_XUXIAKE"]
NAMES = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄强", "周杰", "吴霞"]
HARMS = ["DV", "AB", "AN", "SX,IN", "IN", "TR", "BG", "DV,AB"]


def incidents_sql(start, n, bad_sex_at=None):
    """One INSERT of n incidents with Chinese names, addresses and summaries."""
    rows = []
    for i in range(start, start + n):
        birth = "%04d-%02d-%02d" % (2010 + i % 7, 1 + i % 12, 1 + i % 28)
        idn = cpxclient.id_number(born=(2010 + i % 7, 1 + i % 12, 1 + i % 28), seq=i % 500,
                                  male=i % 2 == 0) if i % 5 else None
        sex = "X" if i == bad_sex_at else ("M" if i % 2 == 0 else "F")
        rows.append("('JY110-%07d', '%s%s', %s, '%s', '%s', '%s', '江阴市%s人民路%d号', '民警%d', '%s', %s, "
                    "'接110报警：邻居称听到孩子哭喊，现场发现未成年人身上有伤痕')"
                    % (i, NAMES[i % 10], "" if i % 3 else "某", "'%s'" % idn if idn else "NULL", sex, birth,
                       TOWNS[i % 5], TOWNS[i % 5], i, i % 50, HARMS[i % 8], "true" if i % 4 == 0 else "false"))
    return ("INSERT INTO incidents_110 (incident_no, minor_name, minor_id, sex, birth_date, town_code, "
            "address, officer, harm_codes, immediate, summary) VALUES\n" + ",\n".join(rows) + ";\n")


def status(adapter_bin, cfg):
    r = subprocess.run([adapter_bin, "--config", cfg, "--status"], capture_output=True, text=True)
    return dict(l.split("=", 1) for l in r.stdout.split() if "=" in l)


def adapter_config(path, port, conninfo, extra=""):
    with open(path, "w") as f:
        f.write("department: POLICE\ngateway: tcp://127.0.0.1:%d\nkeys: keys\n"
                "gateway_key: keys/GATEWAY.curve.pub\nspool: police-spool\nconnector: sql\n"
                "batch: 256\ncycle_max: 500\nresend_after_ms: 2000\nheartbeat_ms: 300\nstatus_every_ms: 2000\n"
                "sql:\n  conninfo: \"%s\"\n  source: cpx_outgoing_incidents\n  cursor: incident_seq\n"
                "  channel: cpx_incidents\n  poll_ms: 2000\n  fetch: 300\n  mapping: %s\n"
                "  delivery_table: cpx_deliveries\n  delivered_table: cpx_delivered\n"
                "  reject_table: cpx_rejected\n  reconnect_max_ms: 1000\n%s"
                % (port, conninfo, os.path.join(SRC, "deploy", "jiangyin", "adapters", "police-110.yaml"), extra))


def main(build):
    pg = PostgresServer()
    gw = None
    proc = None
    alog = None
    try:
        pg.start()
        pg.create(os.path.join(SRC, "deploy", "jiangyin", "adapters", "police-110.sql"))
        gw = cpxclient.Gateway(build, depts=("POLICE", "CIVIL_AFFAIRS", "EDUCATION", "TOWN_HUASHI",
                                              "TOWN_ZHOUZHUANG", "TOWN_CHENGJIANG", "TOWN_QINGYANG",
                                              "TOWN_XUXIAKE"))
        port = free_port()
        with open(gw.config) as f:
            cfg = f.read().replace("tcp://127.0.0.1:0", "tcp://127.0.0.1:%d" % port)
        cfg = cfg.replace("max_attempts: 3", "max_attempts: 100")  # the adapter is down a while
        with open(gw.config, "w") as f:
            f.write(cfg)
        adapter_bin = os.path.join(build, "adapters", "cpx-adapter")
        d = gw.dir
        acfg = os.path.join(d, "police.yaml")
        adapter_config(acfg, port, pg.conninfo())
        alog = open(os.path.join(d, "adapter.log"), "ab")

        def start_adapter():
            return subprocess.Popen([adapter_bin, "--config", acfg], stdout=alog, stderr=alog)

        def acked():
            return int(status(adapter_bin, acfg).get("acked", 0) or 0)

        gw.start()
        proc = start_adapter()

        # 1. rows inserted -> acknowledged; one refused by the mapping, recorded with key, field, rule
        pg.psql(incidents_sql(0, 200, bad_sex_at=17))
        check(wait_for(lambda: acked() == 199, 30, "200 rows"), "199 good rows acknowledged (%d)" % acked())
        rej = pg.psql("SELECT row_key || ' | ' || reason FROM cpx_rejected")
        print(rej, flush=True)
        check(rej.startswith("JY110-0000017 | row incident_no=JY110-0000017: discovery_report.minor.sex: value_map"),
              "the bad row is in cpx_rejected with its row key, field and rule")
        st = status(adapter_bin, acfg)
        check(st.get("rejected") == "1" and st.get("failed") == "1", "and in the spool's rejected area")

        # latency: one incident, woken by NOTIFY (poll_ms is 2000)
        t0 = time.time()
        pg.psql(incidents_sql(200, 1))
        check(wait_for(lambda: acked() == 200, 10, "one row"), "a single incident acknowledged")
        lat = time.time() - t0
        check(lat < 1.5, "NOTIFY wakes the adapter (insert to acknowledged %.0f ms, poll_ms 2000)" % (lat * 1000))

        # 2. kill -9 mid-stream, restart: every row exactly once
        def writer(start, batches, per, pause):
            for b in range(batches):
                pg.psql(incidents_sql(start + b * per, per))
                time.sleep(pause)

        t = threading.Thread(target=writer, args=(1000, 30, 200, 0.05))
        t.start()
        check(wait_for(lambda: acked() >= 1500, 60, "mid-stream"), "adapter reading while rows arrive")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        st = status(adapter_bin, acfg)
        print("after kill -9: " + " ".join("%s=%s" % kv for kv in sorted(st.items())), flush=True)
        time.sleep(0.5)
        proc = start_adapter()
        t.join()
        total = 200 + 1 + 30 * 200
        check(wait_for(lambda: acked() == total - 1, 120, "all rows"), "every row acknowledged after restart (%d)" % acked())
        st = status(adapter_bin, acfg)
        check(st["spooled"] == str(total - 1) and st["pending"] == "0",
              "each row spooled exactly once (spooled=%s acked=%s pending=%s)" % (st["spooled"], st["acked"], st["pending"]))

        # 3. PostgreSQL restarted while rows arrive: the adapter reconnects
        pg.psql(incidents_sql(20000, 300))
        pg.stop("fast")
        time.sleep(1.5)
        pg.start()
        pg.psql(incidents_sql(20300, 300))
        total += 600
        check(wait_for(lambda: acked() == total - 1, 60, "after restart"),
              "rows before and after the PostgreSQL restart acknowledged (%d of %d)" % (acked(), total - 1))
        log = open(os.path.join(d, "adapter.log"), encoding="utf-8", errors="replace").read()
        check("database connection lost" in log or "cannot connect to the database" in log,
              "the adapter noticed the database going away")
        check(len(re.findall(r'msg="connected to the database"', log)) >= 3, "and reconnected")

        # the gateway saw each incident once: the case index counts one case per report
        gst = gw.status()
        m = re.search(r"^queue dept=CIVIL_AFFAIRS waiting=(\d+)", gst, re.M)
        print("gateway: " + (m.group(0) if m else gst[:400]), flush=True)
        check(m is not None and int(m.group(1)) == total - 1,
              "gateway accepted each row exactly once (%s of %d)" % (m.group(1) if m else "?", total - 1))

        # 4. deliveries to POLICE -> cpx_deliveries once, also when delivered again
        ca = gw.client("CIVIL_AFFAIRS")
        env = cpxclient.report(gw.S, "CIVIL_AFFAIRS", recipients=["POLICE"])
        env.discovery_report.observation.what = "热线来电：孩子独自在家多日，疑似被遗弃"
        cpxclient.sign(env, ca.key, ca.pub)
        rep = ca.reply(env)
        check(rep is not None and rep.WhichOneof("frame") == "ack", "civil affairs report acknowledged")
        mid = env.message_id.hex()
        q = "SELECT count(*) FROM cpx_deliveries WHERE message_id = '%s'" % mid
        check(wait_for(lambda: pg.psql(q) == "1", 20, "delivery"), "delivery written to cpx_deliveries")
        what = pg.psql("SELECT delivery->'body'->'observation'->>'what' FROM cpx_deliveries WHERE message_id = '%s'" % mid)
        check(what == "热线来电：孩子独自在家多日，疑似被遗弃", "Chinese text intact in the database")
        check(pg.psql("SELECT sender || ' ' || body_kind FROM cpx_deliveries WHERE message_id = '%s'" % mid)
              == "CIVIL_AFFAIRS discovery_report", "sender and body kind in their columns")

        # the adapter dies after the row is committed in PostgreSQL but before it confirmed:
        # a trigger holds the insert long enough for kill -9
        pg.psql("CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(2); "
                "RETURN NEW; END $$; CREATE TRIGGER slow BEFORE INSERT ON cpx_deliveries "
                "FOR EACH ROW EXECUTE FUNCTION slow();")
        env2 = cpxclient.report(gw.S, "CIVIL_AFFAIRS", recipients=["POLICE"])
        cpxclient.sign(env2, ca.key, ca.pub)
        rep = ca.reply(env2)
        check(rep is not None and rep.WhichOneof("frame") == "ack", "second report acknowledged")
        mid2 = env2.message_id.hex()
        check(wait_for(lambda: pg.psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'WITH ins AS%%' "
                                       "AND state = 'active'") == "1", 20, "insert running"),
              "delivery insert in progress")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        q2 = "SELECT count(*) FROM cpx_deliveries WHERE message_id = '%s'" % mid2
        check(wait_for(lambda: pg.psql(q2) == "1", 10, "committed"), "row committed although the adapter died")
        pg.psql("DROP TRIGGER slow ON cpx_deliveries")
        before = int(status(adapter_bin, acfg).get("confirmed", 0))
        proc = start_adapter()
        check(wait_for(lambda: int(status(adapter_bin, acfg).get("confirmed", 0)) > before, 30, "reconfirm"),
              "redelivery confirmed")
        log = open(os.path.join(d, "adapter.log"), encoding="utf-8", errors="replace").read()
        check("delivery already in the database" in log, "the redelivery inserted nothing")
        check(pg.psql(q2) == "1" and pg.psql(q) == "1", "each delivery is in cpx_deliveries exactly once")
        check(pg.psql("SELECT count(*) FROM cpx_delivered") == pg.psql("SELECT count(*) FROM cpx_deliveries"),
              "every delivery row has its message id recorded")

        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        check(proc.returncode == 0, "adapter stops cleanly on SIGTERM")
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        if failures and gw:
            print("---- adapter log (tail)")
            print(open(os.path.join(gw.dir, "adapter.log"), errors="replace").read()[-4000:])
            print("---- gateway log (tail)")
            print(gw.logtext())
            print("---- postgres log (tail)")
            print(open(os.path.join(pg.dir, "pg.log"), errors="replace").read()[-2000:])
        if alog:
            alog.close()
        if gw:
            gw.cleanup()
        pg.cleanup()
    print("%d passed, %d failed" % (len(passed), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(SRC, "build")))
