"""cpx-adapter (http connector) against a real cpx-gateway: curl posts a hospital report
(abandoned infant, Chinese text) to the webhook -> 202 with the message id once spooled,
acknowledged by the gateway; bad JSON and wrong token refused with reasons; the same
Idempotency-Key gives the same message id; a delivery to HEALTH is POSTed to a real
local HTTP server that answers 500 three times, then 200 -> retried, then confirmed."""
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpxclient  # noqa: E402

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


def wait_for(cond, timeout):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.1)
    return False


class Callback(http.server.BaseHTTPRequestHandler):
    fail_first = 3
    bodies = []
    attempts = 0
    auth = []

    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(n)
        Callback.attempts += 1
        Callback.auth.append(self.headers.get("Authorization", ""))
        code = 500 if Callback.attempts <= Callback.fail_first else 200
        if code == 200:
            Callback.bodies.append(body)
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def curl(url, token, body, extra=()):
    r = subprocess.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "-X", "POST", url,
                        "-H", "Authorization: Bearer " + token, "-H", "Content-Type: application/json",
                        "--data-binary", body] + list(extra), capture_output=True, text=True, timeout=30)
    out, _, code = r.stdout.rpartition("\n")
    return int(code or 0), out


def status(adapter_bin, cfg):
    r = subprocess.run([adapter_bin, "--config", cfg, "--status"], capture_output=True, text=True)
    return dict(l.split("=", 1) for l in r.stdout.split() if "=" in l)


def main(build):
    gw = cpxclient.Gateway(build, depts=("HEALTH", "POLICE", "CIVIL_AFFAIRS"))
    adapter_bin = os.path.join(build, "adapters", "cpx-adapter")
    d = gw.dir
    srv = http.server.HTTPServer(("127.0.0.1", 0), Callback)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = free_port()
    token = "t0k-" + os.urandom(12).hex()
    with open(os.path.join(d, "token"), "w") as f:
        f.write(token + "\n")
    acfg = os.path.join(d, "health.yaml")
    alog = open(os.path.join(d, "adapter.log"), "ab")
    proc = None
    try:
        gw.start()
        with open(acfg, "w") as f:
            f.write("department: HEALTH\ngateway: %s\nkeys: keys\ngateway_key: keys/GATEWAY.curve.pub\n"
                    "spool: health-spool\nconnector: http\nheartbeat_ms: 300\n"
                    "http:\n  listen: 127.0.0.1:%d\n  token_file: token\n  callback: http://127.0.0.1:%d/cpx\n"
                    "  retry_max_ms: 400\n" % (gw.endpoint, port, srv.server_address[1]))
        proc = subprocess.Popen([adapter_bin, "--config", acfg], stdout=alog, stderr=alog)
        url = "http://127.0.0.1:%d/v1/messages" % port
        check(wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, 10), "webhook listening")

        now = int(time.time() * 1000)
        report = {
            "priority": "IMMEDIATE",
            "discovery_report": {
                "reporter": {"role": "DOCTOR", "duty_to_report": True, "name": "李医生",
                             "organisation": "江阴市人民医院"},
                "channel": "HOSPITAL",
                "minor": {"id_unknown_reason": "NOT_REGISTERED", "name": "无名女婴", "sex": "FEMALE",
                          "birth_date": "2026-11-20", "town": "TOWN_CHENGJIANG"},
                "categories": [{"category": "HARMED", "harm_types": ["ABANDONMENT"]}],
                "immediate_danger": True,
                "circumstances": ["ABANDONED_INFANT"],
                "observation": {"what": "产科病房发现被遗弃女婴，家属已离院", "observed_ms": now - 60000,
                                "place": "江阴市人民医院产科"},
                "local_ref": "HIS-2026-000123",
            },
        }
        body = json.dumps(report, ensure_ascii=False)
        code, out = curl(url, token, body, ["-H", "Idempotency-Key: HIS-2026-000123"])
        check(code == 202 and len(json.loads(out).get("message_id", "")) == 32, "valid report: 202 %s" % out)
        mid = json.loads(out).get("message_id") if code == 202 else None
        check(wait_for(lambda: status(adapter_bin, acfg).get("acked") == "1", 20),
              "gateway acknowledged it (%s)" % status(adapter_bin, acfg))
        code2, out2 = curl(url, token, body, ["-H", "Idempotency-Key: HIS-2026-000123"])
        check(code2 == 202 and json.loads(out2).get("message_id") == mid, "same Idempotency-Key, same message id")

        code, out = curl(url, token, '{"discovery_report":{"channel":"TELEPATHY"}}')
        errs = json.loads(out).get("errors", []) if out.startswith("{") else []
        check(code == 400 and any(e["path"] == "discovery_report.channel" for e in errs),
              "unknown enum refused with its path: %d %s" % (code, out))
        code, out = curl(url, token, '{"sender":"POLICE","discovery_report":{}}')
        check(code == 400 and "set_by_adapter" in out, "sender in the body refused: %d %s" % (code, out))
        code, out = curl(url, token, "not json")
        check(code == 400 and "json_syntax" in out, "broken JSON refused: %d %s" % (code, out))
        code, out = curl(url, "wrong-token-wrong-token", body)
        check(code == 401, "wrong bearer token refused: %d" % code)

        # a delivery to HEALTH: the callback fails three times, then takes it
        police = gw.client("POLICE")
        env = cpxclient.report(gw.S, "POLICE", recipients=["HEALTH"])
        env.discovery_report.observation.what = "儿童头部受伤，送医检查"
        cpxclient.sign(env, police.key, police.pub)
        rep = police.reply(env)
        check(rep is not None and rep.WhichOneof("frame") == "ack", "police report acknowledged")
        check(wait_for(lambda: len(Callback.bodies) == 1, 30), "delivery POSTed after %d attempts" % Callback.attempts)
        check(Callback.attempts == 4, "retried after three 500s (%d attempts)" % Callback.attempts)
        check(all(a == "Bearer " + token for a in Callback.auth), "callback carries the bearer token")
        if Callback.bodies:
            got = json.loads(Callback.bodies[0].decode("utf-8"))
            check(got["message_id"] == env.message_id.hex() and
                  got["body"]["observation"]["what"] == "儿童头部受伤，送医检查", "Chinese text intact in the callback")
        check(wait_for(lambda: int(status(adapter_bin, acfg).get("confirmed", 0)) >= 1, 10), "delivery confirmed")
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        check(proc.returncode == 0, "adapter stops cleanly")
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        srv.shutdown()
        if failures:
            print("---- adapter log (tail)")
            print(open(os.path.join(d, "adapter.log"), errors="replace").read()[-3000:])
            print("---- gateway log (tail)")
            print(gw.logtext())
        alog.close()
        gw.cleanup()
    print("%d passed, %d failed" % (len(passed), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
