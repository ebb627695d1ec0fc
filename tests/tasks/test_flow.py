"""The order of steps for deploy and rollback, and that a failing step stops the flow with the
error block. The steps themselves are replaced; the flow (lock, record, timing, auto-rollback) is real."""
import dataclasses
import json

import pytest

from tasks import flow as flow_mod
from tasks.deploy import DEPLOY_STEPS
from tasks.errors import DeployError, ExitCode
from tasks.rollback import ROLLBACK_STEPS
from tasks.runstate import Observation
from tasks.steps import RunOptions

BEFORE = {"backend": {"ref": "reg/backend:latest", "id": "sha256:" + "1" * 64, "digests": []}}
AFTER = {"backend": {"ref": "reg/backend:latest", "id": "sha256:" + "2" * 64, "digests": []}}


class FakeLock:
    instances = []

    def __init__(self, s, task, message="", wait=None):
        self.task, self.released, self.entered, self.s = task, 0, False, s
        FakeLock.instances.append(self)

    def __enter__(self):
        self.entered = True
        return self

    def __exit__(self, *exc):
        self.release()

    def release(self):
        self.s.recorder.flush()         # as DeployLock.release: the record's last lines first
        self.released += 1

    def ensure_held(self, before):
        pass


@pytest.fixture
def flow(make_session, mocker):
    FakeLock.instances = []
    s, remote = make_session()
    calls = []
    mocker.patch.object(flow_mod, "DeployLock", FakeLock)
    mocker.patch.object(flow_mod, "notify", return_value=(True, "posted"))
    observed = iter([Observation(BEFORE, True, "v1"), Observation(AFTER, True, "v2"), Observation(AFTER, True, "v2")])
    mocker.patch.object(flow_mod, "observe", side_effect=lambda s: next(observed))
    return s, remote, calls


def run(flow, steps, kind, fail=None, **opts):
    """The real engine over the real step list, each step's work replaced by a recorder of its name
    (a step that switches the services marks them touched, as `up` does)."""
    s, remote, calls = flow

    def fake(step):
        def work(s, o):
            calls.append(step.name)
            if step.switches or step.name == "services":
                s.state.services_touched = True
            if fail and step.name in fail:
                raise fail[step.name]
        return dataclasses.replace(step, run=work)
    flow_mod.run_flow(s, [fake(x) for x in steps], RunOptions(kind, **opts))


def records(remote):
    """The release-record lines the flow appended on the host."""
    import shlex
    out = []
    for c in remote.commands:
        if "releases.jsonl" in c and ">>" in c:
            out.extend(json.loads(w) for w in shlex.shlex(c, posix=True, punctuation_chars=True) if w.startswith('{"'))
    return out


def test_deploy_runs_the_runbook_in_order_and_records_it(flow):
    s, remote, calls = flow
    run(flow, DEPLOY_STEPS, "deploy")
    assert calls == ["checklist", "prepare", "pull", "migrate", "services", "verify"]
    evs = records(remote)
    assert [e["event"] for e in evs][:2] == ["start", "step"]
    assert evs[-1]["event"] == "end" and evs[-1]["outcome"] == "success"
    assert any(e["event"] == "images_before" and e["images"] == BEFORE and e["healthy"] for e in evs)
    assert any(e["event"] == "images_after" and e["images"] == AFTER for e in evs)
    steps = [e["step"] for e in evs if e["event"] == "step" and e["sub"] is None]
    assert steps == ["start", "checklist", "prepare", "pull", "migrate", "services", "verify"]
    assert FakeLock.instances[0].released == 1


def test_failing_step_stops_the_flow_and_is_recorded(flow):
    s, remote, calls = flow
    err = DeployError("alembic upgrade head failed", kind="database", step="migrate › alembic")
    with pytest.raises(DeployError) as exc:
        run(flow, DEPLOY_STEPS, "deploy", fail={"migrate": err})
    assert calls == ["checklist", "prepare", "pull", "migrate"]
    assert exc.value.step == "migrate › alembic" and exc.value.code == ExitCode.STEP_FAILED
    end = records(remote)[-1]
    assert end["event"] == "end" and end["outcome"] == "failed" and end["error"]["step"] == "migrate › alembic"
    assert FakeLock.instances[0].released == 1


def test_health_failure_after_up_rolls_back_automatically(flow, mocker):
    s, remote, calls = flow
    restore = mocker.patch.object(flow_mod, "restore", return_value=BEFORE)
    mocker.patch.object(flow_mod, "smoke_checks", return_value=[])
    err = DeployError("backend unhealthy", code=ExitCode.UNHEALTHY, step="services › health wait")
    with pytest.raises(DeployError) as exc:
        run(flow, DEPLOY_STEPS, "deploy", fail={"services": err})
    assert calls == ["checklist", "prepare", "pull", "migrate", "services"]
    restore.assert_called_once()
    assert restore.call_args.args[1] == BEFORE
    assert exc.value.code == ExitCode.ROLLED_BACK and "restored automatically" in exc.value.what
    assert "PREVIOUS version" in exc.value.state
    end = records(remote)[-1]
    assert end["outcome"] == "rolled_back"


def test_failed_auto_rollback_says_neither_version_is_healthy(flow, mocker):
    s, remote, calls = flow
    mocker.patch.object(flow_mod, "restore", side_effect=DeployError("rollback unhealthy", code=ExitCode.UNHEALTHY))
    err = DeployError("smoke failed", code=ExitCode.UNHEALTHY, step="verify › smoke")
    with pytest.raises(DeployError) as exc:
        run(flow, DEPLOY_STEPS, "deploy", fail={"verify": err})
    assert exc.value.code == ExitCode.ROLLBACK_FAILED and "NEITHER" in exc.value.state


def test_pull_failure_restarts_nothing_and_does_not_roll_back(flow, mocker):
    s, remote, calls = flow
    restore = mocker.patch.object(flow_mod, "restore")
    err = DeployError("pull failed", code=ExitCode.STEP_FAILED, step="pull")
    with pytest.raises(DeployError) as exc:
        run(flow, DEPLOY_STEPS, "deploy", fail={"pull": err})
    assert calls == ["checklist", "prepare", "pull"]
    restore.assert_not_called()
    assert exc.value.code == ExitCode.STEP_FAILED


def test_auto_rollback_can_be_turned_off(flow, mocker, settings):
    import dataclasses
    s, remote, calls = flow
    s.settings = dataclasses.replace(settings, auto_rollback=False)
    restore = mocker.patch.object(flow_mod, "restore")
    err = DeployError("unhealthy", code=ExitCode.UNHEALTHY, step="services › health wait")
    with pytest.raises(DeployError) as exc:
        run(flow, DEPLOY_STEPS, "deploy", fail={"services": err})
    restore.assert_not_called()
    assert exc.value.code == ExitCode.UNHEALTHY


def test_rollback_flow_order(flow):
    s, remote, calls = flow
    run(flow, ROLLBACK_STEPS, "rollback")
    assert calls == ["rollback", "verify"]
    assert records(remote)[0]["kind"] == "rollback"


def test_interrupt_kills_remote_commands_records_aborted_and_unlocks(flow, mocker):
    s, remote, calls = flow
    kill = mocker.patch.object(type(s), "kill_running")
    with pytest.raises(KeyboardInterrupt):
        run(flow, DEPLOY_STEPS, "deploy", fail={"prepare": KeyboardInterrupt()})
    kill.assert_called_once()
    assert records(remote)[-1]["outcome"] == "aborted"
    assert FakeLock.instances[0].released == 1


def test_timing_table_and_bottleneck_are_printed(flow, capsys):
    s, remote, calls = flow
    run(flow, DEPLOY_STEPS, "deploy")
    out = capsys.readouterr().out
    assert "[1/6] checklist ..." in out and "[6/6] verify ..." in out
    assert "Bottleneck:" in out and "Outcome: SUCCESS" in out


def test_unhealthy_rollback_target_is_a_failed_rollback(flow):
    s, remote, calls = flow
    err = DeployError("the rolled-back services did not become healthy", code=ExitCode.UNHEALTHY, step="rollback")
    with pytest.raises(DeployError) as exc:
        run(flow, ROLLBACK_STEPS, "rollback", fail={"rollback": err})
    assert exc.value.code == ExitCode.ROLLBACK_FAILED and calls == ["rollback"]
    assert records(remote)[-1]["outcome"] == "failed"


def test_interrupt_after_the_switch_restores_the_previous_images(flow, mocker):
    s, remote, calls = flow
    mocker.patch.object(type(s), "kill_running")
    restore = mocker.patch.object(flow_mod, "restore", return_value=BEFORE)
    with pytest.raises(KeyboardInterrupt):
        run(flow, DEPLOY_STEPS, "deploy", fail={"services": KeyboardInterrupt()})
    restore.assert_called_once()
    assert restore.call_args.args[1] == BEFORE
    assert records(remote)[-1]["outcome"] == "aborted"
    assert FakeLock.instances[0].released == 1


def test_a_failed_command_in_a_step_becomes_its_error_block_and_is_recorded(flow):
    from tasks.errors import CommandFailed
    s, remote, calls = flow
    failed = CommandFailed("docker compose pull backend", 1, "", "manifest unknown")
    with pytest.raises(DeployError) as exc:
        run(flow, DEPLOY_STEPS, "deploy", fail={"pull": failed})
    err = exc.value
    assert err.what.startswith("a command of step pull failed: ") and err.step == "pull"
    assert err.command == "docker compose pull backend" and "manifest unknown" in err.output
    assert err.code == ExitCode.STEP_FAILED and err.next_step.startswith("fab -H deploy@prod status")
    assert s.state.failed_step == "pull" and calls == ["checklist", "prepare", "pull"]
    assert records(remote)[-1]["error"]["command"] == "docker compose pull backend"


def test_a_bug_in_a_step_is_still_recorded_and_the_lock_released(flow):
    s, remote, calls = flow
    with pytest.raises(ZeroDivisionError):
        run(flow, DEPLOY_STEPS, "deploy", fail={"migrate": ZeroDivisionError("division by zero")})
    end = records(remote)[-1]
    assert end["outcome"] == "failed" and end["error"]["exit_code"] == ExitCode.BUG
    assert end["error"]["what"] == "unexpected error: ZeroDivisionError: division by zero"
    assert FakeLock.instances[0].released == 1


@pytest.mark.parametrize("reconnected, detail", [
    (True, "the SSH connection was re-established; this run's commands still running on the host were stopped"),
    (False, "the host is unreachable: the deploy lock stays until its heartbeat is"),
])
def test_a_lost_connection_stops_this_runs_commands_or_says_the_host_is_unreachable(flow, mocker, reconnected, detail):
    s, remote, calls = flow
    kill = mocker.patch.object(type(s), "kill_running", return_value=reconnected)
    mocker.patch.object(flow_mod, "restore", return_value=BEFORE)
    lost = DeployError("lost the SSH connection to deploy@prod (EOFError: )", code=ExitCode.CONNECTION)
    with pytest.raises(DeployError) as exc:
        run(flow, DEPLOY_STEPS, "deploy", fail={"prepare": lost})
    kill.assert_called_once()
    assert [d for d in exc.value.details if d.startswith(detail)]


def test_json_out_prints_the_release_record_at_the_end(flow, capsys):
    s, remote, calls = flow
    run(flow, DEPLOY_STEPS, "deploy", json_out=True)
    out = capsys.readouterr().out
    release = json.loads(out[out.index("{"):])
    assert release["outcome"] == "success" and release["kind"] == "deploy"


def test_ctrl_c_during_the_auto_rollback_still_cleans_up_and_records_the_end(flow, mocker):
    """Ctrl-C while the auto-rollback restores (a DeployError being handled): the same clean-up as
    any Ctrl-C (the running command settled, the others stopped, the previous images put back,
    ``aborted`` recorded), not an exit without the record's end line."""
    s, remote, calls = flow
    kill = mocker.patch.object(type(s), "kill_running")
    restore = mocker.patch.object(flow_mod, "restore", side_effect=[KeyboardInterrupt(), BEFORE])
    err = DeployError("backend unhealthy", code=ExitCode.UNHEALTHY, step="services › health wait")
    with pytest.raises(KeyboardInterrupt):
        run(flow, DEPLOY_STEPS, "deploy", fail={"services": err})
    kill.assert_called_once()
    assert restore.call_count == 2
    assert records(remote)[-1]["event"] == "end" and records(remote)[-1]["outcome"] == "aborted"
    assert FakeLock.instances[0].released == 1
