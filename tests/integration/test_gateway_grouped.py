"""Grouped frames (docs/protocol.md 2, 5, 6) against a real cpx-gateway, from the Python
client written from the protocol page:

* a batch with grouped_acks is answered with ONE `acks` frame holding every Ack (and no
  `ack` frames); resent, with one `acks` frame of duplicates carrying the same leaves;
* an invalid envelope in such a batch still gets its own `nack` naming the field, the
  others one `acks` frame;
* a batch without grouped_acks gets one `ack` frame per envelope, as before;
* a connection that never sets deliveries_per_frame only ever gets `deliver` frames;
* one whose heartbeat sets deliveries_per_frame = 50 gets `deliveries` frames of more than
  one and at most 50; one `delivery_acks` per frame confirms them, nothing is redelivered
  and the audit log holds one DELIVERY_ACKNOWLEDGED leaf per message;
* a new connection of that department gets `deliver` frames again until its own heartbeat
  opts in;
* a `delivery_acks` frame of 1001 entries is refused (TOO_LARGE) and confirms nothing:
  its real deliveries come again.

POLICE submits, CIVIL_AFFAIRS receives; retry.base_ms is 300 (cpxclient.Gateway)."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpxclient  # noqa: E402

failures = []
PER_FRAME = 50        # the recipient's deliveries_per_frame once it opts in
HB_EVERY = 0.3        # s; the gateway marks a peer silent for 1.5 s offline


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def reports(S, police, n, invalid_at=None):
    """n batch-signed reports POLICE -> CIVIL_AFFAIRS; the one at invalid_at fails
    validation (an empty observation), the others are valid."""
    envs = [cpxclient.report(S, "POLICE", recipients=["CIVIL_AFFAIRS"], harm=False, seq=i)
            for i in range(n)]
    if invalid_at is not None:
        envs[invalid_at].discovery_report.observation.what = ""
    cpxclient.sign_batch(envs, police.key, police.pub)
    return envs


class Recipient:
    """CIVIL_AFFAIRS' side: heartbeats, every delivery frame it got (kind, count) and every
    delivery per message id, confirmed per frame (one delivery_acks per `deliveries`)."""

    def __init__(self, gw):
        self.c = gw.client("CIVIL_AFFAIRS")
        self.per_frame = 0            # what its heartbeats say
        self.frames = []              # (kind, number of Delivers) per delivery frame
        self.got = {}                 # message id -> [Deliver, ...]
        self.last_hb = 0.0
        self.nacks = []

    def heartbeat(self):
        self.c.heartbeat(self.per_frame)
        self.last_hb = time.time()

    def run(self, until=None, seconds=10.0, confirm=True):
        """Reads (heartbeating) until until() holds or seconds passed; confirms each
        delivery frame as it comes unless confirm is False. Returns the frames read."""
        start = len(self.frames)
        deadline = time.time() + seconds
        while time.time() < deadline and not (until and until()):
            if time.time() - self.last_hb > HB_EVERY:
                self.heartbeat()
            f = self.c.recv(50)
            if f is None:
                continue
            if f.WhichOneof("frame") == "nack":
                self.nacks.append(f.nack)
            ds = cpxclient.delivers_of(f)
            if not ds:
                continue
            self.frames.append((f.WhichOneof("frame"), len(ds)))
            for d in ds:
                self.got.setdefault(d.envelope.message_id, []).append(d)
            if confirm:
                if f.WhichOneof("frame") == "deliveries":
                    self.c.confirm_many(ds)
                else:
                    self.c.confirm(ds[0])
        return self.frames[start:]

    def has(self, ids):
        return lambda: all(i in self.got for i in ids)


def kinds_of(frames):
    return sorted({k for k, _ in frames})


def acked_leaves(gw):
    """accepted leaf seq -> number of DELIVERY_ACKNOWLEDGED leaves naming it."""
    out = gw.ctl("audit", "tail", "-n", "1000000", "--data", os.path.join(gw.dir, "data"),
                 "--json").stdout
    n = {}
    for line in out.splitlines():
        leaf = json.loads(line)
        if leaf["event"] == "DELIVERY_ACKNOWLEDGED":
            n[leaf.get("ref_seq")] = n.get(leaf.get("ref_seq"), 0) + 1
    return n


def grouped_acks(gw, police, ca_msgs):
    S = gw.S
    # a grouped batch: one Acks frame with every Ack, no Ack frames
    envs = reports(S, police, 20)
    ids = [e.message_id for e in envs]
    police.submit_batch(envs, grouped_acks=True)
    acks, nacks, kinds = police.collect(ids)
    check(kinds == ["acks"] and not nacks,
          "grouped batch of 20 answered with one acks frame (frames: %s, nacks %d)" % (kinds, len(nacks)))
    check(set(acks) == set(ids), "the acks frame holds an Ack for each of the 20 (%d)" % len(acks))
    vals = list(acks.values())
    check(len({a.tree_size for a in vals}) == 1 and len({a.leaf_seq for a in vals}) == len(vals) and
          all(a.tree_size > a.leaf_seq and not a.duplicate for a in vals),
          "one tree size, distinct leaves, none duplicate")
    ca_msgs.update({i: acks[i].leaf_seq for i in acks})

    # the same batch again: one Acks frame of duplicates, the original leaves
    police.submit_batch(envs, grouped_acks=True)
    dup, dnacks, dkinds = police.collect(ids)
    check(dkinds == ["acks"] and set(dup) == set(ids) and not dnacks,
          "resent grouped batch answered with one acks frame (frames: %s)" % dkinds)
    check(all(dup[i].duplicate and dup[i].leaf_seq == acks[i].leaf_seq and
              dup[i].tree_size == acks[i].tree_size and dup[i].case_id == acks[i].case_id for i in dup),
          "each duplicate = true with the original leaf, tree size and case")

    # one invalid envelope in a grouped batch: its own Nack naming the field
    envs = reports(S, police, 10, invalid_at=4)
    ids = [e.message_id for e in envs]
    police.submit_batch(envs, grouped_acks=True)
    acks, nacks, kinds = police.collect(ids)
    bad = envs[4].message_id
    paths = [e.path for e in nacks[bad].errors] if bad in nacks else []
    check(sorted(kinds) == ["acks", "nack"], "grouped batch with an invalid envelope: one acks, one nack (%s)" % kinds)
    check(set(acks) == set(ids) - {bad} and set(nacks) == {bad},
          "9 Acks in the acks frame, the Nack for the invalid one (%d acks, %d nacks)" % (len(acks), len(nacks)))
    check(bad in nacks and nacks[bad].code == S["F"].INVALID and
          "discovery_report.observation.what" in paths,
          "the Nack is INVALID and names discovery_report.observation.what (%s)" % paths)
    ca_msgs.update({i: acks[i].leaf_seq for i in acks})

    # without grouped_acks: an Ack frame each, as before
    envs = reports(S, police, 10)
    ids = [e.message_id for e in envs]
    police.submit_batch(envs)
    acks, nacks, kinds = police.collect(ids)
    check(kinds == ["ack"] * 10 and set(acks) == set(ids),
          "batch without grouped_acks: 10 ack frames (%s)" % kinds)
    ca_msgs.update({i: acks[i].leaf_seq for i in acks})


def submit_for(police, S, n, ca_msgs):
    envs = reports(S, police, n)
    ids = [e.message_id for e in envs]
    police.submit_batch(envs, grouped_acks=True)
    acks, nacks, kinds = police.collect(ids)
    check(set(acks) == set(ids), "%d more accepted for CIVIL_AFFAIRS" % n)
    ca_msgs.update({i: acks[i].leaf_seq for i in acks})
    return ids


def main(build):
    gw = cpxclient.Gateway(build, depts=("POLICE", "CIVIL_AFFAIRS"))
    with cpxclient.GatewayTest(gw, failures):
        gw.start()
        S = gw.S
        police = gw.client("POLICE")
        police.heartbeat()
        ca_msgs = {}          # every message for CIVIL_AFFAIRS: id -> accepted leaf

        grouped_acks(gw, police, ca_msgs)

        # A connection that never opts in: the 39 queued come one deliver frame each
        ca = Recipient(gw)
        ca.heartbeat()
        frames = ca.run(ca.has(list(ca_msgs)), 20)
        check(set(ca.got) == set(ca_msgs), "all %d queued delivered (%d)" % (len(ca_msgs), len(ca.got)))
        check(kinds_of(frames) == ["deliver"],
              "a connection that never set deliveries_per_frame gets only deliver frames (%s)"
              % kinds_of(frames))

        # Opted in, 120 queued while offline: deliveries frames of 2..50, each confirmed
        # by one delivery_acks
        ca.c.close()
        ids = submit_for(police, S, 120, ca_msgs)
        ca.c.reconnect()
        ca.per_frame = PER_FRAME
        ca.heartbeat()   # the new connection's first frame
        frames = ca.run(ca.has(ids), 20)
        sizes = [n for k, n in frames if k == "deliveries"]
        check(all(i in ca.got for i in ids), "the 120 delivered (%d)" % sum(i in ca.got for i in ids))
        check(sizes and max(sizes) > 1 and max(sizes) <= PER_FRAME,
              "deliveries frames of more than one, at most %d: %s" % (PER_FRAME, sizes))
        check(sum(n for _, n in frames) == 120 and all(len(ca.got[i]) == 1 for i in ids),
              "each of the 120 delivered once (%d Delivers in %d frames, %d of them deliver)"
              % (sum(n for _, n in frames), len(frames), sum(1 for k, _ in frames if k == "deliver")))
        again = ca.run(None, 1.5)   # several times retry.base_ms
        check(not again, "nothing redelivered after the delivery_acks frames (%s)" % again)

        # A new connection of the same department: deliver frames until its own
        # heartbeat opts in. Its first frame re-confirms the last delivery (ignored), so
        # the gateway knows the connection without a heartbeat from it.
        last = ca.got[ids[-1]][-1]
        ca.c.reconnect()
        ca.per_frame = 0
        ca.c.confirm_many([last])
        ca.last_hb = time.time()
        time.sleep(0.3)
        ids = submit_for(police, S, 10, ca_msgs)
        frames = ca.run(ca.has(ids), 10)
        check(all(i in ca.got for i in ids) and kinds_of(frames) == ["deliver"] and len(frames) == 10,
              "a new connection gets deliver frames until its heartbeat opts in (%s)" % frames)
        ca.per_frame = PER_FRAME
        ca.heartbeat()
        time.sleep(0.3)
        ids = submit_for(police, S, 10, ca_msgs)
        frames = ca.run(ca.has(ids), 10)
        check(all(i in ca.got for i in ids) and "deliveries" in kinds_of(frames),
              "after its own heartbeat it gets deliveries frames (%s)" % frames)

        # 1001 confirmations in one frame: refused whole, nothing confirmed
        ids = submit_for(police, S, 5, ca_msgs)
        ca.run(ca.has(ids), 10, confirm=False)
        real = [ca.got[i][0] for i in ids]
        fake = []
        for k in range(1001 - len(real)):
            d = S["F"].Deliver()
            d.delivery_id = 10**12 + k
            d.envelope.message_id = os.urandom(16)
            fake.append(d)
        n_before = len(ca.nacks)
        ca.c.confirm_many(real + fake)
        ca.run(lambda: len(ca.nacks) > n_before, 5, confirm=False)
        nk = ca.nacks[n_before] if len(ca.nacks) > n_before else None
        check(nk is not None and nk.code == S["F"].TOO_LARGE and not nk.retryable,
              "a delivery_acks frame of 1001 is refused TOO_LARGE (%s)" % (nk and nk.code))
        ca.run(lambda: all(len(ca.got[i]) > 1 for i in ids), 5)
        check(all(len(ca.got[i]) > 1 and ca.got[i][-1].attempt > 1 for i in ids),
              "its 5 real deliveries were not confirmed: redelivered (attempts %s)"
              % [ca.got[i][-1].attempt for i in ids])
        ca.run(None, 1.0)   # the redeliveries confirmed; anything else that comes
        ca.c.close()
        police.close()

        cpxclient.stop_and_verify(gw, check)
        leaves = acked_leaves(gw)
        per = [leaves.get(seq, 0) for seq in ca_msgs.values()]
        check(len(per) == 184 and all(n == 1 for n in per) and sum(leaves.values()) == 184,
              "one DELIVERY_ACKNOWLEDGED leaf per message (%d messages; counts %s; %d leaves)"
              % (len(per), sorted(set(per)), sum(leaves.values())))
    return cpxclient.verdict(failures)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
