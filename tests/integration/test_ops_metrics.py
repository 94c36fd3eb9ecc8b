#!/usr/bin/env python3
"""cpx-gateway operations endpoint (gateway/http.c, metrics.c) against a real gateway on
127.0.0.1: /healthz, /metrics figures against what the test sent, dashboard token
checks, every dashboard view audited (DASHBOARD_VIEWED leaves), dashboard JSON figures
(cases by category and town, overdue referrals), the verifier's result, and the
config refusals for the http keys."""
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpxclient  # noqa: E402

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
TOKEN = "office-token-" + os.urandom(8).hex()
TOKEN2 = "viewer-token-" + os.urandom(8).hex()


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


HTTP_CFG = ("http:\n  listen: 127.0.0.1:0\n  verify_interval_s: 1\n  users:\n"
            "    - name: office1\n      token_sha256: %s\n"
            "    - name: viewer2\n      token_sha256: %s\n" % (sha(TOKEN), sha(TOKEN2)))


def get(base, path, token=None, header=True):
    req = urllib.request.Request(base + path)
    if token and header:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def metric(text, name, **labels):
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r'^([a-z_]+)(?:\{([^}]*)\})? (\S+)$', line)
        if not m or m.group(1) != name:
            continue
        got = ",".join(sorted((m.group(2) or "").split(","))) if m.group(2) else ""
        if got == want:
            return float(m.group(3))
    return None


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok -", what)


def referral(S, sender, to, case_id, due_ms, created_ms):
    C, B, E = S["C"], S["B"], S["E"]
    env = E.Envelope()
    env.message_id = os.urandom(16)
    env.sender = sender
    env.case_id = case_id
    env.created_ms = created_ms
    env.priority = C.URGENT
    env.sensitivity = C.NORMAL
    r = env.referral
    r.to = to
    r.task = C.EDUCATION_SUPPORT if to == "EDUCATION" else C.JUDICIAL_PROTECTION
    r.reason = "school enrolment"
    r.due_by_ms = due_ms
    r.priority = C.URGENT
    return env


def config_refusals(gw):
    bad = [("http:\n  listen: nowhere\n", "http.listen"),
           ("http:\n  listen: 127.0.0.1:0\n  users:\n    - name: a\n      token_sha256: abc\n",
            "http.users.token_sha256"),
           ("http:\n  listen: 127.0.0.1:0\n  colour: red\n", "unknown key 'colour'")]
    for text, want in bad:
        p = os.path.join(gw.dir, "bad.yaml")
        with open(gw.config) as f:
            base = f.read()
        with open(p, "w") as f:
            f.write(base + text)
        r = subprocess.run([gw.bin, "--config", p, "--check"], capture_output=True, text=True)
        check(r.returncode == 2 and want in r.stderr, "config refused: %s (%s)" % (want, r.stderr.strip()))


def main():
    gw = cpxclient.Gateway(BUILD, depts=("POLICE", "CIVIL_AFFAIRS", "EDUCATION"), extra_cfg=HTTP_CFG)
    try:
        config_refusals(gw)
        gw.start()
        S = gw.S
        addr = open(os.path.join(gw.dir, "data", "gateway.http")).read().strip()
        check(addr.startswith("127.0.0.1:") and not addr.endswith(":0"), "bound to loopback " + addr)
        base = "http://" + addr
        st, body, _ = get(base, "/healthz")
        deadline = time.time() + 5
        while st != 200 and time.time() < deadline:
            time.sleep(0.1)
            st, body, _ = get(base, "/healthz")
        check(st == 200 and body.strip() == "ready", "healthz ready")

        police, civil, edu = gw.client("POLICE"), gw.client("CIVIL_AFFAIRS"), gw.client("EDUCATION")
        for c in (civil, edu):
            c.heartbeat()
        towns = ["TOWN_HUASHI", "TOWN_HUASHI", "TOWN_ZHOUZHUANG"]
        cases = []
        for i, town in enumerate(towns):
            env = cpxclient.report(S, "POLICE", harm=(i != 2), town=town, seq=i)
            cpxclient.sign(env, police.key, police.pub)
            f = police.reply(env)
            check(f is not None and f.WhichOneof("frame") == "ack", "report %d acknowledged" % i)
            cases.append(f.ack.case_id)
        # one refusal: a report claiming another sender
        bad = cpxclient.report(S, "EDUCATION", town="TOWN_HUASHI")
        cpxclient.sign(bad, police.key, police.pub)
        f = police.reply(bad)
        check(f is not None and f.WhichOneof("frame") == "nack", "mismatched sender refused")
        # two referrals to EDUCATION: one overdue by an hour, one due tomorrow
        now = int(time.time() * 1000)
        r1 = referral(S, "CIVIL_AFFAIRS", "EDUCATION", cases[0], now - 3600_000, now - 7200_000)
        r2 = referral(S, "CIVIL_AFFAIRS", "EDUCATION", cases[1], now + 86400_000, now)
        for r in (r1, r2):
            cpxclient.sign(r, civil.key, civil.pub)
            f = civil.reply(r)
            check(f is not None and f.WhichOneof("frame") == "ack", "referral acknowledged %s" % f)
        # every department takes what it is sent
        taken = {"CIVIL_AFFAIRS": 0, "EDUCATION": 0}
        deadline = time.time() + 10
        while time.time() < deadline and (taken["CIVIL_AFFAIRS"] < 3 or taken["EDUCATION"] < 2):
            for name, c in (("CIVIL_AFFAIRS", civil), ("EDUCATION", edu)):
                fr = c.recv(100)
                if fr is not None and fr.WhichOneof("frame") == "deliver":
                    c.confirm(fr.deliver)
                    taken[name] += 1
                elif fr is None:
                    c.heartbeat()
        check(taken["CIVIL_AFFAIRS"] >= 3 and taken["EDUCATION"] >= 2, "deliveries taken %s" % taken)
        time.sleep(0.6)

        st, m, hdr = get(base, "/metrics")
        check(st == 200 and hdr.get("Content-Type", "").startswith("text/plain"), "metrics served")
        check(metric(m, "cpx_messages_accepted_total", department="POLICE", kind="discovery_report") == 3,
              "accepted POLICE discovery_report = 3")
        check(metric(m, "cpx_messages_accepted_total", department="CIVIL_AFFAIRS", kind="referral") == 2,
              "accepted CIVIL_AFFAIRS referral = 2")
        check(metric(m, "cpx_messages_refused_total", department="POLICE", kind="discovery_report") == 1,
              "refused POLICE discovery_report = 1")
        check(metric(m, "cpx_messages_delivered_total", department="EDUCATION") == 2,
              "delivered (confirmed) to EDUCATION = 2")
        check(metric(m, "cpx_ack_latency_seconds_count") == 5, "ack latency observed for 5 accepted")
        check(metric(m, "cpx_ack_latency_seconds_bucket", le="+Inf") == 5, "histogram +Inf bucket = 5")
        check(metric(m, "cpx_adapters_connected") >= 2, "adapters connected >= 2")
        check(metric(m, "cpx_referrals_overdue", department="EDUCATION") == 1, "overdue referrals EDUCATION = 1")
        check(metric(m, "cpx_queue_depth", department="EDUCATION") == 0, "EDUCATION queue drained")
        check(metric(m, "cpx_dead_letters") == 0, "no dead letters")
        check(metric(m, "cpx_sealed_access_requests_total") == 0 and
              'sealed' not in "".join(l for l in m.splitlines() if "department=" in l),
              "sealed access: unlabelled totals only")
        tree = metric(m, "cpx_audit_tree_size")
        head = json.loads(gw.ctl("audit", "head", "--data", os.path.join(gw.dir, "data"), "--json").stdout)
        check(tree >= head["tree_size"] > 0, "tree size %d, signed %d" % (tree, head["tree_size"]))
        check(metric(m, "cpx_audit_head_age_seconds") < 30, "head is fresh")

        # dashboard: tokens
        st, _, _ = get(base, "/")
        check(st == 401, "dashboard without a token: 401")
        st, _, _ = get(base, "/api/dashboard", token="wrong")
        check(st == 401, "dashboard with a wrong token: 401")
        st, _, _ = get(base, "/metrics", token=None)
        size0 = json.loads(gw.ctl("audit", "head", "--data", os.path.join(gw.dir, "data"), "--json").stdout)["tree_size"]
        st, page, hdr = get(base, "/?token=" + TOKEN, header=False)
        check(st == 200 and "__CPX_DATA__" not in page and 'id="cpx-data"' in page, "dashboard page served")
        check("HttpOnly" in hdr.get("Set-Cookie", ""), "token from the URL becomes an HttpOnly cookie")
        check("default-src 'none'" in hdr.get("Content-Security-Policy", ""), "strict CSP")
        st, js, _ = get(base, "/api/dashboard", token=TOKEN2)
        check(st == 200, "dashboard JSON for a second user")
        d = json.loads(js)
        check(d["totals"]["cases"] == 3 and d["totals"]["reports"] == 3, "3 cases, 3 reports")
        check(d["cases_by_category"]["HARMED"] == 2 and d["cases_by_category"]["GUARDIANSHIP_MISSING"] == 1,
              "cases by category HARMED 2, GUARDIANSHIP_MISSING 1")
        check(d["cases_by_town"] == {"TOWN_HUASHI": 2, "TOWN_ZHOUZHUANG": 1}, "cases by town")
        od = d["overdue"]
        check(len(od) == 1 and od[0]["department"] == "EDUCATION" and od[0]["count"] == 1 and
              od[0]["cases"] == [cases[0]] and 3590 <= od[0]["max_late_s"] <= 3700,
              "overdue: EDUCATION 1, case %s, ~1 h late" % cases[0])
        check(d["totals"]["referrals"] == 2 and d["totals"]["referrals_open"] == 2, "2 referrals open")
        check(any(w["code"] == "REFERRAL_OVERDUE" for w in d["warnings"]), "early warning raised")
        check(sum(p["reports"] for p in d["hours"]) == 3 and sum(p["referrals"] for p in d["hours"]) == 2,
              "hourly chart counts")
        check("Test Minor" not in js and "Teacher Wang" not in js and "320281" not in js,
              "no personal data in the dashboard figures")
        # the views are in the log, with the user, before the page was sent
        tail = gw.ctl("audit", "tail", "-n", "40", "--data", os.path.join(gw.dir, "data"), "--json").stdout
        views = [l for l in tail.splitlines() if "DASHBOARD_VIEWED" in l]
        check(len(views) == 2 and "office1" in views[0] and "viewer2" in views[1],
              "two DASHBOARD_VIEWED leaves naming the users")
        size1 = json.loads(gw.ctl("audit", "head", "--data", os.path.join(gw.dir, "data"), "--json").stdout)["tree_size"]
        check(size1 >= size0 + 2, "views committed under a signed head (%d -> %d)" % (size0, size1))

        # the verifier thread has replayed the log
        deadline = time.time() + 15
        while time.time() < deadline:
            st, js, _ = get(base, "/api/dashboard", token=TOKEN)
            v = json.loads(js)["verify"]
            if v["state"] == "passed" and v["tree_size"] > 0:
                break
            time.sleep(0.5)
        check(v["state"] == "passed", "periodic verification passed (%s)" % v["what"])
        st, m, _ = get(base, "/metrics")
        check(metric(m, "cpx_audit_verify_ok") == 1, "verify gauge = 1")
        check(metric(m, "cpx_audit_leaves_total", event="DASHBOARD_VIEWED") >= 3, "views counted")

        for c in (police, civil, edu):
            c.close()
        cpxclient.stop_and_verify(gw, check)  # with the HTTP threads; view leaves in the log
        print("all ops metrics checks passed")
    except Exception:
        print(gw.logtext(), file=sys.stderr)
        raise
    finally:
        gw.cleanup()


if __name__ == "__main__":
    main()
