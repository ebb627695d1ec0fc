#!/usr/bin/python3
"""Monitoring/webhook sink for the ai-doc-qa sandbox (stdlib only).

GET  /dashboard  200, a small HTML page ("ai-doc-qa monitoring") standing in for the runbook's
                 monitoring dashboard
POST /hook       200; the raw request body is appended as one line to the webhooks file
GET  /hooks      the webhooks file (JSON lines; empty when nothing was posted)
DELETE /hooks    truncate the webhooks file (tests use it to start clean)
GET  /health     200 "ok"
"""
import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DASHBOARD = b"""<!doctype html>
<html><head><title>ai-doc-qa monitoring</title></head>
<body><h1>ai-doc-qa monitoring</h1>
<p>Sandbox stand-in for the monitoring dashboard. All panels green.</p></body></html>
"""

LOCK = threading.Lock()


def one_line(body):
    """The body as a single line: JSON lines must not be split by a pretty-printed payload."""
    text = body.decode("utf-8", errors="replace").rstrip("\r\n")
    if "\n" in text or "\r" in text:
        try:
            text = json.dumps(json.loads(text), separators=(",", ":"))
        except ValueError:
            text = text.replace("\r", "\\r").replace("\n", "\\n")
    return text + "\n"


def make_handler(hooks_file):
    class Handler(BaseHTTPRequestHandler):
        server_version = "ai-doc-qa-sink/1"

        def _send(self, status, body, ctype="text/plain; charset=utf-8"):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path = self.path.split("?")[0]
            if path == "/dashboard":
                self._send(200, DASHBOARD, "text/html; charset=utf-8")
            elif path == "/hooks":
                with LOCK:
                    try:
                        with open(hooks_file, "rb") as fh:
                            data = fh.read()
                    except FileNotFoundError:
                        data = b""
                self._send(200, data, "application/x-ndjson")
            elif path == "/health":
                self._send(200, b"ok\n")
            else:
                self._send(404, b"not found\n")

        def do_POST(self):
            if self.path.split("?")[0] != "/hook":
                self._send(404, b"not found\n")
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with LOCK:
                with open(hooks_file, "a", encoding="utf-8") as fh:
                    fh.write(one_line(body))
            self._send(200, b'{"ok": true}\n', "application/json")

        def do_DELETE(self):
            if self.path.split("?")[0] != "/hooks":
                self._send(404, b"not found\n")
                return
            with LOCK:
                open(hooks_file, "w").close()
            self._send(200, b'{"ok": true}\n', "application/json")

        def log_message(self, fmt, *args):
            sys.stderr.write("%s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), fmt % args))

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--hooks-file", required=True)
    args = parser.parse_args()

    os.makedirs(os.path.dirname(os.path.abspath(args.hooks_file)), exist_ok=True)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(args.hooks_file))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.stderr.write("sink listening on http://%s:%d\n" % (args.host, args.port))
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
