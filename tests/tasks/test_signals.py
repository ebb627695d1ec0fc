"""Ctrl-C, SIGTERM and SIGHUP through the task wrapper (issue 7, items 6 and 7).

These tests set the signal dispositions they rely on themselves (the ``unhandled`` fixture), so
they behave the same whatever the parent of pytest did with SIGINT; a signal the tool does not
take over raises ``Unhandled`` instead of killing pytest or being ignored."""
import dataclasses
import os
import signal
import subprocess
import sys
import threading

import pytest
from invoke import Exit, MockContext

from tasks import base, interrupts
from tasks import deploy as deploy_mod
from tasks import flow as flow_mod
from tasks.conftest import Remote, hermetic_config
from tasks.errors import ExitCode
from tasks.runstate import Observation
from tasks.session import Session
from tasks.test_flow import BEFORE, FakeLock, records

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOST = "deploy@ai-doc-qa.example.com"


class Unhandled(BaseException):
    pass


@pytest.fixture
def unhandled():
    def raise_unhandled(signum, frame):
        raise Unhandled(signal.Signals(signum).name)
    saved = {sig: signal.getsignal(sig) for sig in interrupts.HANDLED}
    for sig in interrupts.HANDLED:
        signal.signal(sig, raise_unhandled)
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture
def deploy_with(mocker, unhandled):
    """`fab deploy` in-process on a scripted remote; ``on_step(s, name)`` runs as each step."""
    def run(on_step, kill_running=lambda s: True):
        FakeLock.instances = []
        remote = Remote()
        cxn = mocker.Mock()
        cxn.run.side_effect = remote
        mocker.patch.object(base, "connect", return_value=cxn)
        mocker.patch.object(flow_mod, "DeployLock", FakeLock)
        mocker.patch.object(flow_mod, "notify", return_value=(True, "posted"))
        mocker.patch.object(flow_mod, "observe", return_value=Observation(BEFORE, True, "v1"))
        restore = mocker.patch.object(flow_mod, "restore", return_value=BEFORE)
        mocker.patch.object(Session, "kill_running", autospec=True, side_effect=kill_running)

        def fake(step):
            def work(s, opts):
                if step.switches:
                    s.state.services_touched = True
                on_step(s, step.name)
            return dataclasses.replace(step, run=work)
        mocker.patch.object(deploy_mod, "DEPLOY_STEPS", [fake(x) for x in deploy_mod.DEPLOY_STEPS])
        with pytest.raises(Exit) as exc:
            deploy_mod.deploy(MockContext(config=hermetic_config()), stage="production")
        return exc.value.code, remote, restore
    return run


@pytest.mark.parametrize("signum, code, name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGHUP, 129, "SIGHUP"),
                                                (signal.SIGINT, 130, "Ctrl-C")])
def test_sigterm_and_sighup_after_the_switch_clean_up_like_ctrl_c(deploy_with, capsys, signum, code, name):
    def on_step(s, step):
        if step == "services":
            signal.raise_signal(signum)
    exit_code, remote, restore = deploy_with(on_step)
    out, err = capsys.readouterr()
    assert exit_code == code
    assert f"{name}: cleaning up" in out
    restore.assert_called_once()                       # the switched services go back to the recorded images
    assert restore.call_args.args[1] == BEFORE
    end = records(remote)[-1]
    assert end["event"] == "end" and end["outcome"] == "aborted"
    assert FakeLock.instances[0].released == 1
    assert f"✗ INTERRUPTED ({name}) on {HOST}" in err and f"Exit code:  {code}:" in err


def test_further_signals_during_the_clean_up_are_ignored(deploy_with, capsys):
    def on_step(s, step):
        if step == "migrate":
            signal.raise_signal(signal.SIGHUP)

    def kill_running(s):
        # a closed terminal can deliver SIGHUP twice; a CI runner may follow with SIGTERM
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.raise_signal(sig)
        return True
    exit_code, remote, restore = deploy_with(on_step, kill_running)
    assert exit_code == ExitCode.HANGUP == 129        # the first signal decides
    assert records(remote)[-1]["outcome"] == "aborted"
    assert FakeLock.instances[0].released == 1
    restore.assert_not_called()                        # interrupted before the switch: nothing to restore


def test_the_watchdog_exits_with_the_code_of_the_signal(mocker, settings, capsys):
    exit_ = mocker.patch.object(flow_mod.os, "_exit")
    flow_mod._give_up_cleanup(Session(settings, "h", None), 45, "SIGTERM", ExitCode.TERMINATED)
    exit_.assert_called_once_with(143)
    assert "clean-up after SIGTERM did not finish within 45 s" in capsys.readouterr().out


def test_signal_handlers_are_restored_after_the_task(unhandled):
    before = {sig: signal.getsignal(sig) for sig in interrupts.HANDLED}
    with interrupts.handled():
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
    assert {sig: signal.getsignal(sig) for sig in interrupts.HANDLED} == before


def test_nohup_keeps_sighup_ignored(unhandled):
    signal.signal(signal.SIGHUP, signal.SIG_IGN)          # what `nohup fab deploy &` does
    with interrupts.handled():
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN


CHILD = r"""
import signal, sys, time
from fabric import Config
from invoke import Exit, MockContext
from tasks.base import operator_task

print("inherited SIGINT:", "ignored" if signal.getsignal(signal.SIGINT) is signal.SIG_IGN else "handled", flush=True)

@operator_task(connects=False)
def wait_here(o):
    print("ready", flush=True)
    for _ in range(300):
        time.sleep(0.1)

try:
    wait_here(MockContext(config=Config(overrides={"load_ssh_configs": False, "run": {"in_stream": False}})), stage="production")
except Exit as exc:
    sys.exit(exc.code)
"""


def test_ctrl_c_is_handled_when_the_parent_started_us_with_sigint_ignored():
    # `sh -c 'fab deploy &'` and some CI runners start the tool with SIGINT ignored; Python then
    # installs no KeyboardInterrupt handler, and Ctrl-C did nothing.
    proc = subprocess.Popen([sys.executable, "-c", CHILD], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONPATH": ROOT},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert proc.stdout.readline().strip() == "inherited SIGINT: ignored"
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    assert "✗ INTERRUPTED (Ctrl-C)" in out and "Traceback" not in out


def test_a_second_signal_is_dropped_until_the_task_ends(unhandled):
    """A closed terminal can deliver SIGHUP twice (kernel and shell): the second must not land in
    the clean-up the first one started."""
    with interrupts.handled():
        with pytest.raises(interrupts.Terminated) as exc:
            os.kill(os.getpid(), signal.SIGHUP)
        assert exc.value.signum == signal.SIGHUP
        os.kill(os.getpid(), signal.SIGHUP)                 # dropped: no exception
        os.kill(os.getpid(), signal.SIGINT)                 # dropped too
    with interrupts.handled():                               # the next task starts afresh
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


def test_signal_handlers_are_left_alone_outside_the_main_thread(unhandled):
    before = {sig: signal.getsignal(sig) for sig in interrupts.HANDLED}
    seen = []

    def task():
        with interrupts.handled(), interrupts.ignored():
            seen.append({sig: signal.getsignal(sig) for sig in interrupts.HANDLED})

    worker = threading.Thread(target=task)
    worker.start()
    worker.join()
    assert seen == [before]
