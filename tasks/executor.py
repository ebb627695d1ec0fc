"""How a session's commands run: the :class:`Executor` seam and :class:`SSHExecutor`, which runs
them on the host over SSH (the remote ``timeout`` wrapper, the I/O thread, the Ctrl-C bookkeeping,
fabric's results and exceptions turned into a :class:`Result`, ``CommandFailed`` or a lost
connection). The plan's recording executor, which connects nowhere, is in tasks/plan.py.

A timeout on a command without a pty leaves the remote process running (a fabric fact, see
../shared/research/fabric-conventions.md): every command is wrapped in coreutils ``timeout`` on
the host, and the local timeout is only a backstop.

The session (tasks/session.py) is passed in as ``s`` and not imported: the session imports this
module for its default executor, and an import back would make a cycle.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Protocol

import paramiko
from invoke.exceptions import CommandTimedOut, ThreadException

from commands.secrets import Redactor
from commands.shell import on_host, whole_seconds
from config import Settings
from tasks import ui, web
from tasks.errors import CommandFailed
from tasks.ssh import connect
from tasks.worker import Job


@dataclass
class Result:
    command: str
    exited: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exited == 0


TRANSPORT_DYING = 1.0     # seconds a command without an exit status waits for a dying transport (0.2 s fell short under load)
LOST_CONNECTION = (paramiko.SSHException, EOFError, OSError, ThreadException)
# paramiko's words when the host opens no channel for a command: the command never started.
CHANNEL_NOT_OPENED = ("Timeout opening channel.", "Unable to open channel.")


def never_started(exc: BaseException) -> bool:
    return isinstance(exc, paramiko.ChannelException) or str(exc) in CHANNEL_NOT_OPENED


class Executor(Protocol):
    """The seam between the flow and the host: :class:`Session` decides what runs (dry run, echo,
    exit codes), the executor how. :class:`SSHExecutor` runs it on the host; ``fab plan`` runs the
    same flow with a recording executor that connects nowhere (tasks/plan.py)."""
    background: bool     # background work (lock heartbeat thread, downtime probe) runs beside the flow

    def run(self, s, command: str, *, timeout: float, mutating: bool, interruptible: bool,
            keep_output: bool = False) -> Result: ...
    def request(self, s, method: str, url: str, **kw) -> web.HttpAnswer: ...
    def open_session(self, s, settings: Settings, host: str): ...


class SSHExecutor:
    """Runs the session's commands on the host over SSH: the only caller of ``Connection.run``."""

    background = True       # the lock's heartbeat and the downtime probe run in threads beside the flow

    def run(self, s, command: str, *, timeout: float, mutating: bool, interruptible: bool,
            keep_output: bool = False) -> Result:
        # A remote-side timeout kills the process on the host, a local one would not (on_host).
        # A command that must finish once begun (mutating, not interruptible) is let finish after a
        # lost connection before the rest are stopped (Session.kill_running); with keep_output its
        # output waits on the host: with the connection gone, a command writing to the channel
        # dies at its next write instead of finishing.
        wrapped = on_host(command, s.run_tag, whole_seconds(timeout), must_finish=mutating and not interruptible,
                          keep_output=keep_output)
        s.ensure_connected(command)
        start = time.monotonic()
        # Only the main thread's command is tracked for Ctrl-C: a read ending in another thread (the
        # heartbeat, a prefetch, the early pull) must not clear it while e.g. `compose up` runs.
        main = threading.current_thread() is threading.main_thread()
        try:
            job = Job(lambda: s._exec(wrapped, timeout))
            if main:
                s.inflight = (job, command, timeout, mutating and not interruptible)
            r = job.wait(ui.Ticker() if main else None)
        except KeyboardInterrupt:
            # Remembered for settle_after_interrupt(): commands run while unwinding (finally
            # blocks) must not make us forget the one that was interrupted.
            if s.inflight:
                s.interrupted.append(s.inflight)
            s.inflight = None
            raise
        except CommandTimedOut as exc:
            self._done(s, main)
            raise CommandFailed(command, None, exc.result.stdout, exc.result.stderr, timed_out=True, timeout=timeout) from None
        except LOST_CONNECTION as exc:
            self._done(s, main)
            raise s._lost(command, f"{exc.__class__.__name__}: {exc}", started=not never_started(exc)) from None
        self._done(s, main)
        return self._result(s, command, r, timeout, time.monotonic() - start)

    @staticmethod
    def _done(s, main: bool) -> None:
        if main:
            s.inflight = None

    @staticmethod
    def _result(s, command: str, r, timeout: float, seconds: float) -> Result:
        if r.exited in (-1, None):
            # No exit status: sshd closed the channel. Either the connection died, or the process
            # was killed by a signal on the host. A dying transport closes its channels before it
            # clears ``active`` (paramiko's Transport.run): give it a moment to finish dying.
            transport = getattr(s.cxn, "transport", None)
            if isinstance(transport, threading.Thread) and transport.is_alive():
                transport.join(TRANSPORT_DYING)
            if not s.cxn.is_connected:
                raise s._lost(command, "the connection closed while the command ran")
            raise CommandFailed(command, -1, r.stdout, (r.stderr + "\n(killed by a signal on the host: no exit status)").strip())
        if r.exited == 124:
            raise CommandFailed(command, 124, r.stdout, r.stderr, timed_out=True, timeout=timeout)
        return Result(command, r.exited, r.stdout, r.stderr, seconds)

    def request(self, s, method: str, url: str, **kw) -> web.HttpAnswer:
        return web.request(method, url, **kw)

    def open_session(self, s, settings: Settings, host: str):
        cxn = connect(s.ctx, host, settings)
        # type(s): the Session class, without importing tasks/session.py (see the module's docstring).
        return type(s)(settings, host, cxn, dry=s.dry, redactor=Redactor(settings.secret_key_pattern), ctx=s.ctx)

