"""A steady load through the proxy (20 requests per second by default), counting the requests that
did not get a 2xx: what a user would have seen during a deploy. Used by the blue/green staging
tests and by bench/bluegreen.py."""
from __future__ import annotations

import threading
import time

import requests


class Prober:
    def __init__(self, url: str, rate: float = 20.0, timeout: float = 5.0):
        self.url, self.interval, self.timeout = url, 1.0 / rate, timeout
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="prober", daemon=True)

    def _loop(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            t = time.monotonic()
            try:
                r = session.get(self.url, timeout=self.timeout)
                if r.ok:
                    self.ok += 1
                else:
                    self.failures.append(f"HTTP {r.status_code}")
            except requests.RequestException as exc:
                self.failures.append(type(exc).__name__)
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t)))

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def total(self) -> int:
        return self.ok + len(self.failures)
