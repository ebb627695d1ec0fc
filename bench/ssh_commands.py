#!/usr/bin/env python3
"""Benchmark: the cost of one remote command (``true``) on the staging host, side by side:

- the tool's session (tasks/session.py: paramiko with TCP_NODELAY, the remote ``timeout`` wrapper,
  the SSH I/O thread), on one open connection;
- OpenSSH with ControlMaster: ``ssh -o ControlPath=... host true`` on an open master connection,
  including the start of the ``ssh`` client itself, as a bash script pays it (bench/runbook.sh);
- with ``--nagle``: the tool's session with Nagle left on (paramiko's default), to show what
  TCP_NODELAY saves.

Blocks of each are interleaved (tool, openssh, tool, openssh, ...), so drift on this shared machine
hits both alike. Prints numbers; asserts nothing. Used by bench/run.py (``compare``).
Usage: .venv/bin/python bench/ssh_commands.py [N per block] [--nagle]   (under with-sandbox)
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from fabric import Config  # noqa: E402

from bench import report  # noqa: E402
from config import load_settings  # noqa: E402
from tasks.session import Session  # noqa: E402
from tasks.ssh import connect  # noqa: E402


class _Ctx:
    config = Config(overrides={"run": {"in_stream": False}})


def tool_session_ms(n: int, nodelay: bool = True) -> list[float]:
    """Milliseconds per ``Session.run("true")`` on one connection, after one warm-up command."""
    st = load_settings("staging")
    cxn = connect(_Ctx(), st.hosts[0], st)
    cxn.transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if nodelay else 0)
    s = Session(st, st.hosts[0], cxn)
    try:
        s.run("true")                                   # warm up the channel machinery
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            s.run("true")
            out.append((time.perf_counter() - t0) * 1000)
        return out
    finally:
        cxn.close()


def openssh_master_ms(n: int) -> list[float]:
    """Milliseconds per ``ssh host true`` over an OpenSSH ControlMaster connection (the ssh
    client's own start included), after one warm-up command."""
    st = load_settings("staging")
    host = st.hosts[0]
    with tempfile.TemporaryDirectory() as tmp:
        ssh = ["ssh", "-F", st.ssh_config, "-o", f"ControlPath={tmp}/master"] if st.ssh_config else \
              ["ssh", "-o", f"ControlPath={tmp}/master"]
        subprocess.run([*ssh, "-o", "ControlMaster=yes", "-o", "ControlPersist=60", "-f", "-N", host],
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        try:
            subprocess.run([*ssh, "-n", host, "true"], check=True)
            out = []
            for _ in range(n):
                t0 = time.perf_counter()
                subprocess.run([*ssh, "-n", host, "true"], check=True)
                out.append((time.perf_counter() - t0) * 1000)
            return out
        finally:
            subprocess.run([*ssh, "-O", "exit", host], stderr=subprocess.DEVNULL, check=False)


def compare(n: int = 30, blocks: int = 2, nagle: bool = False) -> dict[str, list[float]]:
    """Interleaved blocks of n commands each; the samples (ms) per method."""
    samples: dict[str, list[float]] = {"tool": [], "openssh": []}
    if nagle:
        samples["nagle"] = []
    for _ in range(blocks):
        samples["tool"] += tool_session_ms(n)
        samples["openssh"] += openssh_master_ms(n)
        if nagle:
            samples["nagle"] += tool_session_ms(n, nodelay=False)
    return samples


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 30
    samples = compare(n, blocks=2, nagle="--nagle" in sys.argv)
    labels = {"tool": "tool session (TCP_NODELAY)", "openssh": "OpenSSH ControlMaster",
              "nagle": "tool session, Nagle on"}
    for key, xs in samples.items():
        print(f"{labels[key]:30s} median {report.median(xs):6.1f} ms  p90 {report.percentile(xs, 90):6.1f} ms  (n={len(xs)})")
    print(f"ratio tool / OpenSSH ControlMaster: {report.ratio(report.median(samples['tool']), report.median(samples['openssh'])):.2f}x per remote command")
    if "nagle" in samples:
        print(f"ratio Nagle / TCP_NODELAY: {report.ratio(report.median(samples['nagle']), report.median(samples['tool'])):.1f}x")


if __name__ == "__main__":
    main()
