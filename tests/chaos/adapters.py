"""Adapter faults: cpx-adapter (file connector ingesting a CSV roster) killed -9, the
gateway and the adapter killed together, the network between them cut, stalled and
reset through the loopback proxy (also mid-batch), and the local system behind an http
adapter down for many retry periods."""
import hashlib
import http.server
import json
import os
import random
import re
import signal
import subprocess
import threading
import time

from chaoslib import cpxclient
from chaoslib import SRC, Gateway, Load, Row, finish
from proxy import Proxy

MAPPING = os.path.join(SRC, "deploy", "jiangyin", "adapters", "education-dropout.yaml")
DEPTS = ("EDUCATION", "POLICE", "HEALTH", "CIVIL_AFFAIRS")


def _roster(path, n, start=0):
    import test_adapter_file  # the integration test's GB18030 roster writer
    test_adapter_file.roster(path, n, start=start)


class Adapter:
    def __init__(self, gw, port, name="edu"):
        self.gw = gw
        self.bin = os.path.join(gw.build, "adapters", "cpx-adapter")
        self.cfg = os.path.join(gw.dir, name + ".yaml")
        self.batch, self.resend_after_ms, self.backoff_max_ms, self.heartbeat_ms = 128, 1500, 4000, 300
        self.dir = os.path.join(gw.dir, name)
        with open(self.cfg, "w") as f:
            f.write("department: EDUCATION\ngateway: tcp://127.0.0.1:%d\nkeys: keys\n"
                    "gateway_key: keys/GATEWAY.curve.pub\nspool: %s-spool\nconnector: file\n"
                    "batch: %d\ncycle_max: 500\nresend_after_ms: %d\nbackoff_max_ms: %d\n"
                    "heartbeat_ms: %d\nstatus_every_ms: 2000\nlog_level: warn\n"
                    "file:\n  dir: %s\n  mapping: %s\n"
                    % (port, name, self.batch, self.resend_after_ms, self.backoff_max_ms, self.heartbeat_ms,
                       name, MAPPING))
        self.log = open(os.path.join(gw.dir, name + ".log"), "ab")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([self.bin, "--config", self.cfg], stdout=self.log, stderr=self.log)
        t_end = time.time() + 10
        while time.time() < t_end and not os.path.isdir(os.path.join(self.dir, "inbox")):
            time.sleep(0.05)

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def status(self):
        r = subprocess.run([self.bin, "--config", self.cfg, "--status"], capture_output=True, text=True)
        return dict(x.split("=", 1) for x in r.stdout.split() if "=" in x)

    def acked(self):
        return int(self.status().get("acked", 0))


def _waiting(gw, dept):
    m = re.search(r"^queue dept=%s waiting=(\d+)" % dept, gw.status(), re.M)
    return int(m.group(1)) if m else 0


def _collect(gw, n, row, quiet_s=30, timeout=900):
    """CIVIL_AFFAIRS takes every delivery; returns distinct message ids seen. Waits as
    long as deliveries keep arriving (a loaded machine slows them, it does not stop
    them): it gives up after quiet_s without a new one, or at the outer timeout."""
    load = Load(gw, (), ("CIVIL_AFFAIRS",))
    seen = {}

    def on_frame(d, c, f, now):
        if f.WhichOneof("frame") == "deliver":
            m = f.deliver.envelope.message_id
            seen[m] = seen.get(m, 0) + 1
            c.confirm(f.deliver)
    load.on_frame = on_frame
    t_end = time.time() + timeout
    last_n, last_change = 0, time.time()
    while time.time() < t_end and len(seen) < n and time.time() - last_change < quiet_s:
        load.pump(0.5)
        if len(seen) != last_n:
            last_n, last_change = len(seen), time.time()
    load.pump(1.0)
    load.close()
    return seen


def _progress(ad, receipts):
    """What changes while the work advances: rows read and spooled, Acks, rows pending,
    receipts. Resends are not progress: an adapter retrying into a dead gateway resends
    forever; its backoff is what the quiet limit allows for."""
    st = ad.status()
    return (st.get("spooled"), st.get("acked"), st.get("pending"), sum(os.path.exists(x) for x in receipts))


def _await_receipts(ad, receipts, row, gw=None):
    """Wait for every roster's receipt for as long as the adapter makes progress. A
    fixed budget ran out under parallel test load while the adapter sat in backoff with
    rows pending (none lost); instead the wait follows the adapter: any change in its
    spool counters or a new receipt restarts the quiet clock, and only a quiet spell
    longer than its configured backoff allows (three full backoff_max periods plus the
    first resend delay, plus a heartbeat round for reconnecting) ends the wait early,
    and so does the gateway process exiting.
    The overall bound is that quiet spell per pending row batch, so it scales with the
    work left rather than with machine speed."""
    quiet_s = (3 * ad.backoff_max_ms + ad.resend_after_ms + 3 * ad.heartbeat_ms) / 1000.0 + 5.0
    pending0 = int(ad.status().get("pending", 0) or 0)
    t0 = time.time()
    bound_s = 240 + quiet_s * (1 + pending0 // ad.batch + len(receipts))
    last, last_change = _progress(ad, receipts), time.time()
    while not all(os.path.exists(x) for x in receipts):
        now = time.time()
        if gw is not None and gw.proc is not None and gw.proc.poll() is not None:
            row.check(False, "gateway exited while the adapter waited (status %s)" % gw.proc.returncode)
            break
        if now - last_change > quiet_s:
            row.note("adapter quiet for %.0f s (> its backoff allows) with %s" % (now - last_change, ad.status()))
            break
        if now - t0 > bound_s:
            row.note("overall bound %.0f s reached while still progressing: %s" % (bound_s, ad.status()))
            break
        time.sleep(0.3)
        cur = _progress(ad, receipts)
        if cur != last:
            last, last_change = cur, time.time()
    row.note("receipt wait ended after %.1f s (quiet limit %.0f s)" % (time.time() - t0, quiet_s))


def _ingest(build, name, rounds, rows, kill_gw, kill_ad, cut):
    row = Row(name, rounds)
    print("== %s (%d rounds, %d rows)" % (name, rounds, rows), flush=True)
    gw = Gateway(build, DEPTS)
    proxy = None
    ad = None
    try:
        gw.start()
        if cut:
            proxy = Proxy("127.0.0.1", gw.port)
        ad = Adapter(gw, proxy.port if proxy else gw.port)
        ad.start()
        # one roster per round; each strike comes a random moment after the file lands,
        # while the adapter reads, spools, signs and submits it (mid-batch)
        per = max(1, rows // rounds)
        receipts = []
        for r in range(rounds):
            _roster(os.path.join(ad.dir, "inbox", "roster-%02d.csv" % r), per, start=r * per)
            receipts.append(os.path.join(ad.dir, "done", "roster-%02d.csv.receipt" % r))
            time.sleep(random.uniform(0.02, 0.6))
            if cut:
                mode = random.choice(("drop", "reset", "stall"))
                proxy.set_mode(mode)
                at = ad.acked()
                time.sleep(random.uniform(0.5, 2.5))
                proxy.set_mode("pass")
                print("  .    round %d: %s at acked=%d" % (r + 1, mode, at), flush=True)
                continue
            if kill_ad:
                ad.kill9()
            if kill_gw:
                gw.kill9()
            print("  .    round %d: kill -9 at acked=%d of %d" % (r + 1, ad.acked(), (r + 1) * per), flush=True)
            if kill_gw:
                gw.start()
            if kill_ad:
                ad.start()
        rows = per * rounds
        _await_receipts(ad, receipts, row, gw)
        receipt = receipts[-1]
        done = [json.load(open(x)) for x in receipts if os.path.exists(x)]
        if not row.check(len(done) == rounds, "every roster done (%d of %d receipts)" % (len(done), rounds)):
            row.note("gateway status: %s" % gw.status().strip().replace("\n", " | ")[:1200])
            row.note("gateway log tail: %s" % gw.logtext()[-1500:])
            with open(os.path.join(gw.dir, "edu.log"), "rb") as f:
                row.note("adapter log tail: %s" % f.read()[-1500:].decode("utf-8", "replace"))
        ackd = sum(x.get("acknowledged", 0) for x in done)
        rej = sum(x.get("rejected", 0) for x in done)
        st = ad.status()
        row.check(ackd == rows and rej == 0, "receipts: %d acknowledged of %d, %d rejected" % (ackd, rows, rej))
        row.check(st.get("pending") == "0", "adapter spool empty: pending=%s" % st.get("pending"))
        if st.get("acked") != str(rows):
            # the gateway's queue below stays the authority on duplicates. The adapter's
            # acked counts only Acks that removed a pending entry (answers to resends go
            # to duplicate_acks), and a file settled just before a kill is no longer read
            # again, so a mismatch here is worth a look
            row.note("adapter counter acked=%s spooled=%s duplicate_acks=%s for %d rows (gateway: see next line)"
                     % (st.get("acked"), st.get("spooled"), st.get("duplicate_acks"), rows))
        waiting = _waiting(gw, "CIVIL_AFFAIRS")
        row.check(waiting == rows, "gateway accepted each row exactly once (CIVIL_AFFAIRS waiting=%d)" % waiting)
        seen = _collect(gw, rows, row)
        row.sent += rows
        row.acked += ackd  # the receipts, independent of the adapter's own counter
        row.delivered += len(seen)
        row.lost += max(0, rows - len(seen))
        row.dup += max(0, waiting - rows)
        row.check(len(seen) == rows, "every row delivered to CIVIL_AFFAIRS (%d)" % len(seen))
        if proxy:
            row.note("proxy carried %d connections" % proxy.accepted)
        finish(row, gw)
    except Exception as e:  # noqa: BLE001
        row.check(False, "exception %r; gateway log: %s" % (e, gw.logtext()[-800:]))
    finally:
        if ad:
            ad.kill9()
            ad.log.close()
        if proxy:
            proxy.close()
        gw.cleanup()
    return row


def adapter_kill(build, rounds, rows):
    return _ingest(build, "adapter (file) kill -9 mid-CSV", rounds, rows, False, True, False)


def both_kill(build, rounds, rows):
    return _ingest(build, "gateway + adapter kill -9 together", rounds, rows, True, True, False)


def network_cut(build, rounds, rows):
    return _ingest(build, "network cut/stall/reset (proxy)", rounds, rows, False, False, True)


class _Local(http.server.BaseHTTPRequestHandler):
    up = False
    bodies = {}
    refused = 0

    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(n)
        if not _Local.up:
            _Local.refused += 1
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        try:
            mid = json.loads(body).get("message_id") or hashlib.sha256(body).hexdigest()
        except ValueError:
            mid = hashlib.sha256(body).hexdigest()
        _Local.bodies[mid] = _Local.bodies.get(mid, 0) + 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def local_down(build, down_s, attempts, n=20):
    """The gateway retries every ~1 s (base 300 ms, max 1 s) up to `attempts` times; the
    adapter retries its callback every 0.5-1 s. Within the budget nothing may be
    dead-lettered; beyond it (beyond=True row) dead letters are reported, not failed."""
    beyond = attempts * 1.0 < down_s + min(5, down_s / 2)
    row = Row("local system down %ds, gateway budget %d attempts" % (down_s, attempts), 1)
    print("== " + row.name, flush=True)
    gw = Gateway(build, DEPTS)
    gw.set_cfg("max_attempts: 3", "max_attempts: %d" % attempts)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Local)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    _Local.up, _Local.bodies, _Local.refused = False, {}, 0
    proc = None
    log = open(os.path.join(gw.dir, "health.log"), "ab")
    try:
        gw.start()
        with open(os.path.join(gw.dir, "token"), "w") as f:
            f.write("t0k-" + os.urandom(12).hex() + "\n")
        acfg = os.path.join(gw.dir, "health.yaml")
        with open(acfg, "w") as f:
            f.write("department: HEALTH\ngateway: tcp://127.0.0.1:%d\nkeys: keys\ngateway_key: keys/GATEWAY.curve.pub\n"
                    "spool: health-spool\nconnector: http\nheartbeat_ms: 300\nlog_level: warn\n"
                    "http:\n  listen: 127.0.0.1:%d\n  token_file: token\n  callback: http://127.0.0.1:%d/cpx\n"
                    "  retry_max_ms: 1000\n" % (gw.port, cpxclient.free_port(), srv.server_address[1]))
        proc = subprocess.Popen([os.path.join(build, "adapters", "cpx-adapter"), "--config", acfg],
                                stdout=log, stderr=log)
        load = Load(gw, ("POLICE",), ())
        for _ in range(n):
            load.submit("POLICE", n=1, recipients=["HEALTH"])
        load.drain(20, need_delivery=False)
        row.check(len(load.acks) == n, "%d reports for HEALTH acknowledged" % len(load.acks))
        # the local system refuses (500) for down_s, then also refuses connections for a while
        time.sleep(down_s)
        srv.shutdown()
        srv.server_close()
        port = srv.server_address[1]
        time.sleep(min(5, down_s / 2))
        st = gw.status()
        dl = re.search(r"dead_letters=(\d+)", st)
        if beyond:
            row.note("down longer than the gateway's retry budget: %s (the adapter still holds and delivers them)"
                     % (dl.group(0) if dl else "?"))
        else:
            row.check(dl is not None and dl.group(1) == "0", "nothing dead-lettered while the local system is down (%s)"
                      % (dl.group(0) if dl else st.strip()[:200]))
        _Local.up = True
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Local)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        t_end = time.time() + 60
        while time.time() < t_end and len(_Local.bodies) < n:
            load.pump(0.5)
        row.note("local system refused %d POSTs while down" % _Local.refused)
        row.check(len(_Local.bodies) == n, "all %d delivered to the local system once it returned (%d)"
                  % (n, len(_Local.bodies)))
        row.check(all(v == 1 for v in _Local.bodies.values()), "none handed to the local system twice")
        row.sent, row.acked, row.delivered = n, len(load.acks), len(_Local.bodies)
        row.lost = n - len(_Local.bodies)
        row.dup = sum(v - 1 for v in _Local.bodies.values())
        load.close()
        finish(row, gw)
    except Exception as e:  # noqa: BLE001
        row.check(False, "exception %r; gateway log: %s" % (e, gw.logtext()[-800:]))
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        srv.shutdown()
        srv.server_close()
        log.close()
        gw.cleanup()
    return row
