"""Attacks and bad input against one running gateway. Every attack is followed by
legitimate traffic from enrolled departments that must still be acknowledged and
delivered; hostile frames must never be accepted or delivered; the log verifies."""
import os
import random
import socket
import time

import zmq

from chaoslib import cpxclient
from chaoslib import Gateway, Load, Row, finish

DEPTS = ("POLICE", "EDUCATION", "CIVIL_AFFAIRS")


class Attack:
    def __init__(self, gw, load):
        self.gw = gw
        self.load = load
        self.S = gw.S
        self.F = gw.S["F"]

    def legit(self, row, n=20, within=10.0):
        """Enrolled traffic after (or during) an attack: acknowledged and delivered."""
        before = len(self.load.envs)
        mids = []
        for i in range(n):
            mids += self.load.submit(random.choice(("POLICE", "EDUCATION")), n=1)
        t0 = time.time()
        t_end = t0 + within
        while time.time() < t_end:
            self.load.pump(0.05)
            if all(m in self.load.delivered for m in mids):
                break
        ok = all(m in self.load.delivered for m in mids)
        row.sent += len(self.load.envs) - before
        row.acked += len([m for m in mids if m in self.load.acks])
        row.delivered += len([m for m in mids if m in self.load.delivered])
        row.check(ok, "enrolled traffic still flows: %d/%d delivered in %.1f s"
                  % (len([m for m in mids if m in self.load.delivered]), n, time.time() - t0))
        return time.time() - t0

    def reply_of(self, cl, mid, timeout=5.0):
        t_end = time.time() + timeout
        while time.time() < t_end:
            f = cl.recv(100)
            if f is None:
                continue
            k = f.WhichOneof("frame")
            if k in ("ack", "nack") and getattr(f, k).message_id == mid:
                return f
        return None

    def signed(self, dept, cl, **kw):
        env = cpxclient.report(self.S, dept, **kw)
        cpxclient.sign(env, cl.key, cl.pub)
        return env

    def frame_of(self, env):
        f = self.F.ClientFrame()
        f.submit.envelope.CopyFrom(env)
        return f.SerializeToString()

    def expect_nack(self, row, cl, raw, mid, codes, what):
        cl.sock.send(raw)
        f = self.reply_of(cl, mid)
        k = f.WhichOneof("frame") if f else None
        name = self.F.ErrorCode.Name(f.nack.code) if k == "nack" else k
        row.check(k == "nack" and name in codes, "%s -> %s" % (what, name if f else "no reply"))
        return f


def unknown_key(a):
    row = Row("unknown CURVE key", 1)
    gw = a.gw
    gw.keygen("ROGUE")
    cl = gw.client("POLICE", curve_dept="ROGUE")  # POLICE's signing key, an unenrolled CURVE key
    env = a.signed("POLICE", cl)
    cl.submit(env)
    f = cl.recv(1500)
    row.check(f is None, "no reply of any kind to an unenrolled key")
    cl.close()
    a.legit(row)
    return row


def forged_sender(a):
    row = Row("valid key, forged sender", 1)
    cl = a.gw.client("POLICE")
    edu_key = cpxclient.load_sign_key(os.path.join(a.gw.keys, "EDUCATION.sign.key"))
    for signer in ("POLICE", "EDUCATION"):
        env = cpxclient.report(a.S, "EDUCATION")
        if signer == "POLICE":
            cpxclient.sign(env, cl.key, cl.pub)
        else:  # even with EDUCATION's signing key: the connection is POLICE's
            cpxclient.sign(env, *edu_key)
        a.expect_nack(row, cl, a.frame_of(env), env.message_id, ("SENDER_MISMATCH",),
                      "sender EDUCATION on POLICE's connection, signed by %s" % signer)
    cl.close()
    a.legit(row)
    return row


def replay(a):
    row = Row("replayed messages and batches", 1)
    cl = a.gw.client("POLICE")
    env = a.signed("POLICE", cl)
    raw = a.frame_of(env)
    cl.sock.send(raw)
    first = a.reply_of(cl, env.message_id)
    row.check(first is not None and first.WhichOneof("frame") == "ack", "original acknowledged")
    same = 0
    for _ in range(5):
        cl.sock.send(raw)
        f = a.reply_of(cl, env.message_id)
        same += bool(f and f.WhichOneof("frame") == "ack" and f.ack.duplicate and f.ack.leaf_seq == first.ack.leaf_seq)
    row.check(same == 5, "5 replays answered with the original Ack, duplicate=true (%d)" % same)
    envs = [cpxclient.report(a.S, "POLICE") for _ in range(10)]
    cpxclient.sign_batch(envs, cl.key, cl.pub)
    fb = a.F.ClientFrame()
    for e in envs:
        fb.submit.batch.envelopes.add().CopyFrom(e)
    rawb = fb.SerializeToString()
    got = {}
    for rnd in range(3):
        cl.sock.send(rawb)
        t_end = time.time() + 5
        while time.time() < t_end and len([1 for (r, _) in got if r == rnd]) < 10:
            f = cl.recv(100)
            if f is not None and f.WhichOneof("frame") == "ack":
                got[(rnd, f.ack.message_id)] = f.ack
    leafs = {}
    for (rnd, m), ack in got.items():
        leafs.setdefault(m, set()).add(ack.leaf_seq)
    row.check(len(got) == 30 and all(len(s) == 1 for s in leafs.values()),
              "a batch replayed twice: 30 Acks, each message on one leaf (%d acks)" % len(got))
    # one delivery each to CIVIL_AFFAIRS (confirmed, so never again)
    mids = [env.message_id] + [e.message_id for e in envs]
    t_end = time.time() + 10
    rec = a.gw.client("CIVIL_AFFAIRS")
    a.load.clients["CIVIL_AFFAIRS"].close()
    a.load.clients["CIVIL_AFFAIRS"] = rec
    seen = {}
    while time.time() < t_end and len(seen) < len(mids):
        rec.heartbeat()
        f = rec.recv(100)
        if f is not None and f.WhichOneof("frame") == "deliver":
            m = f.deliver.envelope.message_id
            if m in mids:
                seen[m] = seen.get(m, 0) + 1
            else:
                a.load.on_frame("CIVIL_AFFAIRS", rec, f, time.time())
                continue
            rec.confirm(f.deliver)
    row.check(len(seen) == len(mids), "each replayed message delivered (%d/%d)" % (len(seen), len(mids)))
    row.sent += 11
    row.acked += 11 if same == 5 else 0
    row.delivered += len(seen)
    row.dup += sum(1 for s in leafs.values() if len(s) > 1)
    cl.close()
    a.legit(row)
    return row


PACER = 900


def duplicate_burst(a, n=300, copies=3):
    """A batch and several replays of it in one burst, so the gateway Acks the replays
    (as duplicates of messages it accepted moments before, in the same cycle) while its
    per-cycle answer array grows past its first 1,024 entries. Before the fix the
    duplicate's Ack read its case id from the array freed by that growth (found as a
    SIGSEGV under the network-cut scenario's resend storms)."""
    row = Row("batch + %d replays in one burst (%d envelopes)" % (copies, n * (1 + copies) + PACER), 1)
    cl = a.gw.client("POLICE")

    def batch(k):
        envs = [cpxclient.report(a.S, "POLICE") for _ in range(k)]
        cpxclient.sign_batch(envs, cl.key, cl.pub)
        fb = a.F.ClientFrame()
        for e in envs:
            fb.submit.batch.envelopes.add().CopyFrom(e)
        return envs, fb.SerializeToString()
    # a large first batch keeps the gateway busy for one cycle, so the batch and its
    # replays queue up behind it and are read together in the next
    pacer, raw_pacer = batch(PACER)
    envs, raw = batch(n)
    cl.sock.send(raw_pacer)
    for _ in range(1 + copies):
        cl.sock.send(raw)
    leafs, acks = {}, 0
    total = n * (1 + copies) + PACER
    envs = envs + pacer
    n += PACER
    t_end = time.time() + 30
    while time.time() < t_end and acks < total:
        f = cl.recv(200)
        if f is not None and f.WhichOneof("frame") == "ack":
            acks += 1
            leafs.setdefault(f.ack.message_id, set()).add(f.ack.leaf_seq)
    row.check(a.gw.proc.poll() is None, "gateway alive after the burst")
    row.check(acks == total and len(leafs) == n and all(len(x) == 1 for x in leafs.values()),
              "%d Acks, each message on one leaf (%d acks, %d messages)" % (total, acks, len(leafs)))
    # each delivered once to CIVIL_AFFAIRS (the lead), taken here so the load's
    # receiver does not count them as foreign
    mids = set(e.message_id for e in envs)
    rec = a.gw.client("CIVIL_AFFAIRS")
    a.load.clients["CIVIL_AFFAIRS"].close()
    a.load.clients["CIVIL_AFFAIRS"] = rec
    seen = {}
    t_end = time.time() + 30
    while time.time() < t_end and len(seen) < n:
        rec.heartbeat()
        f = rec.recv(100)
        if f is not None and f.WhichOneof("frame") == "deliver":
            m = f.deliver.envelope.message_id
            if m not in mids:
                a.load.on_frame("CIVIL_AFFAIRS", rec, f, time.time())
                continue
            seen[m] = seen.get(m, 0) + 1
            rec.confirm(f.deliver)
    redelivered = sum(v - 1 for v in seen.values())
    if redelivered:  # a Deliver not confirmed within the retry delay is sent again (same id)
        row.note("%d redeliveries before their confirmation arrived (at-least-once; same message id)"
                 % redelivered)
    row.check(len(seen) == n, "each message delivered (%d of %d)" % (len(seen), n))
    row.sent += total
    row.acked += acks
    row.delivered += len(seen)
    row.lost += n - len(seen)
    row.dup += sum(1 for x in leafs.values() if len(x) > 1)
    cl.close()
    a.legit(row)
    return row


def reordered(a):
    row = Row("reordered frames", 1)
    cl = a.gw.client("POLICE")
    first = a.signed("POLICE", cl)
    reply = a.signed("POLICE", cl, in_reply_to=first.message_id)
    a.expect_nack(row, cl, a.frame_of(reply), reply.message_id, ("UNKNOWN_REFERENCE",),
                  "a reply before the message it answers")
    f = a.F.ClientFrame()
    f.delivery_ack.delivery_id = 987654321
    f.delivery_ack.message_id = os.urandom(16)
    f.delivery_ack.status = a.F.TAKEN
    cl.send(f)  # confirming an unknown delivery is ignored
    a.load.extra.update((first.message_id, reply.message_id))
    cl.sock.send(a.frame_of(first))
    r1 = a.reply_of(cl, first.message_id)
    cl.sock.send(a.frame_of(reply))
    r2 = a.reply_of(cl, reply.message_id)
    row.check(r1 is not None and r1.WhichOneof("frame") == "ack" and r2 is not None and
              r2.WhichOneof("frame") == "ack" and r2.ack.case_id == r1.ack.case_id,
              "in order, both accepted into one case (%s)" % (r1.ack.case_id if r1 and r1.WhichOneof("frame") == "ack" else "?"))
    row.sent += 2
    row.acked += 2
    cl.close()
    a.legit(row)
    return row


def oversized(a):
    row = Row("oversized frames and fields", 1)
    cl = a.gw.client("POLICE")
    cl.sock.send(os.urandom(1536 * 1024))  # over CPX_MAX_FRAME_BYTES: the connection is closed
    time.sleep(0.5)
    row.check(a.gw.proc.poll() is None, "gateway alive after a 1.5 MiB frame")
    cl.close()
    cl = a.gw.client("POLICE")
    env = cpxclient.report(a.S, "POLICE")
    env.discovery_report.observation.what = "x" * (300 * 1024)
    cpxclient.sign(env, cl.key, cl.pub)
    a.expect_nack(row, cl, a.frame_of(env), env.message_id, ("TOO_LARGE", "INVALID", "DECODE_FAILED"),
                  "a 300 KiB envelope")
    env = cpxclient.report(a.S, "POLICE")
    for _ in range(40000):
        c = env.discovery_report.categories.add()
        c.category = a.S["C"].HARMED
        c.harm_types.append(a.S["B"].ABUSE)
    cpxclient.sign(env, cl.key, cl.pub)
    a.expect_nack(row, cl, a.frame_of(env), env.message_id, ("TOO_LARGE", "INVALID", "DECODE_FAILED"),
                  "40,000 repeated categories")
    # 3000 levels of nested length-delimited unknown fields inside the envelope
    env = a.signed("POLICE", cl)
    inner = b""
    for _ in range(3000):
        inner = b"\xba\x3e" + _varint(len(inner)) + inner  # field 999, wire type 2
    deep = a.S["E"].Envelope()
    deep.ParseFromString(env.SerializeToString() + inner)  # kept as an unknown field
    a.load.extra.add(env.message_id)
    cl.sock.send(a.frame_of(deep))
    rep = a.reply_of(cl, env.message_id)
    kind = rep.WhichOneof("frame") if rep else "no reply"
    row.check(a.gw.proc.poll() is None and rep is not None, "3000-deep nesting answered (%s), gateway alive" % kind)
    if kind == "ack":
        row.note("an envelope carrying 3000 levels of nested unknown fields (outside the signature) was accepted")
    for _ in range(100):
        cl.sock.send(os.urandom(random.randint(1, 4000)))
    cl.sock.send_multipart([b"a", b"b"])
    n = 0
    t_end = time.time() + 5
    while time.time() < t_end and n < 100:
        g = cl.recv(200)
        if g is not None and g.WhichOneof("frame") == "nack":
            n += 1
    row.check(n >= 90, "100 random frames answered with Nacks (%d), gateway alive" % n)
    cl.close()
    a.legit(row)
    return row


def _varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def bad_utf8(a):
    row = Row("invalid UTF-8", 1)
    cl = a.gw.client("POLICE")
    env = cpxclient.report(a.S, "POLICE")
    env.discovery_report.minor.name = "QQQQQQQQ"
    cpxclient.sign(env, cl.key, cl.pub)
    raw = a.frame_of(env).replace(b"QQQQQQQQ", b"\xff\xfe\xc0\xaf\xed\xa0\x80Q")
    f = a.expect_nack(row, cl, raw, env.message_id, ("INVALID", "DECODE_FAILED"), "a name with invalid UTF-8")
    if f is not None and f.WhichOneof("frame") == "nack" and f.nack.errors:
        e = f.nack.errors[0]
        row.check("name" in e.path, "the error names the field: %s / %s" % (e.path, e.rule))
    cl.close()
    a.legit(row)
    return row


def slow_clients(a, n):
    row = Row("slow clients holding %d connections" % n, 1)
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", a.gw.port))
        s.send(b"\xff\x00\x00\x00"[: 1 + i % 3])  # a partial ZMTP greeting, then nothing
        socks.append(s)
    dt = a.legit(row, within=15)
    row.note("enrolled traffic delivered in %.2f s while %d connections stall" % (dt, n))
    for s in socks:
        s.close()
    return row


def storm(a, n):
    row = Row("handshake storm, %d unknown keys" % n, 1)
    ctx = zmq.Context.instance()
    size0 = a.gw.head_size()
    socks = []
    for _ in range(n):
        pub, sec = zmq.curve_keypair()
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.curve_serverkey = a.gw.server_pub
        s.curve_publickey = pub
        s.curve_secretkey = sec
        s.connect("tcp://127.0.0.1:%d" % a.gw.port)
        socks.append(s)
    dt = a.legit(row, n=30, within=20)
    time.sleep(3)
    for s in socks:
        s.close(0)
    growth = a.gw.head_size() - size0 - 2 * 30  # the legit messages: ACCEPTED + DELIVERY_ACKNOWLEDGED
    row.note("%d refused handshakes (retried every ~100 ms): log grew by %d leaves; enrolled traffic %.2f s"
             % (n, growth, dt))
    row.check(growth <= 200, "AUTH_REFUSED rate-limited (log growth %d <= 200)" % growth)
    return row


def all_attacks(build, storm_n):
    print("== attacks", flush=True)
    gw = Gateway(build, DEPTS)
    rows = []
    try:
        gw.start()
        load = Load(gw, ("POLICE", "EDUCATION"), ("CIVIL_AFFAIRS",))
        a = Attack(gw, load)
        for fn in (unknown_key, forged_sender, replay, duplicate_burst, reordered, oversized, bad_utf8):
            print("-- " + fn.__name__, flush=True)
            try:
                rows.append(fn(a))
            except Exception as e:  # noqa: BLE001
                r = Row(fn.__name__, 1)
                r.check(False, "exception %r" % e)
                rows.append(r)
        print("-- slow clients", flush=True)
        rows.append(slow_clients(a, max(50, storm_n // 4)))
        print("-- storm", flush=True)
        rows.append(storm(a, storm_n))
        load.drain(30)
        for r in rows:
            r.check(gw.proc.poll() is None, "gateway alive")
            ok, line = gw.verify()
            r.verify = "pass" if ok else "FAIL"
        rows[-1].check(load.lost() == 0 and load.dup_effects == 0 and load.foreign == 0,
                       "legitimate traffic: nothing lost, nothing twice, nothing foreign delivered "
                       "(lost=%d dup=%d foreign=%d)" % (load.lost(), load.dup_effects, load.foreign))
        finish(rows[-1], gw)
    except Exception as e:  # noqa: BLE001
        r = Row("attacks", 1)
        r.check(False, "exception %r; gateway log: %s" % (e, gw.logtext()[-800:]))
        rows.append(r)
    finally:
        gw.cleanup()
    return rows
