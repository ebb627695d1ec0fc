"""SSHExecutor (tasks/executor.py): what a command that ends without an exit status becomes, and
what Ctrl-C during a command leaves for settle_after_interrupt()."""
import threading
import time

import pytest
from invoke import Result

from tasks.errors import CommandFailed, DeployError, ExitCode
from tasks.session import Session


def test_no_exit_status_on_a_live_connection_is_a_command_killed_by_a_signal(settings, mocker):
    cxn = mocker.Mock(is_connected=True)
    cxn.run.return_value = Result(stdout="half", stderr="Killed", exited=-1)
    s = Session(settings, "deploy@prod", cxn)
    with pytest.raises(CommandFailed) as exc:
        s.run("docker compose up -d")
    assert exc.value.exit_code == -1 and not exc.value.timed_out
    assert exc.value.output == "half\nKilled\n(killed by a signal on the host: no exit status)"


def test_no_exit_status_while_the_transport_is_still_dying_is_a_lost_connection(settings, mocker):
    """paramiko's transport thread closes every channel before it clears ``active``: the command
    sees no exit status while the connection still reads as connected. The executor waits for the
    dying transport a moment (the adversary saw 4 in 1600 such commands called "killed by a signal")."""
    state = {"active": True}

    def dies():
        time.sleep(0.5)             # slower than the 0.2 s once allowed: a loaded host (adversary, triple kill)
        state["active"] = False

    transport = threading.Thread(target=dies, daemon=True)
    cxn = mocker.Mock(transport=transport)
    type(cxn).is_connected = mocker.PropertyMock(side_effect=lambda: state["active"])

    def channel_closed(command, **kwargs):
        transport.start()
        return Result(stdout="", exited=-1)

    cxn.run.side_effect = channel_closed
    s = Session(settings, "deploy@prod", cxn)
    s.first_contact = False
    with pytest.raises(DeployError, match="lost the SSH connection"):
        s.run("docker compose up -d")


def test_no_exit_status_after_the_connection_closed_is_a_lost_connection(settings, mocker):
    cxn = mocker.Mock(is_connected=True)

    def closes(command, **kwargs):
        cxn.is_connected = False
        return Result(stdout="", exited=-1)

    cxn.run.side_effect = closes
    s = Session(settings, "deploy@prod", cxn)
    s.first_contact = False
    with pytest.raises(DeployError) as exc:
        s.run("docker compose up -d")
    err = exc.value
    assert err.what == "lost the SSH connection to deploy@prod (the connection closed while the command ran)"
    assert err.command == "docker compose up -d" and err.code == ExitCode.CONNECTION and err.kind == "infrastructure"
    assert err.state.startswith("unknown: the last command may or may not have finished on the host")


class InterruptedJob:
    """A job whose wait Ctrl-C interrupts (the command itself goes on in the I/O thread)."""

    def __init__(self, fn):
        self.fn = fn

    def wait(self, ticker=None):
        raise KeyboardInterrupt


@pytest.mark.parametrize("mutating, interruptible, must_finish", [
    (True, False, True),          # compose up: let it finish, never leave it half-done
    (True, True, False),          # compose pull: changes nothing that runs
    (False, False, False),        # a read
])
def test_ctrl_c_during_a_command_remembers_it_and_whether_it_must_finish(settings, mocker, mutating, interruptible,
                                                                         must_finish):
    mocker.patch("tasks.executor.Job", InterruptedJob)
    s = Session(settings, "h", mocker.Mock(is_connected=True))
    with pytest.raises(KeyboardInterrupt):
        s.run("docker compose up -d", timeout=30, mutating=mutating, interruptible=interruptible)
    [(job, command, timeout, must)] = s.interrupted
    assert isinstance(job, InterruptedJob) and (command, timeout, must) == ("docker compose up -d", 30, must_finish)
    assert s.inflight is None            # a command run while unwinding is not mistaken for this one


def test_a_second_session_has_the_same_class_dry_run_and_context_and_its_own_redactor(settings, mocker):
    connect = mocker.patch("tasks.executor.connect", return_value=mocker.Mock(is_connected=True))
    ctx = object()
    s = Session(settings, "deploy@prod", mocker.Mock(), dry=True, ctx=ctx)
    other = s.open_session(settings, "deploy@test")
    connect.assert_called_once_with(ctx, "deploy@test", settings)
    assert type(other) is Session and other.host == "deploy@test" and other.cxn is connect.return_value
    assert other.dry is True and other.ctx is ctx and other.redactor is not s.redactor


def test_background_read_ending_keeps_the_main_threads_command_in_flight(settings, mocker):
    """A read in another thread (the early pull, a prefetched read, the lock's heartbeat) that ends
    while the main thread's ``compose up`` runs must not forget that one: Ctrl-C then would not let
    ``up`` finish (settle_after_interrupt) and kill_running would stop it half-way."""
    import threading
    main_started, release = threading.Event(), threading.Event()
    seen = {}

    def run(wrapped, **kwargs):
        if "up -d" in wrapped:
            main_started.set()
            release.wait(10)
        return Result(stdout="", exited=0)

    s = Session(settings, "h", mocker.Mock(is_connected=True, run=mocker.Mock(side_effect=run)))

    def background():
        main_started.wait(10)
        while s.inflight is None and not release.is_set():      # the main thread records its command
            release.wait(0.01)
        s.run("docker compose pull --quiet", mutating=True, interruptible=True, bookkeeping=True)
        seen["inflight"] = s.inflight
        release.set()

    t = threading.Thread(target=background)
    t.start()
    s.run("docker compose up -d", timeout=30, mutating=True)
    t.join(10)
    assert seen["inflight"] is not None and seen["inflight"][1:] == ("docker compose up -d", 30, True)
