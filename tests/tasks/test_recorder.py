"""The release record written behind the flow (tasks/recorder.py): a line is queued and the flow
goes on; a writer thread appends, in order, on its own channel. The promises: a line reaches the
host without waiting for the next event; every line queued before a command that changes the
host, or reads the record, is on the host before that command starts; the lock is given back only
after the last line; a failed append is warned about and the writer goes on; Ctrl-C's kill does
not kill an append in flight; without a background executor (fab plan) lines are appended in place.
Nothing is timed: orderings are observed through an append that is held until released."""
import re
import threading

import pytest
from invoke import Result

from tasks.locking import DeployLock
from tasks.recorder import Recorder
from tasks.session import Session

WAIT = 10       # seconds a test waits for something that should happen at once


def is_append(command: str) -> bool:
    return "releases.jsonl" in command and ">>" in command


class Host:
    """Answers every command; an append can be held (``hold``) until ``release``; logs the order."""

    def __init__(self):
        self.log: list[str] = []
        self.hold = threading.Event()
        self.held = threading.Event()        # an append is being held now
        self.go = threading.Event()
        self.fail_appends = False

    def __call__(self, command, **kw):
        if is_append(command):
            if self.hold.is_set():
                self.held.set()
                assert self.go.wait(WAIT)
            self.log.append(command)
            return Result(stdout="", stderr="disk full" if self.fail_appends else "", exited=1 if self.fail_appends else 0)
        self.log.append(command)
        return Result(stdout="", exited=0)


@pytest.fixture
def host_session(settings, mocker):
    host = Host()
    cxn = mocker.Mock()
    cxn.run.side_effect = host
    cxn.is_connected = True
    s = Session(settings, "h", cxn)
    s.recorder = Recorder(s, "r1")
    return host, s


def events(command: str) -> list[str]:
    return re.findall(r'"event":"([a-z_]+)"', command)


def test_a_line_reaches_the_host_without_waiting_for_the_next_event(host_session):
    host, s = host_session
    s.recorder.step("prepare", "git pull", 0.1, True)
    done = threading.Event()
    threading.Thread(target=lambda: (s.recorder.flush(), done.set()), daemon=True).start()
    assert done.wait(WAIT)
    assert len(host.log) == 1 and '"sub":"git pull"' in host.log[0]


def test_a_command_that_changes_the_host_waits_for_the_lines_queued_before_it(host_session):
    host, s = host_session
    host.hold.set()
    s.recorder.write("start")
    assert host.held.wait(WAIT)          # the first append is on its way, held
    s.recorder.write("images_before")    # queued behind it
    threading.Timer(0.2, host.go.set).start()
    s.run("docker compose up -d", mutating=True)
    assert [events(c) or c for c in host.log] == [["start"], ["images_before"], "timeout -k 5 " + host.log[-1].split("timeout -k 5 ", 1)[1]]
    assert "compose up -d" in host.log[-1]


def test_reads_do_not_wait_but_a_read_of_the_record_does(host_session, settings):
    host, s = host_session
    host.hold.set()
    s.recorder.write("start")
    assert host.held.wait(WAIT)
    s.run("docker inspect x")                        # a read goes on beside the held append
    assert "docker inspect x" in host.log[-1] and not any(is_append(c) for c in host.log)
    threading.Timer(0.2, host.go.set).start()
    s.run(f"tail -n 5 {settings.releases_file}")     # reading the record: after the line
    assert is_append(host.log[-2]) and "tail -n 5" in host.log[-1]


def test_lines_queued_during_an_append_go_in_one_command_in_order(host_session):
    host, s = host_session
    host.hold.set()
    s.recorder.write("start")
    assert host.held.wait(WAIT)
    host.hold.clear()
    s.recorder.write("images_before")
    s.recorder.step("start", None, 0.3, True)
    s.recorder.write("end")
    host.go.set()
    s.recorder.flush()
    assert [events(c) for c in host.log] == [["start"], ["images_before", "step", "end"]]


def test_a_failed_append_is_warned_about_and_the_writer_goes_on(host_session, capsys):
    host, s = host_session
    host.fail_appends = True
    s.recorder.write("start")
    s.recorder.flush()
    assert "could not append to the release record" in "".join(capsys.readouterr())
    host.fail_appends = False
    s.recorder.write("end")
    s.recorder.flush()
    assert events(host.log[-1]) == ["end"]
    assert [e["event"] for e in s.recorder.lines] == ["start", "end"]


def release_the_lock(s):
    lock = DeployLock(s, "deploy")
    lock.held, lock.token = True, "0123456789abcdef"
    lock.release()


@pytest.mark.parametrize("act, word", [(release_the_lock, "lock"), (lambda s: s.kill_running(), "pkill")],
                         ids=["the lock's release", "ctrl-c's kill"])
def test_the_lock_release_and_ctrl_c_kill_wait_for_an_append_in_flight(host_session, act, word):
    host, s = host_session
    host.hold.set()
    s.recorder.write("end")
    assert host.held.wait(WAIT)
    threading.Timer(0.2, host.go.set).start()
    act(s)
    assert events(host.log[0]) == ["end"] and word in host.log[1]


def test_without_a_background_executor_lines_are_appended_in_place(host_session):
    host, s = host_session
    s.executor.background = False          # fab plan's recording executor, tests' scripted hosts
    s.recorder.write("start")
    assert len(host.log) == 1 and events(host.log[0]) == ["start"]
    s.run("docker ps")
    s.recorder.write("end")
    assert events(host.log[2]) == ["end"]


class HeldByFleet:
    """A lock taken and released by someone else (a fleet's HeldLock): ``with`` leaves it alone."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def ensure_held(self, before):
        pass


def test_a_second_flow_on_the_session_comes_after_the_first_flows_last_lines(host_session, settings, mocker):
    """A fleet's FAILURE_POLICY=revert runs a rollback flow on a session whose deploy flow ended
    under the fleet's lock (nothing flushed it): the rollback reads the record to choose its target,
    and must find the deploy's last lines there, and record its own after them."""
    from tasks import flow as flow_mod
    from tasks.runstate import Observation
    from tasks.steps import RunOptions, Step
    host, s = host_session
    mocker.patch.object(flow_mod, "observe", return_value=Observation({}, True, "v1"))
    mocker.patch.object(flow_mod, "notify", return_value=(True, "posted"))
    host.hold.set()
    s.recorder.write("end")              # the deploy flow's last line, its append held on its way
    assert host.held.wait(WAIT)
    host.hold.clear()                    # only that one is held
    threading.Timer(0.2, host.go.set).start()
    read = f"tail -n 5 {settings.releases_file}"
    flow_mod.run_flow(s, [Step("rollback", lambda s, o: s.run(read))], RunOptions("rollback"), rid="r2", held=HeldByFleet())
    s.recorder.flush()
    appended = [events(c) for c in host.log if is_append(c)]
    assert appended[0] == ["end"] and appended[1][0] == "start"
    first_read = next(i for i, c in enumerate(host.log) if "tail -n 5" in c)
    assert any('"release":"r1"' in c for c in host.log[:first_read])


class EndHeld(Host):
    """Holds only the append of an ``end`` line, until ``go``."""

    def __call__(self, command, **kw):
        if is_append(command) and '"event":"end"' in command:
            self.held.set()
            assert self.go.wait(WAIT)
        self.log.append(command)
        return Result(stdout="", exited=0)


def test_after_ctrl_c_the_end_line_is_on_the_host_within_the_clean_up_bound(settings, mocker):
    """The clean-up after Ctrl-C is bounded by its watchdog (INTERRUPT_CLEANUP_LIMIT, then
    os._exit): the aborted run's end line must be written inside that bound, not after it, in the
    lock's release, where further signals are ignored and no watchdog ends a hung append."""
    import types

    from tasks import flow as flow_mod
    from tasks.runstate import Observation
    from tasks.steps import RunOptions, Step
    host = EndHeld()
    cxn = mocker.Mock()
    cxn.run.side_effect = host
    cxn.is_connected = True
    s = Session(settings, "h", cxn)
    mocker.patch.object(flow_mod, "observe", return_value=Observation({}, True, "v1"))
    mocker.patch.object(flow_mod, "notify", return_value=(True, "posted"))
    on_host_at_cancel = []

    class Watchdog:
        def __init__(self, *a, **kw):
            self.daemon = False

        def start(self):
            pass

        def cancel(self):
            on_host_at_cancel.extend(e for c in host.log if is_append(c) for e in events(c))

    mocker.patch.object(flow_mod, "threading", types.SimpleNamespace(Timer=Watchdog))
    threading.Thread(target=lambda: host.held.wait(WAIT) and threading.Timer(0.2, host.go.set).start(), daemon=True).start()

    def interrupted(s, o):
        raise KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        flow_mod.run_flow(s, [Step("prepare", interrupted)], RunOptions("deploy"), held=HeldByFleet())
    assert "end" in on_host_at_cancel


def test_a_flush_that_gives_up_says_so(host_session, capsys):
    """A flush that times out (an append hung) lets the command it guarded start before the lines,
    or the lock go before the last line: never silently."""
    host, s = host_session
    host.hold.set()
    s.recorder.write("end")
    assert host.held.wait(WAIT)
    s.recorder.flush(0.01)
    host.go.set()
    assert "release record" in capsys.readouterr().out
