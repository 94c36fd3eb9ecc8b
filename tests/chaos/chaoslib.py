"""Shared pieces of the chaos suite: a gateway on a fixed loopback port, a load driver
that keeps every submitted envelope until its Ack (resending the same bytes, as
docs/protocol.md §3 asks) and counts deliveries, and the result row every scenario
returns. Built on tests/integration/cpxclient.py (the documented Python client)."""
import os
import random
import re
import resource
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("CPX_SOURCE_DIR") or os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
import cpxclient  # noqa: E402

FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


class Row:
    """One line of the final table."""

    def __init__(self, name, rounds=0):
        self.name = name
        self.rounds = rounds
        self.sent = self.acked = self.delivered = self.lost = self.dup = 0
        self.verify = "-"
        self.notes = []
        self.failures = []

    def check(self, cond, what):
        print(("  ok   " if cond else "  FAIL ") + what, flush=True)
        if not cond:
            self.failures.append(what)
        return cond

    def note(self, text):
        print("  .    " + text, flush=True)
        self.notes.append(text)

    def absorb(self, load):
        self.sent += len(load.envs)
        self.acked += len(load.acks)
        self.delivered += len(load.delivered)
        self.lost += load.lost()
        self.dup += load.dup_effects


class Gateway(cpxclient.Gateway):
    """cpxclient.Gateway on a fixed ephemeral port (adapters and proxies keep their
    endpoint across restarts) with helpers for audit verification and config edits."""

    def __init__(self, build, depts, extra_cfg="", routes=None, map_size=None, env=None):
        super().__init__(build, depts=depts, extra_cfg=extra_cfg, routes=routes)
        self.port = cpxclient.free_port()
        self.env = env
        self.set_cfg("tcp://127.0.0.1:0", "tcp://127.0.0.1:%d" % self.port)
        if map_size:
            self.set_cfg("map_size: 256MiB", "map_size: %s" % map_size)
        self.data = os.path.join(self.dir, "data")

    def set_cfg(self, old, new):
        with open(self.config) as f:
            cfg = f.read()
        assert old in cfg, old
        with open(self.config, "w") as f:
            f.write(cfg.replace(old, new))

    def start(self):
        ep = os.path.join(self.data, "gateway.endpoint")
        if os.path.exists(ep):
            os.unlink(ep)
        env = dict(os.environ)
        env.update(self.env or {})
        self.proc = subprocess.Popen([self.bin, "--config", self.config], stdout=self.log, stderr=self.log,
                                     env=env)
        for _ in range(400):
            if os.path.exists(ep) and open(ep).read().strip():
                self.endpoint = open(ep).read().strip()
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("gateway exited with %d; log: %s" % (self.proc.returncode, self.logtext()))
            time.sleep(0.05)
        raise RuntimeError("gateway did not start")

    def verify(self):
        v = self.ctl("audit", "verify", "--data", self.data, "--gateway-key",
                     os.path.join(self.keys, "GATEWAY.sign.pub"), check=False)
        return v.returncode == 0, (v.stdout.strip() or v.stderr.strip()).splitlines()[-1:] or [""]

    def head_size(self):
        r = self.ctl("audit", "head", "--data", self.data, check=False)
        m = re.search(r"(?:tree_)?size[=: ]+(\d+)", r.stdout)
        return int(m.group(1)) if m else -1

    def rss_kb(self):
        """VmRSS of the running gateway; -1 when it is not running (killed or stopped)."""
        return self.mem_kb("VmRSS")

    def mem_kb(self, field):
        """A /proc/PID/status memory field in KiB: VmRSS, or its parts RssAnon (the
        gateway's own heap and stacks) and RssFile (mostly pages of the LMDB map, file
        backed, which the kernel may drop at will); -1 when the gateway is not running."""
        if self.proc is None:
            return -1
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
        except OSError:
            pass
        return -1

    def kill9(self):
        self.stop(signal.SIGKILL)


class Load:
    """Several sending departments and one or more receiving departments on their own
    DEALER sockets, driven from one loop. Every envelope is kept (as the encoded
    ClientFrame) until its Ack; unacknowledged ones are resent after resend_s or after
    reconnect(). Counts: acks (first Ack per message id), dup_effects (an Ack for the
    same id with a different leaf: the message was applied twice), deliveries."""

    def __init__(self, gw, senders, receivers, resend_s=3.0, confirm=True):
        self.gw = gw
        self.S = gw.S
        self.senders = list(senders)
        self.receivers = list(receivers)
        self.resend_s = resend_s
        self.confirm = confirm
        self.envs = {}          # message_id -> (dept, frame bytes, priority, created)
        self.sent_at = {}       # message_id -> time of last send
        self.first_sent = {}
        self.acks = {}          # message_id -> (leaf_seq, case_id)
        self.ack_lat = []       # (time, seconds)
        self.del_lat = []       # (time, seconds, priority)
        self.delivered = {}     # message_id -> times delivered
        self.foreign = 0        # deliveries of ids we never sent
        self.extra = set()      # ids sent around the driver (attacks) that may be delivered
        self.dup_effects = 0
        self.nacks = {}         # code -> count of non-retryable
        self.final = {}         # message_id -> its non-retryable Nack code
        self.unanswered = {}    # message_id -> None: sent, neither acknowledged nor refused
                                # for good (resend() walks only these, not every message)
        self.retryable = {}     # code -> count
        self.retry_after = []
        self.clients = {}
        self.keys = {}
        self.connect()

    # -- connections --
    def connect(self):
        for d in set(self.senders) | set(self.receivers):
            c = self.gw.client(d)
            self.clients[d] = c
            self.keys[d] = (c.key, c.pub)
            c.heartbeat()

    def close(self):
        for c in self.clients.values():
            c.close()
        self.clients = {}

    def reconnect(self, resend=True):
        self.close()
        self.connect()
        if resend:
            self.resend(force=True)

    # -- sending --
    def make(self, dept, priority=None, harm=None, recipients=()):
        harm = random.random() < 0.2 if harm is None else harm
        env = cpxclient.report(self.S, dept, recipients=recipients, harm=harm, priority=priority,
                               seq=random.randint(0, 499))
        return env

    def submit(self, dept, n=1, batch=False, priority=None, recipients=()):
        key, pub = self.keys[dept]
        envs = [self.make(dept, priority, recipients=recipients) for _ in range(n)]
        if batch and n > 1:
            cpxclient.sign_batch(envs, key, pub)
            f = self.S["F"].ClientFrame()
            for e in envs:
                f.submit.batch.envelopes.add().CopyFrom(e)
            self.clients[dept].send(f)
            now = time.time()
            for e in envs:
                # resends go one by one: each envelope carries its batch proof
                one = self.S["F"].ClientFrame()
                one.submit.envelope.CopyFrom(e)
                self._track(dept, e, one.SerializeToString(), now)
        else:
            for e in envs:
                cpxclient.sign(e, key, pub)
                one = self.S["F"].ClientFrame()
                one.submit.envelope.CopyFrom(e)
                b = one.SerializeToString()
                self.clients[dept].sock.send(b)
                self._track(dept, e, b, time.time())
        return [e.message_id for e in envs]

    def _track(self, dept, e, b, now):
        self.envs[e.message_id] = (dept, b, e.priority, now)
        self.sent_at[e.message_id] = now
        self.unanswered[e.message_id] = None
        self.first_sent[e.message_id] = now

    def forget_acks(self):
        """Drops every Ack seen, so each message not refused for good is resent until it is
        answered again (a restarted gateway must give the same Acks)."""
        self.acks = {}
        self.unanswered = {m: None for m in self.envs if m not in self.final}

    def resend(self, force=False):
        now = time.time()
        n = 0
        for mid in list(self.unanswered):
            if mid in self.acks or mid in self.final:
                del self.unanswered[mid]
                continue
            dept, b, _, _ = self.envs[mid]
            if force or now - self.sent_at[mid] > self.resend_s:
                try:
                    self.clients[dept].sock.send(b, 1)  # NOBLOCK
                except Exception:  # noqa: BLE001
                    continue
                self.sent_at[mid] = now
                n += 1
        return n

    # -- receiving --
    def pump(self, seconds):
        """Reads every socket for `seconds`, resending what is overdue."""
        t_end = time.time() + seconds
        last_hb = 0
        while True:
            now = time.time()
            if now - last_hb > 0.3:
                for c in self.clients.values():
                    try:
                        c.heartbeat()
                    except Exception:  # noqa: BLE001
                        pass
                self.resend()
                last_hb = now
            busy = False
            for d, c in list(self.clients.items()):
                for _ in range(2000):
                    try:
                        raw = c.sock.recv(1)  # NOBLOCK
                    except Exception:  # noqa: BLE001
                        break
                    busy = True
                    f = self.S["F"].ServerFrame()
                    f.ParseFromString(raw)
                    self.on_frame(d, c, f, time.time())
            if time.time() >= t_end:
                break
            if not busy:
                time.sleep(0.002)

    def on_frame(self, d, c, f, now):
        k = f.WhichOneof("frame")
        if k == "ack":
            a = f.ack
            prev = self.acks.get(a.message_id)
            if prev is None:
                if a.message_id in self.envs:
                    self.acks[a.message_id] = (a.leaf_seq, a.case_id)
                    self.ack_lat.append((now, now - self.first_sent[a.message_id]))
            elif prev[0] != a.leaf_seq:
                self.dup_effects += 1
        elif k == "nack":
            n = f.nack
            name = self.S["F"].ErrorCode.Name(n.code)
            if n.retryable:
                self.retryable[name] = self.retryable.get(name, 0) + 1
                self.retry_after.append(n.retry_after_ms)
                if n.message_id in self.sent_at:
                    # honour retry_after: due again when it has passed
                    self.sent_at[n.message_id] = now - self.resend_s + n.retry_after_ms / 1000.0
            else:
                self.nacks[name] = self.nacks.get(name, 0) + 1
                if n.message_id in self.envs:
                    self.final[n.message_id] = name
        elif k == "deliver":
            mid = f.deliver.envelope.message_id
            if mid in self.envs:
                if mid not in self.delivered:
                    self.del_lat.append((now, now - self.first_sent[mid], self.envs[mid][2]))
                self.delivered[mid] = self.delivered.get(mid, 0) + 1
            elif mid not in self.extra:
                self.foreign += 1
            if self.confirm:
                c.confirm(f.deliver)

    def drain(self, timeout, need_delivery=True):
        """Pumps until every envelope is acknowledged (and delivered) or timeout."""
        t_end = time.time() + timeout
        while time.time() < t_end:
            self.pump(0.5)
            pending = self.unacked()
            undelivered = len(self.acks) - len([m for m in self.acks if m in self.delivered])
            if not pending and (not need_delivery or undelivered == 0):
                return True
        return False

    def unacked(self):
        return [m for m in self.envs if m not in self.acks and m not in self.final]

    def lost(self):
        """Acknowledged but never delivered, or never acknowledged nor refused."""
        return len([m for m in self.acks if m not in self.delivered]) + len(self.unacked())

    def creep(self, lat):
        """(median of first third, median of last third) of a latency series."""
        if len(lat) < 9:
            return None
        lat = sorted(lat)
        n = len(lat) // 3

        def med(xs):
            xs = sorted(x[1] for x in xs)
            return xs[len(xs) // 2]
        return med(lat[:n]), med(lat[-n:])


def self_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def finish(row, gw, load=None, check_status=True):
    """Common end of a round: everything accounted for, outbox empty, log verifies."""
    if load is not None:
        row.absorb(load)
        row.check(load.lost() == 0, "nothing lost (sent=%d acked=%d delivered=%d unacked=%d refused=%s)"
                  % (len(load.envs), len(load.acks), len(load.delivered), len(load.unacked()), load.nacks or "{}"))
        row.check(load.dup_effects == 0, "no message applied twice (%d)" % load.dup_effects)
        row.check(load.foreign == 0, "no delivery of a message nobody sent (%d)" % load.foreign)
    ok, line = gw.verify()
    row.verify = "pass" if ok else "FAIL"
    row.check(ok, "cpxctl audit verify: %s" % line[0][:200])
