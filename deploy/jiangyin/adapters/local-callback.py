#!/usr/bin/python3
"""A stand-in for the local systems behind the http adapters, for deploy/quickstart.sh:
listens on 127.0.0.1 at each PORT, checks the bearer token and writes every delivery
POSTed to it as OUTDIR/MESSAGEID.json, answering 200 (which confirms it).

  local-callback.py PORT:TOKEN_FILE:OUTDIR [PORT:TOKEN_FILE:OUTDIR ...]"""
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def handler_for(token, outdir):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            if self.headers.get("Authorization") != "Bearer " + token:
                self.send_response(401)
                self.end_headers()
                return
            n = int(self.headers.get("Content-Length", 0))
            if n > (1 << 20):
                self.send_response(413)
                self.end_headers()
                return
            body = self.rfile.read(n)
            try:
                mid = json.loads(body)["message_id"]
            except (ValueError, KeyError):
                self.send_response(400)
                self.end_headers()
                return
            tmp = os.path.join(outdir, "." + mid + ".tmp")
            with open(tmp, "wb") as f:
                f.write(body + b"\n")
            os.rename(tmp, os.path.join(outdir, mid + ".json"))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    return Handler


def main():
    servers = []
    for spec in sys.argv[1:]:
        port, token_file, outdir = spec.split(":", 2)
        token = open(token_file).read().strip()
        os.makedirs(outdir, exist_ok=True)
        s = ThreadingHTTPServer(("127.0.0.1", int(port)), handler_for(token, outdir))
        servers.append(s)
        threading.Thread(target=s.serve_forever, daemon=True).start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
