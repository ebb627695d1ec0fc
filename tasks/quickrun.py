"""The session's quiet commands on the open SSH transport, without invoke's runner.

Every command the session runs is quiet (output captured, nothing on the terminal, no stdin, no
pty, the remote ``timeout`` wrapper around it: tasks/executor.py). For those, invoke's runner was
machinery with nothing to do: a runner object reading its config, a reader thread for stdout and
one for stderr, a timer thread, each command. ~4 ms of CPU per command on the staging host, ~60
commands per deploy, on 2 cores the deploy's own containers wait for. Here: one channel, stdout read by the calling
thread, stderr by one thread (both must be read while the command runs: a command that fills
the 2 MB window on either stream would wait for us otherwise), the exit status with a deadline.

The outcomes are fabric's, so the executor's handling stays the one it tested: a
``fabric.runners.Result`` (``exited`` -1 when the channel closed without an exit status: a
lost connection or a process killed by a signal), ``CommandTimedOut`` when the local deadline
passes first, paramiko's exceptions when no channel opens or the transport fails. Anything else
(streamed output, a pty, an environment, a forwarded agent) goes to fabric's runner as before.
"""
from __future__ import annotations

import socket
import threading
import time

from fabric import Connection
from fabric.runners import Result
from invoke.exceptions import CommandTimedOut

CHUNK = 32768
# Connection.run's arguments the session's quiet commands pass (tasks/session.py): only those
# are run here.
QUIET = {"warn": True, "hide": True, "pty": False, "in_stream": False, "echo": False}


class QuickConnection(Connection):
    """A fabric Connection whose quiet ``run`` reads the channel itself (see the module)."""

    def run(self, command, **kwargs):
        timeout = kwargs.pop("timeout", None)
        if kwargs != QUIET or not timeout or self.forward_agent or self.config.run.env:
            return super().run(command, timeout=timeout, **kwargs) if timeout else super().run(command, **kwargs)
        self.open()                # as fabric's run does (@opens): nothing when connected
        exited, stdout, stderr, timed_out = run_quiet(self.transport, command, timeout)
        result = Result(stdout=stdout, stderr=stderr, exited=exited, command=command, connection=self,
                        encoding="utf-8", hide=("stdout", "stderr"), pty=False, shell="", env={})
        if timed_out:
            raise CommandTimedOut(result, timeout)
        return result


def run_quiet(transport, command: str, timeout: float) -> tuple[int, str, str, bool]:
    """(exit status, stdout, stderr, timed out) of ``command`` on a new channel of ``transport``.
    The exit status is -1 when the channel closed without one. Opening the channel raises what
    paramiko raises (no session, channel refused or timed out); a read failing raises its error."""
    deadline = time.monotonic() + timeout
    channel = transport.open_session()
    try:
        channel.exec_command(command)
        err: list[bytes] = []
        failed: list[BaseException] = []
        reader = threading.Thread(target=_drain_stderr, args=(channel, err, failed), name="ssh-stderr", daemon=True)
        reader.start()
        out, timed_out = _drain_stdout(channel, deadline)
        if not timed_out:
            reader.join(max(0.0, deadline - time.monotonic()))
            timed_out = reader.is_alive() or not channel.status_event.wait(max(0.0, deadline - time.monotonic()))
        if timed_out:
            channel.close()                 # the reader sees the end of stderr now
            reader.join(1.0)
        if failed:
            raise failed[0]
        return (-1 if timed_out else channel.exit_status), _text(out), _text(b"".join(err)), timed_out
    finally:
        channel.close()


def _drain_stdout(channel, deadline: float) -> tuple[bytes, bool]:
    """Everything on stdout until its end; True as well if the deadline passed first."""
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return b"".join(chunks), True
        channel.settimeout(left)
        try:
            data = channel.recv(CHUNK)
        except socket.timeout:
            return b"".join(chunks), True
        if not data:
            return b"".join(chunks), False
        chunks.append(data)


def _drain_stderr(channel, chunks: list[bytes], failed: list[BaseException]) -> None:
    """stderr until its end (or the channel closes); an error is kept for the caller. The
    channel's timeout is the stdout reader's deadline (one setting for both streams): when it
    passes here, the stdout reader has passed it too and closes the channel."""
    try:
        while True:
            try:
                data = channel.recv_stderr(CHUNK)
            except socket.timeout:
                if channel.closed:
                    return
                continue
            if not data:
                return
            chunks.append(data)
    except BaseException as exc:        # handed to the caller, which raises it
        failed.append(exc)


def _text(data: bytes) -> str:
    """As invoke decodes (UTF-8, bad bytes replaced), but the whole output at once: a character
    split between two reads stays one character."""
    return data.decode("utf-8", "replace")
