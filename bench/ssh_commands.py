#!/usr/bin/env python3
"""Benchmark: the cost of one remote command through the tool's session, with and without the
TCP_NODELAY tuning (tasks/session.py:tune), against the local staging host.

Prints numbers; asserts nothing (timings on this shared machine are noisy: compare the ratio
measured in one run). Usage: .venv/bin/python bench/ssh_commands.py [N]
"""
from __future__ import annotations

import os
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fabric import Config  # noqa: E402

from config import load_settings  # noqa: E402
from tasks.session import Session, connect  # noqa: E402


class _Ctx:
    config = Config(overrides={"run": {"in_stream": False}})


def measure(nodelay: bool, n: int) -> list[float]:
    st = load_settings("staging")
    cxn = connect(_Ctx(), st.hosts[0], st)
    sock = cxn.transport.sock
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if nodelay else 0)
    s = Session(st, st.hosts[0], cxn)
    s.run("true")                                   # warm up the channel machinery
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        s.run("true")
        out.append((time.perf_counter() - t0) * 1000)
    cxn.close()
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    rows = []
    for nodelay in (False, True, False, True):      # interleaved, so drift hits both alike
        rows.append((nodelay, measure(nodelay, n)))
    for label, flag in (("Nagle on (paramiko default)", False), ("TCP_NODELAY (the tool)", True)):
        samples = [x for f, xs in rows if f == flag for x in xs]
        print(f"{label:30s} median {statistics.median(samples):6.1f} ms  p90 {sorted(samples)[int(len(samples) * .9)]:6.1f} ms  (n={len(samples)})")
    off = statistics.median([x for f, xs in rows if not f for x in xs])
    on = statistics.median([x for f, xs in rows if f for x in xs])
    print(f"ratio (Nagle / NODELAY): {off / on:.1f}x per remote command; a deploy runs about 80 of them")


if __name__ == "__main__":
    main()
