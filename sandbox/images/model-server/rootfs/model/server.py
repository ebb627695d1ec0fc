"""Stand-in model server on 127.0.0.1:8001.

At start it "loads the model": it allocates (and touches) about 1 KiB of memory per token of
CONTEXT_SIZE, like a KV cache. Under the compose mem_limit (64m) a large CONTEXT_SIZE gets the
process OOM-killed by the kernel, so Docker shows OOMKilled=true and, with restart:
unless-stopped, a real restart loop.

MODEL_HANG=1 makes GET /health hang (the "model server timeout" failure of the runbook).
"""
import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BYTES_PER_TOKEN = 1024


def log(msg):
    print("%s model_server %s" % (time.strftime("%Y-%m-%dT%H:%M:%S"), msg), flush=True)


context_size = int(os.environ.get("CONTEXT_SIZE") or 2048)
hang = os.environ.get("MODEL_HANG", "0") not in ("", "0", "false", "no")

log("starting with CONTEXT_SIZE=%d (allocating %.1f MiB KV cache)"
    % (context_size, context_size * BYTES_PER_TOKEN / 1048576.0))
# b"\x01" * n writes every byte, so the pages are really resident (a zero-filled calloc'd
# buffer would not count against the memory limit until touched).
KV_CACHE = b"\x01" * (context_size * BYTES_PER_TOKEN)
log("model loaded")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            if hang:
                time.sleep(3600)  # never answers within any sane timeout
            body = json.dumps({"status": "ok", "context_size": context_size}).encode()
            self.send_response(200)
        else:
            body = json.dumps({"error": "not found"}).encode()
            self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass  # health checks every 2 s would flood the log


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 8001), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # PID 1: no default SIGTERM action
    log("listening on 127.0.0.1:8001%s" % (" (MODEL_HANG=1: /health will hang)" if hang else ""))
    server.serve_forever()


if __name__ == "__main__":
    main()
