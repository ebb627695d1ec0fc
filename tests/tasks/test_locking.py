"""The deploy lock in the task layer (issue 7, lock items 1-3 and item 15's --lock-wait), with a
scripted remote: the heartbeat survives failures and reconnects, every beat proves ownership, a
run that lost its lock stops at the next step boundary and never touches the services again, and
every branch of acquisition is bounded."""
import dataclasses
import json
import shlex
import threading
import time

import pytest
from invoke import Result

from commands import lock as lock_cmd
from tasks import deploy as deploy_mod
from tasks import flow as flow_mod
from tasks import locking as locking_mod
from tasks.errors import DeployError, ExitCode
from tasks.locking import DeployLock
from tasks.runstate import Observation
from tasks.steps import RunOptions

# These match the base commit's lock commands too, so each test fails there for its real reason.
ACQUIRE = r"echo acquired"
STATUS = r"echo clock"
BEAT = r"touch (-- )?'?[^' ]*/heartbeat'?( \))?$"
RELEASE = r"then rm -rf"
OTHER_HOLDER = json.dumps({"token": "f" * 16, "who": "other@laptop", "from": "laptop", "pid": 7, "stage": "production",
                           "task": "deploy", "started": "2026-11-27T00:00:00+00:00", "message": ""}, sort_keys=True)
BEFORE = {"backend": {"ref": "reg/backend:latest", "id": "sha256:" + "1" * 64, "digests": []}}
AFTER = {"backend": {"ref": "reg/backend:latest", "id": "sha256:" + "2" * 64, "digests": []}}


def fast(settings):
    return dataclasses.replace(settings, lock_heartbeat=0.05, lock_stale_after=1.0)


def wait_until(predicate, what, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def bounded(limit=60):
    """Catch-all script entry: a lock loop that never ends fails the test instead of hanging it."""
    seen = []

    def answer(cmd):
        seen.append(cmd)
        if len(seen) > limit:
            raise RuntimeError(f"more than {limit} unscripted remote commands: the lock loop does not end")
        return Result(stdout="", exited=0)
    return (r"", answer)


def limit_commands(s, remote, limit=60):
    """A lock loop that never ends (the base commit's) fails the test instead of hanging it."""
    def counted(command, **kwargs):
        if len(remote.commands) >= limit:
            raise RuntimeError(f"more than {limit} remote commands: the lock loop does not end")
        return remote(command, **kwargs)
    s.cxn.run.side_effect = counted


def beats_of(remote):
    import re
    return [c for c in remote.commands if re.search(BEAT, c)]


# --- item 1: the heartbeat survives transient errors and reconnects --------------------------------

def test_one_failed_heartbeat_does_not_end_the_heartbeat(make_session, settings):
    calls = []

    def beat(cmd):
        calls.append(cmd)
        if len(calls) == 1:
            raise EOFError("connection reset by peer")       # a transient failure of one beat
        return Result(stdout="", exited=0)
    s, remote = make_session([(ACQUIRE, "acquired\n"), (BEAT, beat), (RELEASE, "released\n")], settings=fast(settings))
    lock = DeployLock(s, "deploy")
    lock.__enter__()
    try:
        wait_until(lambda: len(calls) >= 4, "the heartbeat to go on after one failed beat")
        assert lock.failed_beats == 0 and "lost the SSH connection" in lock.last_failure
    finally:
        lock.release()


@pytest.fixture
def reopen_by_cxn_open(mocker):
    """Reconnecting opens the (mock) connection's cxn.open, as the real open_connection ends by doing."""
    mocker.patch("tasks.session.open_connection", side_effect=lambda cxn, settings: cxn.open())


def test_heartbeat_reconnects_a_dropped_connection_while_the_main_thread_waits(make_session, settings, reopen_by_cxn_open):
    s, remote = make_session([(ACQUIRE, "acquired\n"), (BEAT, Result(exited=0)), (RELEASE, "released\n")],
                             settings=fast(settings))
    cxn = s.cxn
    lock = DeployLock(s, "deploy")
    lock.__enter__()
    try:
        attempts = []

        def reopen():
            attempts.append(1)
            if len(attempts) == 1:
                raise OSError("connection refused")        # the first try fails: the next beat tries again
            cxn.is_connected = True
        cxn.open.side_effect = reopen
        cxn.is_connected = False                           # dropped; the main thread runs nothing meanwhile
        before = len(beats_of(remote))
        wait_until(lambda: len(attempts) >= 2 and len(beats_of(remote)) > before + 2,
                   "the heartbeat to reconnect by itself and beat again")
        assert not s.dead        # a background thread's failed reconnect does not condemn the run
    finally:
        lock.release()


def test_main_thread_and_heartbeat_never_both_reconnect(make_session, settings, reopen_by_cxn_open):
    s, _ = make_session(settings=settings)
    cxn = s.cxn
    cxn.is_connected = False

    def slow_open():
        time.sleep(0.2)
        cxn.is_connected = True
    cxn.open.side_effect = slow_open
    other = threading.Thread(target=s.ensure_connected)
    other.start()
    s.ensure_connected()
    other.join()
    assert cxn.open.call_count == 1


def test_a_beat_that_finds_another_token_loses_the_lock_for_good(make_session, settings):
    s, remote = make_session([(ACQUIRE, "acquired\n"), (BEAT, Result(exited=3)),
                              (STATUS, OTHER_HOLDER + "\nclock 1000 999 990\n"), bounded()], settings=settings)
    lock = DeployLock(s, "deploy")
    lock.__enter__()
    with pytest.raises(DeployError) as exc:
        lock.ensure_held("services")
    err = exc.value
    assert err.code == ExitCode.LOCKED and "lost the deploy lock" in err.what and "other@laptop" in err.what
    assert "stopped before services" in err.what and "did not touch the services" in err.state
    lock.release()
    assert not any("then rm -rf" in c for c in remote.commands)     # never remove a lock that is not ours


def test_a_lock_unproven_for_half_of_stale_after_stops_the_run(make_session, settings):
    def broken(cmd):
        raise EOFError("no route to host")
    s, remote = make_session([(ACQUIRE, "acquired\n"), (BEAT, broken), bounded()], settings=settings)
    lock = DeployLock(s, "deploy")
    lock.__enter__()
    lock.ensure_held("prepare")                                 # just acquired: proven
    lock.last_proof = time.monotonic() - settings.lock_stale_after / 2 - 1
    with pytest.raises(DeployError) as exc:
        lock.ensure_held("services")
    assert exc.value.code == ExitCode.LOCKED and "could not prove" in exc.value.what
    assert "no route to host" in exc.value.what
    lock.release()


# --- item 2: an unwritable record directory, and every acquisition branch bounded ---------------

def test_unwritable_record_dir_is_a_clear_error_not_a_loop(make_session, settings):
    answer = ("error\nuser deploy\nowner root\n"
              "reason mkdir: cannot create directory '/app/.deploy/lock': Permission denied\n")
    s, remote = make_session([(ACQUIRE, answer), bounded()], settings=settings)
    limit_commands(s, remote)
    with pytest.raises(DeployError) as exc:
        DeployLock(s, "deploy", wait=30).__enter__()
    err = exc.value
    assert err.code == ExitCode.STEP_FAILED and err.kind == "setup"           # a setup problem pages nobody
    assert "is not writable by the SSH user deploy (owned by root)" in err.what and settings.record_path in err.what
    assert "Permission denied" in err.output and f"sudo chown -R deploy {settings.record_path}" in err.next_step
    assert len(remote.commands) == 1                            # no retry: waiting will not fix permissions


def test_held_then_free_at_every_try_is_bounded_by_lock_wait(make_session, settings):
    s, remote = make_session([(ACQUIRE, "held\n"), (STATUS, "free\n"), bounded()], settings=settings)
    limit_commands(s, remote)
    with pytest.raises(DeployError) as exc:
        DeployLock(s, "deploy", wait=0).__enter__()
    assert exc.value.code == ExitCode.LOCKED and "kept changing" in exc.value.what
    assert sum("echo acquired" in c for c in remote.commands) == locking_mod.QUICK_RETRIES


@pytest.mark.parametrize("wait", [float("nan"), float("inf")])
def test_lock_wait_nan_or_inf_is_a_usage_error_not_an_endless_wait(make_session, settings, wait):
    s, remote = make_session([bounded()], settings=settings)
    with pytest.raises(DeployError) as exc:
        DeployLock(s, "deploy", wait=wait)
    assert exc.value.code == ExitCode.CONFIG and "--lock-wait" in exc.value.what and not remote.commands


# --- item 3: the holder's own limits are stored -----------------------------------------------------

def test_holder_file_stores_the_holders_heartbeat_and_stale_after(make_session, settings):
    s, remote = make_session([(ACQUIRE, "acquired\n"), (RELEASE, "released\n")], settings=settings)
    lock = DeployLock(s, "deploy")
    lock.__enter__()
    lock.release()
    body = json.loads(shlex.split(remote.commands[0].split("printf '%s\\n' ", 1)[1])[0])
    assert body["lock_heartbeat"] == settings.lock_heartbeat and body["lock_stale_after"] == settings.lock_stale_after


# --- the flow: stop at the next step boundary, never touch the services without the lock -------

def records(remote):
    out = []
    for c in remote.commands:
        if "releases.jsonl" in c and ">>" in c:
            out.extend(json.loads(w) for w in shlex.shlex(c, posix=True, punctuation_chars=True) if w.startswith('{"'))
    return out


@pytest.fixture
def locked_flow(make_session, mocker):
    """run_flow with the real DeployLock; ``host["ours"] = False`` hands the lock to someone else."""
    host = {"ours": True}

    def beat(cmd):
        return Result(exited=0 if host["ours"] else 3)

    def status(cmd):
        return Result(stdout=OTHER_HOLDER + "\nclock 1000 999 990\n")
    s, remote = make_session([(ACQUIRE, "acquired\n"), (BEAT, beat), (STATUS, status), (RELEASE, "released\n")])
    calls = []
    mocker.patch.object(flow_mod, "notify", return_value=(True, "posted"))
    observed = iter([Observation(BEFORE, True, "v1"), Observation(AFTER, True, "v2"), Observation(AFTER, False, "v2")])
    mocker.patch.object(flow_mod, "observe", side_effect=lambda s: next(observed))

    def run(lose_during=None, fail=None):
        def fake(step):
            def work(s, o):
                calls.append(step.name)
                if step.switches:
                    s.state.services_touched = True
                if step.name == lose_during:
                    host["ours"] = False
                if fail and step.name in fail:
                    raise fail[step.name]
            return dataclasses.replace(step, run=work)
        flow_mod.run_flow(s, [fake(x) for x in deploy_mod.DEPLOY_STEPS], RunOptions("deploy"))
    s.run_deploy = run
    return s, remote, calls


def test_a_run_that_lost_its_lock_stops_before_services_and_keeps_the_other_lock(locked_flow, mocker):
    s, remote, calls = locked_flow
    restore = mocker.patch.object(flow_mod, "restore")
    with pytest.raises(DeployError) as exc:
        s.run_deploy(lose_during="migrate")
    assert calls == ["checklist", "prepare", "pull", "migrate"]           # services never ran
    assert exc.value.code == ExitCode.LOCKED and "stopped before services" in exc.value.what
    restore.assert_not_called()
    end = records(remote)[-1]
    assert end["event"] == "end" and end["outcome"] == "failed" and end["error"]["exit_code"] == 6
    assert not any("then rm -rf" in c for c in remote.commands)


def test_auto_rollback_is_not_run_by_a_run_that_lost_its_lock(locked_flow, mocker):
    s, remote, calls = locked_flow
    restore = mocker.patch.object(flow_mod, "restore", return_value=BEFORE)
    err = DeployError("backend unhealthy", code=ExitCode.UNHEALTHY, step="services › health wait")
    with pytest.raises(DeployError) as exc:
        s.run_deploy(lose_during="services", fail={"services": err})
    restore.assert_not_called()
    assert exc.value.code == ExitCode.LOCKED and "automatic rollback was NOT run" in exc.value.what
    assert "fab -H deploy@prod lock" in exc.value.next_step
    assert records(remote)[-1]["outcome"] == "failed"


def test_abort_does_not_restore_the_services_without_the_lock(locked_flow, mocker):
    s, remote, calls = locked_flow
    mocker.patch.object(type(s), "kill_running")
    restore = mocker.patch.object(flow_mod, "restore", return_value=BEFORE)
    with pytest.raises(KeyboardInterrupt):
        s.run_deploy(lose_during="services",
                            fail={"services": KeyboardInterrupt()})
    restore.assert_not_called()
    assert records(remote)[-1]["outcome"] == "aborted"
    assert not any("then rm -rf" in c for c in remote.commands)


def test_a_lock_lost_in_the_last_step_is_not_reported_as_success(locked_flow):
    s, remote, calls = locked_flow
    with pytest.raises(DeployError) as exc:
        s.run_deploy(lose_during="verify")
    assert exc.value.code == ExitCode.LOCKED and records(remote)[-1]["outcome"] == "failed"


def test_a_run_that_keeps_its_lock_proves_it_at_every_boundary_and_releases_it(locked_flow):
    s, remote, calls = locked_flow
    s.run_deploy()
    assert calls == [x.name for x in deploy_mod.DEPLOY_STEPS] and records(remote)[-1]["outcome"] == "success"
    assert len(beats_of(remote)) >= len(deploy_mod.DEPLOY_STEPS) + 1
    assert any("then rm -rf" in c for c in remote.commands)


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_deploy_lock_wait_nan_or_inf_exits_2_with_a_block(mocker, capsys, value):
    from invoke import Exit, MockContext

    from tasks import base
    from tasks.conftest import Remote, hermetic_config
    remote = Remote([])
    cxn = mocker.Mock()

    def counted(command, **kwargs):          # an endless wait fails the test instead of hanging it
        if len(remote.commands) >= 60:
            raise RuntimeError("more than 60 remote commands: the lock loop does not end")
        return remote(command, **kwargs)
    cxn.run.side_effect = counted
    mocker.patch.object(base, "connect", return_value=cxn)
    with pytest.raises(Exit) as exc:
        deploy_mod.deploy(MockContext(config=hermetic_config()), lock_wait=float(value), stage="production")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--lock-wait must be a finite number of seconds" in err and "Traceback" not in err
    assert not any("echo acquired" in c for c in remote.commands)      # the lock was never requested



@pytest.mark.parametrize("answer, said", [
    ("free\n", "(it is free)"),
    (OTHER_HOLDER + "\nclock 1000 995 900\n", "(it is held by other@laptop"),
])
def test_a_dry_run_takes_no_lock_and_says_whether_one_is_held(make_session, settings, capsys, answer, said):
    s, remote = make_session([(STATUS, answer), (r"echo free", answer)], settings=fast(settings), dry=True)
    with DeployLock(s, "deploy") as lock:
        lock.ensure_held("checklist")                  # nothing was taken: nothing to prove
    assert f"[dry] would take the deploy lock {said}" in capsys.readouterr().out
    assert remote.commands == [lock_cmd.status(s.settings.lock_dir)]      # one read; nothing taken or released
    assert not lock.held and not lock.lost
