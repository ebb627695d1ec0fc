"""The quiet command path on an SSH channel (tasks/quickrun.py), on a channel made of paramiko's
own buffers (tests/integration/test_staging_quickrun.py runs it against the staging host's sshd)."""
import socket
import threading
import time

import pytest
from invoke.exceptions import CommandTimedOut
from paramiko.buffered_pipe import BufferedPipe, PipeTimeout

from tasks.conftest import hermetic_config
from tasks.quickrun import QUIET, QuickConnection, run_quiet


class Channel:
    """paramiko's Channel as run_quiet uses it: its two buffers are paramiko's BufferedPipe, fed by
    a "host" thread as the transport thread would; closing sets the status event as paramiko does."""

    def __init__(self, host):
        self.in_buffer, self.in_stderr_buffer = BufferedPipe(), BufferedPipe()
        self.status_event = threading.Event()
        self.exit_status = -1
        self.closed = False
        self.timeout = None
        self.command = None
        self.host = host

    def exec_command(self, command):
        self.command = command
        threading.Thread(target=self.host, args=(self,), daemon=True).start()

    def settimeout(self, seconds):
        self.timeout = seconds

    def recv(self, n):
        try:
            return self.in_buffer.read(n, self.timeout)
        except PipeTimeout:
            raise socket.timeout() from None

    def recv_stderr(self, n):
        try:
            return self.in_stderr_buffer.read(n, self.timeout)
        except PipeTimeout:
            raise socket.timeout() from None

    # the host's side
    def exit(self, status):
        self.exit_status = status
        self.status_event.set()

    def close(self):
        self.closed = True
        self.in_buffer.close()
        self.in_stderr_buffer.close()
        self.status_event.set()


class Transport:
    def __init__(self, host):
        self.host = host
        self.channels = []

    def open_session(self):
        self.channels.append(Channel(self.host))
        return self.channels[-1]


def finishes(out=b"", err=b"", status=0):
    def host(ch):
        ch.in_buffer.feed(out)
        ch.in_stderr_buffer.feed(err)
        ch.exit(status)
        ch.close()
    return host


def test_both_streams_and_the_exit_status_come_back():
    t = Transport(finishes(b"hello\n", b"warn\n", 3))
    assert run_quiet(t, "cmd", 5) == (3, "hello\n", "warn\n", False)
    assert t.channels[0].command == "cmd" and t.channels[0].closed


def test_a_character_split_between_two_reads_stays_one_character():
    euro = "€".encode()

    def host(ch):
        ch.in_buffer.feed(euro[:1])
        time.sleep(0.05)            # read on its own
        ch.in_buffer.feed(euro[1:])
        ch.exit(0)
        ch.close()
    assert run_quiet(Transport(host), "cmd", 5)[1] == "€"


def test_both_streams_are_read_while_the_command_runs():
    """A command writing more to stderr than the window holds waits for a reader: here the host
    writes stderr, and only then stdout, and waits until each is read (a full window)."""
    def host(ch):
        for buf in (ch.in_stderr_buffer, ch.in_buffer):
            buf.feed(b"x" * 100_000)
            while len(buf):          # the host blocks until we read it
                time.sleep(0.005)
        ch.exit(0)
        ch.close()
    code, out, err, timed_out = run_quiet(Transport(host), "cmd", 5)
    assert (code, len(out), len(err), timed_out) == (0, 100_000, 100_000, False)


def test_a_channel_closed_without_an_exit_status_is_minus_one():
    """A lost connection or a process killed by a signal: sshd closes the channel with no status."""
    def host(ch):
        ch.in_buffer.feed(b"half")
        ch.close()
    assert run_quiet(Transport(host), "cmd", 5) == (-1, "half", "", False)


def test_the_deadline_ends_the_wait_with_the_output_so_far_and_closes_the_channel():
    def host(ch):
        ch.in_buffer.feed(b"started\n")
        ch.in_stderr_buffer.feed(b"working\n")      # and never ends
    t = Transport(host)
    start = time.monotonic()
    assert run_quiet(t, "cmd", 0.3) == (-1, "started\n", "working\n", True)
    assert 0.25 < time.monotonic() - start < 2 and t.channels[0].closed


def test_the_deadline_also_holds_when_stdout_ended_but_no_exit_status_comes():
    def host(ch):
        ch.in_buffer.feed(b"done\n")
        ch.in_buffer.close()            # stdout ends; stderr and the status never come
    t = Transport(host)
    assert run_quiet(t, "cmd", 0.3) == (-1, "done\n", "", True)


def test_a_failing_stderr_read_is_raised_and_the_channel_closed():
    class Broken(Channel):
        def recv_stderr(self, n):
            raise EOFError("transport gone")
    t = Transport(lambda ch: None)
    t.open_session = lambda: t.channels.append(Broken(t.host)) or t.channels[-1]
    with pytest.raises(EOFError, match="transport gone"):
        run_quiet(t, "cmd", 0.5)
    assert t.channels[0].closed


def test_a_channel_that_does_not_open_raises_what_paramiko_raised():
    class NoChannel:
        def open_session(self):
            raise EOFError("no session")
    with pytest.raises(EOFError):
        run_quiet(NoChannel(), "cmd", 5)


# ---- the Connection ---------------------------------------------------------------------------------

def connection(monkeypatch, host):
    cxn = QuickConnection("example.invalid", config=hermetic_config())
    transport = Transport(host)
    monkeypatch.setattr(QuickConnection, "open", lambda self: None)
    cxn._set(transport=transport)
    return cxn, transport


def test_a_quiet_run_is_read_here_and_comes_back_as_fabrics_result(monkeypatch):
    cxn, t = connection(monkeypatch, finishes(b"out", b"err", 2))
    r = cxn.run("cmd", timeout=5, **QUIET)
    assert (r.exited, r.stdout, r.stderr, r.command, r.connection) == (2, "out", "err", "cmd", cxn)
    assert r.failed and t.channels         # fabric's Result: exit 2 is a failure (warn=True: returned, not raised)


def test_a_quiet_run_past_its_deadline_is_invokes_timeout_with_the_output_so_far(monkeypatch):
    cxn, _ = connection(monkeypatch, lambda ch: ch.in_buffer.feed(b"partial"))
    with pytest.raises(CommandTimedOut) as caught:
        cxn.run("cmd", timeout=0.2, **QUIET)
    assert caught.value.result.stdout == "partial" and caught.value.timeout == 0.2


@pytest.mark.parametrize("kwargs", [
    {**QUIET, "hide": False},                        # output shown (or streamed: tasks/stream.py)
    {**QUIET, "pty": True},
    {key: value for key, value in QUIET.items() if key != "echo"},
    {**QUIET, "timeout": None},                      # no deadline: never here
])
def test_anything_but_a_quiet_run_with_a_deadline_goes_to_fabrics_runner(monkeypatch, kwargs):
    cxn, t = connection(monkeypatch, finishes())
    seen = []
    monkeypatch.setattr("fabric.Connection.run", lambda self, command, **kw: seen.append(kw) or "fabric's")
    assert cxn.run("cmd", **{"timeout": 5, **kwargs}) == "fabric's"
    assert not t.channels and seen
