"""Sealed-record probing: against a real cpx-gateway with the sealing policy, a record
about subject X is sealed (a juvenile-offence report marked SEALED, and a COURT
SealOrder taking X's earlier ordinary case out of view), then every way a non-judicial
department (EDUCATION, WOMENS_FED, a town) could learn that X has a record is tried and
compared with subject Y, who has none. One row per channel; each row passes only if
the channel shows nothing: the same answer as for Y, and no ID number, name or case id
of X anywhere in what the department (or the office's dashboard, or /metrics) sees.
Helpers (requests, decisions, statistics) are tests/integration/test_sealed_access.py's."""
import json
import os
import random
import re
import time
import urllib.request

from chaoslib import Gateway, Row, cpxclient
import test_sealed_access as tsa  # noqa: E402  (tests/integration is on sys.path via chaoslib)

NAME = "SealedName Lisi"
NAME_ZH = "李封存"
PROBERS = ("EDUCATION", "WOMENS_FED", "TOWN_HUASHI")
DEPTS = ("POLICE", "COURT", "PROCURATORATE", "JUSTICE", "CIVIL_AFFAIRS") + PROBERS
TOKEN = "office-" + "5f1e" * 8
POLICY = ("vault_key: keys/vault.key\npseudonym_key: keys/pseudonym.key\n"
          "seal_orders_from: [COURT, PROCURATORATE]\n"
          "juvenile_offence_from: [POLICE, PROCURATORATE, COURT]\n"
          "recipients: [POLICE, PROCURATORATE, COURT, JUSTICE]\n"
          "alert: [COURT]\ngrant_lifetime_ms: 600000\ngrant_reads: 3\n"
          "access:\n  - { department: COURT, basis: CASE_HANDLING }\n"
          "  - { department: POLICE, basis: STATUTORY_QUERY, approval: sealing_authority, reads: 1 }\n")


class World:
    """The gateway, the clients, X (sealed) and Y (no record), and X's identifiers."""

    def __init__(self, build):
        import hashlib
        h = hashlib.sha256(TOKEN.encode()).hexdigest()
        self.gw = Gateway(build, DEPTS, extra_cfg="sealed: sealed.yaml\ncases: casepolicy.yaml\n"
                          "http:\n  listen: 127.0.0.1:0\n  verify_interval_s: 0\n  users:\n"
                          "    - name: office-probe\n      token_sha256: %s\n" % h)
        self.X = cpxclient.id_number(region="320281", born=(2010, 7, 8), seq=417)
        self.Y = cpxclient.id_number(region="320281", born=(2010, 9, 10), seq=218)
        self.case_c = ""
        self.sealed_case = ""
        self.clients = {}

    def setup(self):
        gw = self.gw
        gw.ctl("sealed", "keygen", "--dir", gw.keys)
        with open(os.path.join(gw.dir, "casepolicy.yaml"), "w") as f:
            f.write("version: 1\nkeys:\n  index: keys/CASES.index.key\n  records: keys/CASES.records.key\n")
        with open(os.path.join(gw.dir, "sealed.yaml"), "w") as f:
            f.write(POLICY)
        gw.start()
        self.data = gw.data
        for d in DEPTS:
            c = gw.client(d)
            c.heartbeat()
            self.clients[d] = c
        self.http = "http://" + open(os.path.join(self.data, "gateway.http")).read().strip()

    def c(self, dept):
        return self.clients[dept]

    def needles(self):
        """What must never appear in what a non-judicial department sees."""
        return [x for x in (self.X, NAME, NAME_ZH, self.case_c, self.sealed_case) if x]

    def report(self, subject, sealed, recipients, name=NAME_ZH):
        S = self.gw.S
        env = cpxclient.report(S, "POLICE", recipients=recipients, harm=False)
        env.discovery_report.minor.id_number = subject
        env.discovery_report.minor.name = name
        if sealed:
            env.sensitivity = S["C"].SEALED
            env.discovery_report.circumstances.append(S["B"].JUVENILE_OFFENCE)
            env.discovery_report.observation.what = "theft suspect " + NAME
        police = self.c("POLICE")
        r = police.reply(tsa.signed(police, env))
        return r.ack.case_id if r is not None and r.WhichOneof("frame") == "ack" else None

    def seal(self):
        """X's ordinary case (WOMENS_FED a recipient), then the sealed report, then the order."""
        S = self.gw.S
        self.case_c = self.report(self.X, False, ["WOMENS_FED", "EDUCATION"]) or ""
        self.sealed_case = self.report(self.X, True, ["COURT"]) or ""
        so = tsa.envelope(S, "COURT")
        o = so.seal_order
        o.subject_id_number = self.X
        if self.case_c:
            o.case_ids.append(self.case_c)
        o.order_number = "(2026)苏0281刑封7号"
        o.legal_basis = "Criminal Procedure Law art. 286"
        o.ordered_on.year, o.ordered_on.month, o.ordered_on.day = 2026, 2, 3
        court = self.c("COURT")
        r = court.reply(tsa.signed(court, so))
        return bool(self.case_c) and r is not None and r.WhichOneof("frame") == "ack"

    def ask(self, dept, subject, **kw):
        """A SealedAccessRequest; (decision, its serialized size, seconds to the answer)."""
        c = self.c(dept)
        q = tsa.signed(c, tsa.access_request(self.gw.S, dept, subject=subject, **kw))
        t0 = time.perf_counter()
        r = c.reply(q)
        if r is None or r.WhichOneof("frame") != "ack":
            return None, r, 0.0
        d, f = tsa.decision_for(c, q.message_id)
        dt = time.perf_counter() - t0
        return d, len(f.deliver.envelope.SerializeToString()) if f is not None else -1, dt

    def get(self, path, token=True):
        req = urllib.request.Request(self.http + path)
        if token:
            req.add_header("Authorization", "Bearer " + TOKEN)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")

    def drain(self):
        for d in PROBERS:
            tsa.drain(self.c(d), 300)


def _leaks(world, text):
    return [n for n in world.needles() if n in text]


def _row(name, tries):
    row = Row("sealed probe: " + name, tries)
    print("== " + row.name, flush=True)
    return row


def _fields(decision):
    """The decision's fields, but for the request it answers."""
    return sorted((f.name, v) for f, v in decision.ListFields() if f.name != "request_id")


def probe_direct(w):
    """SealedAccessRequest for X and Y by each prober, and a read with a made-up grant."""
    B = w.gw.S["B"]
    row = _row("direct SealedAccessRequest/Read", len(PROBERS) * 2 + len(PROBERS))
    for d in PROBERS:
        dx, sx, _ = w.ask(d, w.X)
        dy, sy, _ = w.ask(d, w.Y)
        row.sent += 2
        row.acked += (dx is not None) + (dy is not None)
        row.check(dx is not None and dx.outcome == B.NO_RECORD and not dx.grant_id and not dx.records,
                  "%s asking about sealed X: NO_RECORD, no grant, no records" % d)
        row.check(dy is not None and dy.outcome == B.NO_RECORD, "%s asking about Y (no record): NO_RECORD" % d)
        if dx is not None and dy is not None:
            same = _fields(dx) == _fields(dy)
            row.check(same and sx == sy, "%s: the two decisions match field for field and in size (%d, %d bytes)"
                      % (d, sx, sy))
        c = w.c(d)
        rd = tsa.signed(c, tsa.access_read(w.gw.S, d, os.urandom(16), w.X))
        c.reply(rd)
        dr, _ = tsa.decision_for(c, rd.message_id)
        row.sent += 1
        row.acked += dr is not None
        row.check(dr is not None and dr.outcome == B.NO_RECORD and not dr.records,
                  "%s reading X with a made-up grant: NO_RECORD" % d)
    return row


def probe_cases(w, baseline):
    """cpxctl case show/list/stats --as each prober (and the office's own view)."""
    row = _row("case show/list/stats --as DEPT", len(PROBERS) * 3)
    never = "JY-2026-999999"
    for d in PROBERS + ("CIVIL_AFFAIRS",):
        shown = w.gw.ctl("case", "show", w.case_c, "--data", w.data, "--as", d, check=False)
        ghost = w.gw.ctl("case", "show", never, "--data", w.data, "--as", d, check=False)
        row.sent += 1
        a = (shown.returncode, (shown.stdout + shown.stderr).replace(w.case_c, "<CASE>"))
        b = (ghost.returncode, (ghost.stdout + ghost.stderr).replace(never, "<CASE>"))
        row.check(a == b and a[0] != 0 and not _leaks(w, a[1]),
                  "case show %s --as %s: the same answer as for a case that never existed (rc=%d: %s)"
                  % (w.case_c, d, shown.returncode, a[1].strip()[:60]))
        for what in ("list", "stats"):
            out = w.gw.ctl("case", what, "--data", w.data, "--as", d, "--json", check=False)
            row.sent += 1
            row.check(out.returncode == 0 and not _leaks(w, out.stdout + out.stderr),
                      "case %s --as %s: nothing of X" % (what, d))
            if what == "stats":
                row.check(_stable(out.stdout) == baseline.get(d),
                          "case stats --as %s: the same counts as before X had any record" % d)
    return row


def _stable(stats_json):
    """case stats without its timing figures (medians move with the clock)."""
    try:
        j = json.loads(stats_json)
    except ValueError:
        return stats_json
    if isinstance(j, dict):
        for k in list(j):
            if "median" in k or k.endswith("_ms") or "time" in k:
                j.pop(k)
    return json.dumps(j, sort_keys=True)


def probe_audit(w):
    """The audit log as a non-auditor sees it: tail and the timelines of X's cases."""
    row = _row("audit tail/timeline (no auditor key)", 3)
    outs = [w.gw.ctl("audit", "tail", "-n", "100000", "--data", w.data, "--json", check=False)]
    for case in (w.case_c, w.sealed_case):
        if case:
            outs.append(w.gw.ctl("audit", "timeline", case, "--data", w.data, "--json", check=False))
    for o in outs:
        row.sent += 1
        text = o.stdout + o.stderr
        ids = [n for n in (w.X, NAME, NAME_ZH) if n in text]
        row.check(not ids, "audit %s: no ID number or name of X (%d bytes)" % (" ".join(o.args[1:3]), len(text)))
    # what one question adds to the plain log must look the same for X as for Y
    shapes = {}
    for subj, label in ((w.X, "X"), (w.Y, "Y")):
        n0 = _tail_len(w)
        w.ask("EDUCATION", subj)
        time.sleep(0.3)
        new = w.gw.ctl("audit", "tail", "-n", str(max(1, _tail_len(w) - n0)), "--data", w.data, check=False).stdout
        row.sent += 1
        shapes[label] = sorted(_shape(x) for x in new.splitlines() if x.strip())
    row.check(shapes["X"] == shapes["Y"], "the leaves a question adds have the same shape for X and Y: %s"
              % (shapes["X"] if shapes["X"] == shapes["Y"] else shapes))
    acc = w.gw.ctl("sealed", "access-log", w.X, "--data", w.data, check=False)
    row.sent += 1
    row.check(acc.returncode != 0 and not _leaks(w, acc.stdout), "sealed access-log without the auditor key refused")
    return row


def _tail_len(w):
    r = w.gw.ctl("audit", "head", "--data", w.data, check=False).stdout
    m = re.search(r"(?:tree_)?size[=: ]+(\d+)", r)
    return int(m.group(1)) if m else 0


def _shape(line):
    """An audit line without times, sequence numbers, ids and pseudonyms."""
    line = re.sub(r"\d{4}-\d\d-\d\d[T ][0-9:.]+Z?", "T", line)
    line = re.sub(r"[0-9a-fA-F]{8,}|[A-Za-z0-9_-]{20,}", "H", line)
    return re.sub(r"\d+", "N", line)


def probe_dashboard(w, before, after_seal):
    """The office's dashboard: no identifier of X; the sealed report and the order change
    no count; questions about X move it as questions about Y do."""
    row = _row("dashboard (/, /api/dashboard)", 2 + 4 * len(PROBERS))
    st, page = w.get("/api/dashboard")
    st2, html = w.get("/?lang=en")
    row.sent += 2
    row.acked += (st == 200) + (st2 == 200)
    row.check(st == 200 and st2 == 200, "dashboard answers the office (%d, %d)" % (st, st2))
    row.check(not _leaks(w, page) and not _leaks(w, html), "no ID number, name or case id of X on the dashboard")
    row.check(after_seal == before, "counts unchanged by X's sealed report and the seal order "
              "(the same as before X had any record): %s" % _diff(before, after_seal))
    deltas, leaks = _question_deltas(w, "/api/dashboard", _counts, True)
    row.sent += 4 * len(PROBERS)
    row.check(deltas["X"] == deltas["Y"] and not leaks, "questions about X move it as questions about Y: %s"
              % (_diff(deltas["X"], deltas["Y"]) if deltas["X"] != deltas["Y"] else deltas["X"] or "not at all"))
    return row


def _counts(page):
    """The dashboard's figures that count messages (not views, clocks or series)."""
    try:
        j = json.loads(page)
    except ValueError:
        return {}
    out = {}

    def walk(p, v):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(p + "." + k if p else k, x)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            if not re.search(r"view|time|_ms|age|now|verify|generated|uptime|head|tree|leaves|online", p):
                out[p] = v
    walk("", j)
    return out


def _diff(a, b):
    return {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)} or "none"


def _metric_lines(text):
    """Series -> value, without histograms, ages and timestamps (they move with time)."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        k, _, v = line.rpartition(" ")
        if re.search(r"latency|age_seconds|timestamp|_bucket|_sum|_count|tree_size|online|connected", k):
            continue
        out[k] = v
    return out


def _settled(w, path, parse, token=False):
    """The page once two reads in a row agree (in-flight deliveries and alerts done)."""
    last = None
    for _ in range(20):
        _, text = w.get(path, token=token)
        cur = parse(text)
        if cur == last:
            return text, cur
        last = cur
        time.sleep(0.4)
    return text, cur


def _delta(a, b):
    return {k: float(b.get(k, 0)) - float(a.get(k, 0)) for k in set(a) | set(b) if b.get(k) != a.get(k)}


def _add(acc, d):
    for k, v in d.items():
        acc[k] = acc.get(k, 0) + v


def _question_deltas(w, path, parse, token, rounds=2):
    """How the page moves for a round of questions about X, and about Y (alternating)."""
    deltas = {"X": {}, "Y": {}}
    leaks = []
    for _ in range(rounds):
        for subj, label in ((w.X, "X"), (w.Y, "Y")):
            _, a = _settled(w, path, parse, token)
            for d in PROBERS:
                w.ask(d, subj)
            text, b = _settled(w, path, parse, token)
            leaks += _leaks(w, text)
            _add(deltas[label], _delta(a, b))
    return deltas, leaks


def probe_metrics(w):
    """/metrics moves the same way for questions about X as for questions about Y."""
    row = _row("/metrics", 4 * len(PROBERS))
    deltas, leaks = _question_deltas(w, "/metrics", _metric_lines, False)
    row.sent = row.rounds
    row.check(not leaks, "/metrics: no identifier of X (%s)" % leaks)
    row.check(deltas["X"] == deltas["Y"], "every series moved the same for X as for Y: %s"
              % ({k: (deltas["X"].get(k), deltas["Y"].get(k)) for k in set(deltas["X"]) | set(deltas["Y"])
                  if deltas["X"].get(k) != deltas["Y"].get(k)} or "identical"))
    return row


def probe_errors(w):
    """Refusals (Nack codes and texts) are the same for X as for Y."""
    S, B = w.gw.S, w.gw.S["B"]
    row = _row("error messages and Nacks", 0)

    def answer(dept, env):
        c = w.c(dept)
        r = c.reply(tsa.signed(c, env))
        row.sent += 1
        if r is None:
            return ("none",)
        row.acked += 1
        if r.WhichOneof("frame") == "nack":
            n = r.nack
            errs = tuple((e.path, e.rule, e.message.replace(w.X, "<ID>").replace(w.Y, "<ID>")) for e in n.errors)
            return ("nack", n.code, errs, n.retryable, n.retry_after_ms, n.leaf_seq > 0)
        d, _ = tsa.decision_for(c, env.message_id)
        return ("ack", d.outcome if d is not None else None)

    cases = []
    for d in PROBERS:
        for subj in (w.X, w.Y):
            variants = {}
            q = tsa.access_request(S, d, subject=subj, case_number="")  # CASE_HANDLING needs a case number
            variants["no case number"] = answer(d, q)
            q = tsa.access_request(S, d, subject=subj, basis=B.STATUTORY_QUERY)
            variants["statutory query"] = answer(d, q)
            q = tsa.access_request(S, d, subject=subj)
            q.sealed_access_request.officer_id = ""
            variants["no officer"] = answer(d, q)
            so = tsa.envelope(S, d)
            so.seal_order.subject_id_number = subj
            so.seal_order.order_number = "(2026)x"
            so.seal_order.legal_basis = "none"
            so.seal_order.ordered_on.year, so.seal_order.ordered_on.month, so.seal_order.ordered_on.day = 2026, 1, 1
            variants["seal order from a non-authority"] = answer(d, so)
            rd = tsa.access_read(S, d, b"\x01" * 16, subj)
            variants["read with a forged grant"] = answer(d, rd)
            cases.append((d, subj, variants))
    row.rounds = row.sent
    for d in PROBERS:
        vx = next(v for dd, s, v in cases if dd == d and s == w.X)
        vy = next(v for dd, s, v in cases if dd == d and s == w.Y)
        for k in vx:
            row.check(vx[k] == vy[k] and not _leaks(w, repr(vx[k])),
                      "%s, %s: the same answer for X and Y %s" % (d, k, vx[k]))
    return row


def probe_size_timing(w, tries):
    """Many interleaved questions about X and Y: sizes identical, times indistinguishable
    (tsa.timing_indistinguishable measures again when the first sample looks significant)."""
    B = w.gw.S["B"]
    row = _row("response size and timing (%d tries)" % tries, tries)
    sizes = {w.X: set(), w.Y: set()}
    bad = [0]

    def measure():
        w.drain()
        tx, ty = [], []
        order = [w.X, w.Y] * (tries // 2)
        random.Random(11 + row.sent).shuffle(order)
        for i, subj in enumerate(order):
            d = PROBERS[i % len(PROBERS)]
            dec, size, dt = w.ask(d, subj)
            row.sent += 1
            if dec is None or dec.outcome != B.NO_RECORD:
                bad[0] += 1
                continue
            row.acked += 1
            sizes[subj].add(size)
            (tx if subj == w.X else ty).append(dt)
        return (tx, ty) if len(tx) > 5 and len(ty) > 5 else None

    ok, text = tsa.timing_indistinguishable(measure)
    row.rounds = row.sent
    row.check(bad[0] == 0, "every answer NO_RECORD (%d not)" % bad[0])
    row.check(sizes[w.X] == sizes[w.Y], "answer sizes: X %s, Y %s bytes (varints of ids and times vary alike)"
              % (sorted(sizes[w.X]), sorted(sizes[w.Y])))
    row.note("timing: " + text)
    row.check(ok, "no significant timing difference (%s)" % text)
    return row


def probes(build, tries=120):
    w = World(build)
    rows = []
    try:
        w.setup()
        # the world before X has any record: an ordinary case about another child, so
        # the views below have something to show (a probe that shows nothing because
        # the view is empty would prove nothing)
        other = cpxclient.id_number(region="320281", born=(2011, 1, 2), seq=33)
        w.report(other, False, ["WOMENS_FED", "EDUCATION", "TOWN_HUASHI"], name="王五")
        time.sleep(0.5)
        baseline = {d: _stable(w.gw.ctl("case", "stats", "--data", w.data, "--as", d, "--json").stdout)
                    for d in PROBERS + ("CIVIL_AFFAIRS",)}
        listed = w.gw.ctl("case", "list", "--data", w.data, "--as", "EDUCATION", "--json").stdout
        _, before = _settled(w, "/api/dashboard", _counts, True)
        setup = Row("sealed probe: setup (seal X)", 1)
        setup.check(listed.strip() not in ("", "[]"), "case views show the other child's case to EDUCATION")
        setup.check(w.seal(), "X's case %s sealed by order; sealed report accepted (case %s)"
                    % (w.case_c, w.sealed_case or "-"))
        w.drain()
        _, after_seal = _settled(w, "/api/dashboard", _counts, True)
        rows.append(setup)
        if setup.failures:
            return rows
        rows.append(probe_direct(w))
        rows.append(probe_cases(w, baseline))
        rows.append(probe_audit(w))
        rows.append(probe_errors(w))
        rows.append(probe_metrics(w))
        rows.append(probe_dashboard(w, before, after_seal))
        rows.append(probe_size_timing(w, tries))
        for c in w.clients.values():
            c.close()
        ok, line = w.gw.verify()
        for r in rows:
            r.verify = "pass" if ok else "FAIL"
        rows[-1].check(ok, "cpxctl audit verify: %s" % line[0][:200])
    except Exception as e:  # noqa: BLE001
        row = Row("sealed probe: exception", 0)
        row.check(False, "exception %r; gateway log: %s" % (e, w.gw.logtext()[-800:]))
        rows.append(row)
    finally:
        w.gw.cleanup()
    return rows
