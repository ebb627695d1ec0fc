"""HTTP from the operator's machine (requests), with a TOTAL deadline.

``requests``' ``timeout`` bounds each socket read, not the request: a server that drips one byte
every half second held a 2 s check for 11 s. And name resolution has no timeout at all. So the
request runs in a worker thread that reads the body in small pieces against a monotonic deadline,
and the caller waits for it no longer than that deadline. One helper for every requests call: the
monitoring check, the operator smoke check and the webhook POST.

Redirects are answers, not followed: curl on the host (the smoke check) does not follow them, so
the same URL is the same check from both sides; and requests turns a POST into a GET on 301/302
(the webhook looked delivered) and re-sends the body wherever a 307/308 points.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

BODY_LIMIT = 64 * 1024          # enough for an error page or a JSON health answer


@dataclass(frozen=True)
class HttpAnswer:
    url: str
    status: int                  # 0 when no answer arrived
    seconds: float
    body: str = ""
    error: str = ""              # why there is no answer (timed out, refused, ...)

    @property
    def ok(self) -> bool:
        return not self.error and 200 <= self.status < 300


def request(method: str, url: str, *, deadline: float, data: bytes | None = None,
            headers: dict | None = None) -> HttpAnswer:
    """One request that ends within ``deadline`` seconds, answered or not."""
    import requests  # here, not at the top: ~50 ms of every `fab` start, and most tasks send no HTTP
    start = time.monotonic()
    end = start + deadline
    box: dict = {}
    done = threading.Event()

    def work():
        try:
            box["answer"] = _fetch(method, url, end, data, headers)
        except Exception as exc:                 # requests' errors, or a malformed answer: a failed check
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=work, name="http", daemon=True).start()
    finished = done.wait(deadline)
    seconds = time.monotonic() - start
    if not finished or isinstance(box.get("error"), requests.Timeout) or box.get("answer") is _LATE:
        return HttpAnswer(url, 0, seconds, error=f"timed out: no complete answer within {deadline:g} s")
    if "error" in box:
        # The class name only: requests' messages repeat the URL, query string (and token) included.
        return HttpAnswer(url, 0, seconds, error=f"request failed: {box['error'].__class__.__name__}")
    status, body = box["answer"]
    return HttpAnswer(url, status, seconds, body)


_LATE = object()        # the deadline passed while the body was still arriving


def _fetch(method, url, end, data, headers):
    import requests  # loaded by request() already: see there
    left = max(0.05, end - time.monotonic())
    with requests.request(method, url, data=data, headers=headers, timeout=(left, left), stream=True,
                          allow_redirects=False) as r:
        chunks, size = [], 0
        # read1 returns as soon as some bytes arrive, so the deadline is checked between drips;
        # read(n) would wait for all n bytes, one slow byte at a time.
        while size < BODY_LIMIT:
            if time.monotonic() > end:
                return _LATE
            chunk = r.raw.read1(4096, decode_content=True)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return r.status_code, _text(b"".join(chunks)[:BODY_LIMIT], r.encoding)


def _text(body: bytes, charset: str | None) -> str:
    """A charset name Python does not know is the server's mistake, not a failed answer."""
    try:
        return body.decode(charset or "utf-8", "replace")
    except LookupError:
        return body.decode("utf-8", "replace")
