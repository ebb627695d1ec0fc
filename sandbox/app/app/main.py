"""ai-doc-qa backend: a small stdlib HTTP server.

GET /health            {"status":"ok","version":...} or 503 when postgres/redis fail
GET /api/v1/documents  the rows of the documents table as a JSON list
"""
import json
import logging
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from app import documents, health

HOST = os.environ.get("BIND_HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "8000"))


def read_version():
    # The image carries its own VERSION: the running code, not the checkout, decides what we report.
    for path in ("/app/VERSION", os.path.join(os.path.dirname(__file__), "..", "VERSION")):
        try:
            with open(path) as fh:
                return fh.read().strip()
        except OSError:
            continue
    return "unknown"


VERSION = read_version()
log = logging.getLogger("ai-doc-qa")


class Handler(BaseHTTPRequestHandler):
    server_version = "ai-doc-qa/" + VERSION

    def _send(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        try:
            if self.path == "/health":
                ok, checks = health.check()
                if ok:
                    self._send(200, {"status": "ok", "version": VERSION})
                else:
                    log.error("health check failed: %s", checks)
                    self._send(503, {"status": "unavailable", "version": VERSION, "checks": checks})
            elif self.path.split("?")[0] == "/api/v1/documents":
                self._send(200, documents.list_documents())
            elif self.path == "/":
                self._send(200, {"service": "ai-doc-qa", "version": VERSION})
            else:
                self._send(404, {"error": "not found"})
        except Exception as exc:
            log.exception("request %s failed", self.path)
            self._send(500, {"status": "error", "version": VERSION, "error": str(exc).splitlines()[0]})

    def log_message(self, fmt, *args):
        log.info("%s %s", self.address_string(), fmt % args)


def main():
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "info").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stdout,
    )
    server = ThreadingHTTPServer((HOST, PORT), Handler)
    server.daemon_threads = True

    # PID 1 in a container ignores SIGTERM unless it installs a handler; without one
    # every `docker stop` / `compose up -d` recreate would wait the full 10 s timeout.
    def stop(signum, frame):
        log.info("received signal %d, shutting down", signum)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    log.info("ai-doc-qa backend %s listening on %s:%d", VERSION, HOST, PORT)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
