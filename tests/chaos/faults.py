"""Gateway faults and load: kill -9 under load, store full, clock jumps, steady load
(at the benchmarks' rate, through the C driver chaos_loadgen when built), one department
flooding."""
import json
import os
import random
import subprocess
import time

from chaoslib import FAKETIME_LIB, SRC, Gateway, Load, Row, finish

SENDERS = ("POLICE", "EDUCATION", "HEALTH")
RECEIVER = "CIVIL_AFFAIRS"   # the built-in fallback routes every report to the lead agency
DEPTS = SENDERS + (RECEIVER,)
PY_MAX_RATE = 1500           # what the Python Load can offer steadily (steady-load fallback)


def _offer(load, scale=1):
    """One step of the mixed load: singles and batches from every sender."""
    for d in load.senders:
        k = random.random()
        if k < 0.6:
            load.submit(d, n=1)
        elif k < 0.9:
            load.submit(d, n=5 * scale, batch=True)
        else:
            load.submit(d, n=20 * scale, batch=True)


def _kill_scenario(build, name, rounds, round_s, env=None, after=None):
    """Mixed load, kill -9 of the gateway at a random moment of each round, restart,
    reconnect (the load resends what was not answered); then everything must be
    acknowledged and delivered, after(row, load) check what more it will, and finish()
    the usual end checks."""
    row = Row(name, rounds)
    print("== %s (%d rounds)" % (row.name, rounds), flush=True)
    gw = Gateway(build, DEPTS, env=env)
    try:
        gw.start()
        load = Load(gw, SENDERS, (RECEIVER,))
        for _ in range(rounds):
            t_kill = time.time() + random.uniform(0.2, round_s)
            while time.time() < t_kill:
                _offer(load)
                load.pump(0.03)
            gw.kill9()
            load.close()
            gw.start()
            load.reconnect()
            load.pump(0.2)
        ok = load.drain(180)
        row.check(ok, "every message acknowledged and delivered after %d kills" % rounds)
        if after:
            after(row, load)
        finish(row, gw, load)
    except Exception as e:  # noqa: BLE001
        row.check(False, "exception %r; gateway log: %s" % (e, gw.logtext()[-800:]))
    finally:
        gw.cleanup()
    return row


def gateway_kill(build, rounds, round_s):
    return _kill_scenario(build, "gateway kill -9 under load", rounds, round_s)


def _resent_get_original_acks(row, load, before=None, timeout=180,
                               answered="every message resent is answered again"):
    """Every message is sent again and must be answered (the check `answered`) with the
    Ack it had before: that in before (message id -> Ack), by default load's Acks now."""
    before = dict(load.acks) if before is None else before
    load.forget_acks()
    load.reconnect()
    ok = load.drain(timeout)
    row.check(ok, answered)
    same = [m for m, a in before.items() if load.acks.get(m) != a]
    row.check(not same, "every resent message gets its original Ack (%d of %d differ)"
              % (len(same), len(before)))
    load.acks.update({m: a for m, a in before.items() if m not in load.acks})


def gateway_kill_fold(build, rounds, round_s):
    """kill -9 while message ids fold from the id log into the id index (a fold every 64
    ids, CPX_TEST_ID_FOLD_AT): after the kills every message is resent, and each must be
    answered with its original Ack, so no id was forgotten at any moment of a fold."""
    return _kill_scenario(build, "gateway kill -9 while ids fold", rounds, round_s,
                          env={"CPX_TEST_ID_FOLD_AT": "64"}, after=_resent_get_original_acks)


def store_full(build):
    row = Row("store full (map_size 4MiB)", 1)
    print("== " + row.name, flush=True)
    gw = Gateway(build, DEPTS, map_size="4MiB")
    try:
        gw.start()
        load = Load(gw, SENDERS, (RECEIVER,), confirm=False)
        t_end = time.time() + 60
        while time.time() < t_end and "STORE_FULL" not in load.retryable:
            _offer(load, scale=4)
            load.pump(0.05)
        full = load.retryable.get("STORE_FULL", 0)
        row.check(full > 0, "gateway refuses with STORE_FULL when the map is full (%d Nacks, %d acked)"
                  % (full, len(load.acks)))
        row.check(all(x > 0 for x in load.retry_after), "every retryable Nack carries retry_after_ms (%s)"
                  % sorted(set(load.retry_after))[:5])
        load.pump(2)
        row.check(gw.proc.poll() is None, "gateway still running while full")
        before = dict(load.acks)
        gw.kill9()
        load.close()
        gw.set_cfg("map_size: 4MiB", "map_size: 256MiB")
        gw.start()
        load.confirm = True
        # resend everything, acknowledged ones too: the original Acks must come back
        _resent_get_original_acks(
            row, load, before, 120,
            "after a larger map_size every message is acknowledged and delivered")
        finish(row, gw, load)
    except Exception as e:  # noqa: BLE001
        row.check(False, "exception %r; gateway log: %s" % (e, gw.logtext()[-800:]))
    finally:
        gw.cleanup()
    return row


def clock_jump(build, step_s):
    row = Row("gateway clock jumps +2h, -1h, +1d", 3)
    print("== " + row.name, flush=True)
    if not os.path.exists(FAKETIME_LIB):
        row.note("libfaketime not installed (apt-get install faketime): skipped")
        row.verify = "skipped"
        return row
    tsfile = os.path.join("/tmp", "cpx-chaos-faketime.%d" % os.getpid())
    with open(tsfile, "w") as f:
        f.write("+0\n")
    env = {"LD_PRELOAD": FAKETIME_LIB, "FAKETIME_TIMESTAMP_FILE": tsfile, "FAKETIME_NO_CACHE": "1",
           "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    jy = os.path.join(SRC, "deploy", "jiangyin")
    every = [x.strip() for x in open(os.path.join(jy, "departments.txt")) if x.strip() and x[0] != "#"]
    gw = Gateway(build, every, routes=os.path.join(jy, "routes.yaml"), env=env)
    try:
        gw.start()
        # the city's rules route to many departments: all of them listen and confirm
        load = Load(gw, SENDERS, every)
        size0 = gw.head_size()
        for jump in ("+2h", "-1h", "+1d", "+0"):
            t_end = time.time() + step_s
            while time.time() < t_end:
                _offer(load)
                load.pump(0.05)
            with open(tsfile, "w") as f:
                f.write(jump + "\n")
            load.pump(1.0)
            row.check(gw.proc.poll() is None, "gateway alive after the clock moved to %s" % jump)
        load.drain(60, need_delivery=False)
        sent = len(load.envs)
        growth = gw.head_size() - size0
        row.note("log grew by %d leaves for %d messages (escalations included); refused: %s"
                 % (growth, sent, load.nacks or "none"))
        row.check(growth <= 4 * sent + 200, "no escalation storm (log growth %d <= 4x messages + 200)" % growth)
        # messages refused because the gateway's clock disagreed are answered, not lost
        load.drain(60)
        finish(row, gw, load)
    except Exception as e:  # noqa: BLE001
        row.check(False, "exception %r; gateway log: %s" % (e, gw.logtext()[-800:]))
    finally:
        gw.cleanup()
        os.unlink(tsfile)
    return row


def steady_load(build, seconds, rate, drain_s=120):
    """A steady mix at `rate` msg/s for `seconds`: RSS bounded, no latency creep, every
    message acknowledged and delivered. Driven by tests/chaos/loadgen.c (chaos_loadgen,
    which keeps up with the gateway benchmark's rates) when it is built, else by the
    Python Load (about 1500 msg/s at most)."""
    exe = os.path.join(build, "tests", "chaos_loadgen")
    if os.access(exe, os.X_OK):
        return _steady_load_c(build, exe, seconds, rate, drain_s)
    return _steady_load_py(build, seconds, min(rate, PY_MAX_RATE))


def _mem_sample(gw):
    return gw.mem_kb("VmRSS"), gw.mem_kb("RssAnon"), gw.mem_kb("RssFile")


def _rss_checks(row, samples):
    """Gateway memory sampled each second while the load was offered: (VmRSS, RssAnon,
    RssFile) in KiB. The bound is on RssAnon, the gateway's own memory, where a leak or an
    unbounded queue would show. RssFile is reported, not bounded: it is the LMDB map's
    pages the process has touched, file-backed and reclaimable, and grows with the store
    (at 5000 msg/s the store grows by ~14 MiB/s, and that part of RSS by tens of MiB a
    minute while the heap stays flat)."""
    samples = [x for x in samples if x[0] > 0] or [(0, 0, 0)]
    n = max(1, len(samples) // 3)

    def peak(part, i):
        return max(x[i] for x in part)
    head, tail = samples[:n], samples[-n:]
    row.note("gateway RSS first third max %d KiB, last third max %d KiB (anonymous %d -> %d KiB, "
             "file-backed LMDB map %d -> %d KiB)" % (peak(head, 0), peak(tail, 0), peak(head, 1), peak(tail, 1),
                                                    peak(head, 2), peak(tail, 2)))
    row.check(peak(tail, 1) <= peak(head, 1) * 1.5 + 32 * 1024,
              "anonymous RSS bounded (last third <= 1.5x first third + 32 MiB)")


def _steady_load_c(build, exe, seconds, rate, drain_s):
    row = Row("steady load %d msg/s for %ds (C)" % (rate, seconds), 1)
    print("== " + row.name, flush=True)
    # room for every message of the run (8 KiB each, well above what one takes: see the
    # row's "store used" note): a full store is its own scenario (store-full); the map
    # file is sparse, and removed at the end
    gw = Gateway(build, DEPTS, map_size="%dMiB" % max(1024, seconds * rate * 8 // 1024))
    try:
        gw.start()
        cmd = [exe, "--endpoint", gw.endpoint, "--keys", gw.keys, "--senders", ",".join(SENDERS),
               "--receiver", RECEIVER, "--rate", str(rate), "--seconds", str(seconds),
               "--drain-seconds", str(drain_s), "--seed", str(random.randint(0, 2 ** 31))]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        rss = []
        t0 = time.time()
        while proc.poll() is None:
            if time.time() - t0 <= seconds:
                rss.append(_mem_sample(gw))
            time.sleep(1)
        out, err = proc.communicate()
        if not row.check(proc.returncode == 0, "chaos_loadgen ran (exit %d) %s" % (proc.returncode, err.strip()[-300:])):
            return row
        r = json.loads(out.strip().splitlines()[-1])
        row.sent, row.acked, row.delivered = r["sent"], r["acked"], r["delivered"]
        row.lost, row.dup = r["lost"], r["duplicates"]
        row.note("offered %d msg/s, achieved %.0f msg/s (%d batches of 10, %d singles; window %d, "
                 "most unanswered per sender %d, %d resends, %d redeliveries under the same delivery id)"
                 % (rate, r["achieved_rate"], r["batches"], r["singles"], r["window"], r["max_outstanding"],
                    r["resent"], r["redelivered"]))
        row.check(r["achieved_rate"] >= 0.95 * rate, "the offered rate was kept (achieved >= 95%% of %d)" % rate)
        row.check(r["drained"] and r["acked"] + r["nacked"] == r["sent"],
                  "every message acknowledged and delivered (drain %.1f s)" % r["drain_seconds"])
        row.check(r["lost"] == 0, "nothing lost (sent=%d acked=%d delivered=%d unanswered=%d acked undelivered=%d "
                  "refused=%s)" % (r["sent"], r["acked"], r["delivered"], r["unanswered"],
                                   r["acked_undelivered"], r["nacks"] or "{}"))
        row.check(r["duplicates"] == 0, "no message applied twice (%d)" % r["duplicates"])
        row.check(r["foreign"] == 0, "no delivery of a message nobody sent (%d)" % r["foreign"])
        _rss_checks(row, rss)
        af, al = r["ack_ms_first_third_p50"], r["ack_ms_last_third_p50"]
        if af is not None:
            row.note("ack latency median first third %.1f ms, last third %.1f ms, p99 %.1f ms"
                     % (af, al, r["ack_ms_p99"]))
            row.check(al <= 2 * af + 50, "no latency creep (last third <= 2x first third + 50 ms)")
        df, dl = r["delivery_ms_first_third_p50"], r["delivery_ms_last_third_p50"]
        if df is not None:
            row.note("delivery latency median first third %.1f ms, last third %.1f ms, p99 %.1f ms"
                     % (df, dl, r["delivery_ms_p99"]))
        row.note("store used %.0f MiB (%.1f KiB a message)" % (_store_kib(gw) / 1024.0,
                                                            _store_kib(gw) / max(1, r["sent"])))
        finish(row, gw)
    except Exception as e:  # noqa: BLE001
        row.check(False, "exception %r; gateway log: %s" % (e, gw.logtext()[-800:]))
    finally:
        gw.cleanup()
    return row


def _store_kib(gw):
    """Disk blocks the gateway's store holds (its map file is sparse)."""
    p = os.path.join(gw.data, "data.mdb")
    return os.stat(p).st_blocks // 2 if os.path.exists(p) else 0


def _steady_load_py(build, seconds, rate):
    row = Row("steady load %d msg/s for %ds (Python)" % (rate, seconds), 1)
    print("== " + row.name, flush=True)
    # room for every message of the run: a full store is its own scenario (store-full)
    gw = Gateway(build, DEPTS, map_size="8GiB")
    try:
        gw.start()
        load = Load(gw, SENDERS, (RECEIVER,))
        rss = []
        t0 = time.time()
        sent_target = 0
        last_sample = 0
        while time.time() - t0 < seconds:
            now = time.time()
            sent_target = int((now - t0) * rate)
            while len(load.envs) < sent_target:
                d = random.choice(SENDERS)
                if random.random() < 0.3:
                    load.submit(d, n=10, batch=True)
                else:
                    load.submit(d, n=1)
            if now - last_sample > 1:
                rss.append(_mem_sample(gw))
                last_sample = now
            load.pump(0.02)
        achieved = len(load.envs) / (time.time() - t0)
        ok = load.drain(120)
        row.check(ok, "every message acknowledged and delivered")
        row.note("offered %.0f msg/s (chaos_loadgen not built: Python driver, at most %d msg/s)"
                 % (achieved, PY_MAX_RATE))
        _rss_checks(row, rss)
        c = load.creep([x for x in load.ack_lat if x[0] - t0 <= seconds])
        if c:
            row.note("ack latency median first third %.1f ms, last third %.1f ms" % (c[0] * 1e3, c[1] * 1e3))
            row.check(c[1] <= 2 * c[0] + 0.05, "no latency creep (last third <= 2x first third + 50 ms)")
        d = load.creep(load.del_lat)
        if d:
            row.note("delivery latency median first third %.1f ms, last third %.1f ms" % (d[0] * 1e3, d[1] * 1e3))
        finish(row, gw, load)
    except Exception as e:  # noqa: BLE001
        row.check(False, "exception %r; gateway log: %s" % (e, gw.logtext()[-800:]))
    finally:
        gw.cleanup()
    return row


def flood(build, seconds, base_rate):
    row = Row("EDUCATION floods 10x; IMMEDIATE of others", 1)
    print("== " + row.name, flush=True)
    gw = Gateway(build, DEPTS)
    try:
        gw.start()
        load = Load(gw, SENDERS, (RECEIVER,))
        C = gw.S["C"]
        t0 = time.time()
        urgent = set()
        n_edu = 0
        n_other = 0
        while time.time() - t0 < seconds:
            el = time.time() - t0
            while n_edu < el * base_rate * 10:
                load.submit("EDUCATION", n=50, batch=True, priority=C.ROUTINE)
                n_edu += 50
            while n_other < el * base_rate:
                for d in ("POLICE", "HEALTH"):
                    urgent.update(load.submit(d, n=1, priority=C.IMMEDIATE))
                n_other += 1
            load.pump(0.02)
        ok = load.drain(180)
        row.check(ok, "every message acknowledged and delivered")
        lat = sorted(s for t, s, p in load.del_lat if p == C.IMMEDIATE)
        flo = sorted(s for t, s, p in load.del_lat if p != C.IMMEDIATE)
        if lat:
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
            row.note("IMMEDIATE from POLICE/HEALTH: %d, delivery p50 %.0f ms p99 %.0f ms max %.0f ms; "
                     "flood ROUTINE: %d, p50 %.0f ms" % (len(lat), lat[len(lat) // 2] * 1e3, p99 * 1e3, lat[-1] * 1e3,
                                                        len(flo), (flo[len(flo) // 2] * 1e3) if flo else 0))
            row.check(lat[-1] < 300, "every IMMEDIATE delivered within its 5 min deadline")
            row.check(p99 < 5.0, "IMMEDIATE p99 under 5 s while the flood runs")
        finish(row, gw, load)
    except Exception as e:  # noqa: BLE001
        row.check(False, "exception %r; gateway log: %s" % (e, gw.logtext()[-800:]))
    finally:
        gw.cleanup()
    return row
