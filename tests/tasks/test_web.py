"""Issue 7 #15: requests' timeout bounds each read, not the request. A local endpoint that drips one
byte every 0.5 s never trips a per-read timeout; every requests call of the tool must still end at
its total deadline, with a failed check that says it timed out."""
import dataclasses
import http.server
import threading
import time

import pytest

from tasks import notify as notify_mod
from tasks import web
from tasks.checklist import check_monitoring
from tasks.verify import operator_check

DRIP_BYTES = 12              # 6 s of dripping: far beyond every deadline used below


class Drip(http.server.BaseHTTPRequestHandler):
    def _drip(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", str(DRIP_BYTES))
        self.end_headers()
        for _ in range(DRIP_BYTES):
            if self.server.stopping.is_set():
                return
            try:
                self.wfile.write(b"x")
                self.wfile.flush()
            except OSError:          # the client gave up: that is the point
                return
            time.sleep(0.5)

    do_GET = do_POST = _drip

    def log_message(self, *args):
        pass


@pytest.fixture
def drip_url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    server.daemon_threads = True
    server.stopping = threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/dashboard"
    server.stopping.set()
    server.shutdown()
    server.server_close()


def test_slow_drip_endpoint_fails_the_operator_smoke_check_at_its_total_deadline(drip_url):
    check = operator_check(drip_url, 1)
    assert not check.ok
    assert check.error == "timed out: no complete answer within 1 s"
    assert check.seconds < 5            # generous: the drip alone lasts 6 s


def test_slow_drip_monitoring_url_fails_the_checklist_item_at_smoke_timeout(settings, make_session, drip_url):
    s, _ = make_session(settings=dataclasses.replace(settings, monitoring_url=drip_url, smoke_timeout=1))
    item = check_monitoring(s)
    assert not item.ok
    assert item.detail == f"{drip_url} unreachable: timed out: no complete answer within 1 s"


def test_slow_drip_webhook_post_ends_at_its_total_deadline(settings, make_session, drip_url, monkeypatch):
    monkeypatch.setattr(notify_mod, "NOTIFY_TIMEOUT", 1, raising=False)
    s, _ = make_session(settings=dataclasses.replace(settings, webhook_url=drip_url))
    ok, detail = notify_mod.notify(s, "deploy_starting")
    assert not ok
    assert detail == "webhook POST failed: timed out: no complete answer within 1 s"


def test_a_fast_answer_is_read_whole_and_a_refused_one_is_named_without_the_url():
    class Fast(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'{"version": "v2"}'
            self.send_response(503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Fast)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        a = web.request("GET", f"http://127.0.0.1:{server.server_port}/health", deadline=5)
    finally:
        server.shutdown()
        server.server_close()
    assert (a.status, a.body, a.error, a.ok) == (503, '{"version": "v2"}', "", False)
    refused = web.request("GET", "http://127.0.0.1:1/x?token=sentinel", deadline=5)
    assert refused.error == "request failed: ConnectionError" and "sentinel" not in refused.error
