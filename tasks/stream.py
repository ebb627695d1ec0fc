"""Remote output shown line by line while the command runs (``fab logs -f``, ``fab exec``).

Each complete line goes through :func:`tasks.ui.lines` (control characters stripped, redacted)
before it is printed. A secret is recognised within one line; a multi-line secret (a PEM key) is
redacted line by line through the redactor's per-line forms.

Like :class:`tasks.session.SSHExecutor`, the command runs in a worker thread under coreutils
``timeout`` with the run's tag as ``$0``: on Ctrl-C the main thread stops it on the host with
:meth:`Session.kill_running` (without a pty, invoke would only send ``\\x03`` to its stdin and
wait on, and ``docker compose logs -f`` never ends by itself).
"""
from __future__ import annotations

import threading

from commands.shell import on_host
from tasks import ui
from tasks.executor import LOST_CONNECTION
from tasks.session import Session
from tasks.worker import Job

STOP_WAIT = 10          # seconds to wait for the stopped command's channel to close after Ctrl-C


class LineSink:
    """A file-like ``out_stream`` for invoke: prints each complete line, made safe."""

    def __init__(self, emit=None):
        self._buf = ""
        self._lock = threading.Lock()           # stdout and stderr are written by two threads
        # The remote output is what the operator asked for (fab logs, fab exec): shown under -q too.
        self.emit = emit or (lambda line: [ui.say(x, keep=True) for x in ui.lines(line)])

    def write(self, text: str) -> None:
        with self._lock:
            self._buf += text
            *done, self._buf = self._buf.split("\n")
        for line in done:
            self.emit(line)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        rest, self._buf = self._buf, ""
        if rest.strip():
            self.emit(rest)


def stream(s: Session, command: str, timeout: float = 0, emit=None) -> int:
    """Run ``command`` on the host, printing its output as it comes; its exit code. ``timeout`` 0:
    none (``fab logs -f`` runs until Ctrl-C). Ctrl-C stops it on the host, then re-raises."""
    wrapped = on_host(command, s.run_tag, timeout)
    sink = LineSink(emit)
    s.ensure_connected(command)
    job = Job(lambda: s._exec_streaming(wrapped, sink))
    try:
        r = job.wait()
    except KeyboardInterrupt:
        s.kill_running()
        job.done.wait(STOP_WAIT)
        sink.close()
        raise
    except LOST_CONNECTION as exc:
        raise s._lost(command, f"{exc.__class__.__name__}: {exc}") from None
    sink.close()
    return -1 if r.exited is None else r.exited
