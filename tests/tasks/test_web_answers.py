"""HTTP answers from the operator's machine (tasks/web.py) that broke the checks when tried: a
redirect (followed, and a POST turned into a GET), and a charset name Python does not know (a 200
counted as a failure). The server is local and the redirect points back at it: nothing leaves
127.0.0.0/8. (A gzip bomb held: the body is read and inflated in 4 KiB pieces up to BODY_LIMIT.)"""
import http.server
import threading

import pytest

from tasks import web


class Answers(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.command, self.path, self.headers.get("Accept-Encoding")))
        port = self.server.server_port
        if self.path in ("/moved", "/moved-307"):
            self._send(302 if self.path == "/moved" else 307, b"", Location=f"http://127.0.0.1:{port}/elsewhere")
        elif self.path == "/charset":
            self._send(200, b"ok \xff", **{"Content-Type": "text/plain; charset=no-such-charset"})
        else:
            self._send(200, b"ok")

    def _send(self, status, body, **headers):
        self.send_response(status)
        for k, v in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    srv.daemon_threads = True
    srv.seen = []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def url(server, path):
    return f"http://127.0.0.1:{server.server_port}{path}"


@pytest.mark.parametrize("method, path", [("GET", "/moved"), ("POST", "/moved"), ("POST", "/moved-307")])
def test_a_redirect_is_an_answer_not_followed(server, method, path):
    """requests followed redirects: the monitoring check passed on wherever it was sent (a login
    page), a 302 turned the webhook POST into a GET that "succeeded", and a 307 re-sent the deploy
    notice to the new address. curl on the host (the smoke check) does not follow them either."""
    a = web.request(method, url(server, path), deadline=5, data=b"{}" if method == "POST" else None)
    assert not a.ok and a.status in (302, 307) and a.error == ""
    assert [(m, p) for m, p, _ in server.seen] == [(method, path)]


def test_an_unknown_charset_does_not_turn_a_200_into_a_failure(server):
    a = web.request("GET", url(server, "/charset"), deadline=5)
    assert a.ok and a.status == 200 and a.body.startswith("ok ")
