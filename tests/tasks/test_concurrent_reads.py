"""Session.concurrently (issue 9, target 3): independent reads at once over the one connection,
results in order, the first error raised once every read has ended; one after another where the
order must be known (``fab plan``'s executor, a read inside a concurrent read). Nothing is timed:
"at once" is proven by a barrier every read must reach before any of them can answer."""
import threading

import pytest
from invoke import Result

from commands.secrets import REDACTED, Redactor
from tasks import ui, worker
from tasks.errors import CommandFailed
from tasks.session import Session


def session(settings, mocker, answer):
    cxn = mocker.Mock()
    cxn.run.side_effect = answer
    return Session(settings, "h", cxn)


def test_reads_run_at_once_and_come_back_in_order(settings, mocker):
    barrier = threading.Barrier(3, timeout=30)      # sequential reads would never get all three here

    def answer(command, **kw):
        barrier.wait()
        return Result(stdout=command.split("'")[1] + "\n", exited=0)
    s = session(settings, mocker, answer)
    out = s.concurrently(*(lambda n=n: s.run(f"echo {n}").stdout.split()[-1] for n in ("a", "b", "c")))
    assert out == ["a", "b", "c"]


def test_the_first_error_is_raised_after_every_read_ended(settings, mocker):
    ended = []

    def answer(command, **kw):
        ended.append(command)
        return Result(stdout="", stderr="no", exited=1 if "bad" in command else 0)
    s = session(settings, mocker, answer)
    with pytest.raises(CommandFailed) as exc:
        s.concurrently(lambda: s.run("good1"), lambda: s.run("bad1"), lambda: s.run("bad2"), lambda: s.run("good2"))
    assert "bad1" in exc.value.command and len(ended) == 4


def test_without_a_background_executor_reads_run_in_order_in_this_thread(settings, mocker):
    seen = []
    s = session(settings, mocker, lambda c, **kw: Result(stdout="", exited=0))
    s.executor.background = False           # fab plan's recording executor
    s.concurrently(lambda: seen.append(threading.current_thread()), lambda: seen.append(threading.current_thread()))
    assert seen == [threading.main_thread()] * 2


def test_a_read_inside_a_concurrent_read_runs_in_order(settings, mocker):
    s = session(settings, mocker, lambda c, **kw: Result(stdout="", exited=0))
    inner = []

    def outer():
        slot = worker.read_slot()
        s.concurrently(lambda: inner.append(worker.read_slot()), lambda: inner.append(worker.read_slot()))
        return slot
    slots = s.concurrently(outer, lambda: worker.read_slot())
    assert [x[1] for x in slots] == [0, 1] and slots[0][0] == slots[1][0]
    assert inner == [slots[0], slots[0]]           # both in the outer read's own thread


def test_the_fleet_host_prefix_reaches_the_reads(settings, mocker, capsys):
    s = session(settings, mocker, lambda c, **kw: Result(stdout="", exited=0))
    ui.set_prefix("[web-1] ")
    try:
        s.concurrently(lambda: ui.say("one"), lambda: ui.say("two"))
    finally:
        ui.set_prefix("")
    assert sorted(capsys.readouterr().out.splitlines()) == ["[web-1] one", "[web-1] two"]


def test_a_fleet_reads_held_lines_keep_the_concurrent_reads_lines(settings, mocker, capsys):
    """A fleet read holds each host's lines until the host is done (tasks/fleetread.py): the lines
    of that host's concurrent reads are held with them, not printed among the other hosts' lines."""
    s = session(settings, mocker, lambda c, **kw: Result(stdout="", exited=0))
    ui.hold()
    try:
        s.concurrently(lambda: ui.say("one"), lambda: ui.say("two"))
        printed_while_held = capsys.readouterr().out
    finally:
        held = ui.release()
    assert printed_while_held == ""
    assert sorted(text for text, _ in held) == ["one", "two"]


def test_a_secret_learnt_while_another_thread_redacts_is_hidden_next_time():
    """The redactor is shared by concurrent reads: a value added between two calls is never lost
    to a regex built from the older set (copy-on-write values, the regex cached with its set)."""
    r = Redactor()
    r.add("first-secret-value")
    assert r("x first-secret-value") == f"x {REDACTED}"
    values_before = r._values
    r.add("second-secret-value")
    assert r._values is not values_before                   # replaced, not changed in place
    assert r("second-secret-value first-secret-value") == f"{REDACTED} {REDACTED}"
