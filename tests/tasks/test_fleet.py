"""The fleet engine (tasks/fleet.py) over fake hosts: the host flows are replaced by a runner of
the fleet's own step lists (so the migration gate, the lock boundaries and the policy are real);
the locks, connections and the final observation are fakes that record what happened."""
import dataclasses
import json
import os
import re
import signal
import threading
import types

import pytest
from invoke import Exit

from commands.timing import Timer
from config import load_settings
from tasks import fleet as fleet_mod
from tasks import fleetdeploy, interrupts, ui
from tasks.errors import DeployError, ExitCode
from tasks.runstate import Observation
from tasks.steps import RunOptions, Step
from tests.conftest import NO_SANDBOX

HOSTS = ("a", "b", "c")


class Log:
    def __init__(self):
        self.events, self.mutex = [], threading.Lock()

    def add(self, *event):
        with self.mutex:
            self.events.append(event)

    def of(self, kind):
        return [e[1:] for e in self.events if e[0] == kind]


class FakeLock:
    refuse: set = set()
    log: Log = None

    def __init__(self, s, task, message="", wait=None):
        self.host = s.host

    def __enter__(self):
        if self.host in FakeLock.refuse:
            raise DeployError("another deploy holds the lock", code=ExitCode.LOCKED, state="nothing was changed by this run")
        FakeLock.log.add("lock", self.host)
        return self

    def __exit__(self, *exc):
        FakeLock.log.add("unlock", self.host)

    def ensure_held(self, before):
        pass


@pytest.fixture
def world(mocker, capsys):
    log = Log()
    FakeLock.log, FakeLock.refuse = log, set()
    fail: dict = {}          # (host, step) -> DeployError or BaseException to raise there

    def fake_flow(s, steps, opts, rid="", held=None):
        log.add("flow", s.host, opts.kind, rid)
        log.add("json_out", s.host, opts.json_out)
        try:
            for step in steps:
                held.ensure_held(step.name)
                log.add("step", s.host, step.name)
                ui.say(f"{step.name} ...\n  a second line")
                step.run(s, opts)
        except DeployError as err:
            if err.code == ExitCode.ROLLED_BACK:
                log.add("rolled_back", s.host)
            raise
        except KeyboardInterrupt:
            log.add("aborted", s.host)
            raise

    def step(name):
        def work(s, o):
            exc = fail.get((s.host, name))
            if exc is not None:
                raise exc() if callable(exc) else exc
        return work

    sessions = {h: types.SimpleNamespace(host=h, timer=Timer(), state=None, dry=False, settings=None, close=lambda: None)
                for h in HOSTS}
    mocker.patch.object(fleet_mod.flow, "run_flow", side_effect=fake_flow)
    mocker.patch.object(fleetdeploy, "DeployLock", FakeLock)
    mocker.patch.object(fleetdeploy, "open_sessions", side_effect=lambda c, st, order, acc: {h: sessions[h] for h in order})
    mocker.patch.object(fleetdeploy, "observe", side_effect=lambda s: Observation({}, True, serving(log, s.host)))
    mocker.patch.object(fleet_mod, "ROLLBACK_STEPS", (Step("rollback", step("rollback"), switches=True),))
    steps = (Step("checklist", step("checklist")), Step("pull", step("pull")), Step("migrate", step("migrate")),
             Step("services", step("services"), recoverable=True, switches=True), Step("verify", step("verify")))

    def run(policy="revert", batch="100%", json=False, **keys):
        st = dataclasses.replace(load_settings("staging", NO_SANDBOX), hosts=HOSTS, failure_policy=policy, batch_size=batch,
                                 batch_wait=0.0, **keys)
        for s in sessions.values():
            s.settings = st
        code = 0
        ui.set_json_mode(json)          # as the task wrapper does for --json: progress to stderr
        try:
            fleetdeploy.deploy_fleet(types.SimpleNamespace(config=None), st, "test", HOSTS, False, steps,
                                     RunOptions("deploy", json_out=json))
        except Exit as e:
            code = e.code
        finally:
            ui.set_json_mode(False)
        out = capsys.readouterr()
        w.stdout = out.out
        return code, out.out + out.err

    w = types.SimpleNamespace(run=run, log=log, fail=fail, stdout="")
    return w


def serving(log, host):
    switched = (host, "services") in log.of("step") and host not in reverted(log) and (host,) not in log.of("rolled_back")
    return "v2" if switched else "v1"


def table(out):
    """The fleet table's rows: host -> (outcome, version serving)."""
    lines = out[out.index("host "):out.index("Fleet:")].splitlines()[2:]
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines if line.strip()]
    return {r[0]: (r[1], r[2]) for r in rows}


def reverted(log):
    return {e[0] for e in log.of("flow") if e[1] == "rollback"}


def test_every_host_switched_once_the_migration_ran_once_one_release_id(world):
    code, out = world.run()
    assert code == 0
    log = world.log
    assert [h for h, name in log.of("step") if name == "migrate"] == ["a"]
    assert {rid for _, kind, rid in log.of("flow")} == {log.of("flow")[0][2]}, "one fleet release id"
    first_flow = log.events.index(next(e for e in log.events if e[0] == "flow"))
    assert [e[0] for e in log.events[:first_flow]] == ["lock"] * 3, "every lock before anything runs"
    assert sorted(h for (h,) in log.of("unlock")) == list(HOSTS)
    for h in HOSTS:
        assert f"[{h}] services ...\n" in out and f"[{h}]   a second line\n" in out, "every line prefixed with its host"
    assert "the fleet serves one version: v2" in out


def test_the_others_switch_only_after_the_migration(world):
    world.run()
    steps = world.log.events
    migrated = steps.index(("step", "a", "migrate"))
    for h in ("b", "c"):
        assert steps.index(("step", h, "services")) > migrated
        assert steps.index(("step", h, "await migration")) < steps.index(("step", h, "services"))


def test_a_failed_migration_switches_no_host(world):
    world.fail[("a", "migrate")] = DeployError("alembic failed", code=ExitCode.STEP_FAILED, state="old version")
    code, out = world.run(policy="continue")
    assert code == ExitCode.STEP_FAILED
    assert [h for h, name in world.log.of("step") if name == "services"] == []
    assert "not switched: the migration on a did not succeed" in out


def test_one_lock_refused_keeps_none_and_runs_nothing(world):
    FakeLock.refuse = {"c"}
    code, out = world.run()
    assert code == ExitCode.LOCKED
    assert world.log.of("step") == []
    assert sorted(world.log.of("lock")) == sorted(world.log.of("unlock")) == [("a",), ("b",)]
    assert "the locks taken on a, b are released" in out


def failing_b():
    return DeployError("health failed", code=ExitCode.ROLLED_BACK, state="serving the previous version")


def test_rolling_revert_puts_the_switched_hosts_back_and_starts_no_new_batch(world):
    world.fail[("b", "verify")] = failing_b
    code, out = world.run(policy="revert", batch="1")
    assert code == ExitCode.ROLLED_BACK
    assert reverted(world.log) == {"a"}
    assert [h for h, kind, _ in world.log.of("flow") if kind == "deploy"] == ["a", "b"], "c is not started"
    assert table(out) == {"a": ("reverted", "v1"), "b": ("rolled_back", "v1"), "c": ("not started", "v1")}
    assert "the fleet serves one version: v1" in out


def test_rolling_stop_leaves_the_switched_hosts_on_the_new_version(world):
    world.fail[("b", "verify")] = failing_b
    code, out = world.run(policy="stop", batch="1")
    assert code == ExitCode.ROLLED_BACK
    assert reverted(world.log) == set()
    assert table(out) == {"a": ("success", "v2"), "b": ("rolled_back", "v1"), "c": ("not started", "v1")}
    assert "the fleet does NOT serve one known version" in out


def test_continue_tries_every_host(world):
    world.fail[("b", "verify")] = failing_b
    code, _ = world.run(policy="continue", batch="1")
    assert code == ExitCode.ROLLED_BACK
    assert [h for h, kind, _ in world.log.of("flow")] == ["a", "b", "c"]


def test_sigterm_mid_fleet_reaches_every_host_and_releases_every_lock(world, mocker):
    def terminate(s, o):
        os.kill(os.getpid(), signal.SIGTERM)       # interrupts.handled() turns it into Terminated in the main thread
        while fleet_state["fleet"].interrupt is None:
            threading.Event().wait(0.01)
    fleet_state = {}
    real = fleetdeploy.Fleet
    mocker.patch.object(fleetdeploy, "Fleet", side_effect=lambda *a, **k: fleet_state.setdefault("fleet", real(*a, **k)))
    mocker.patch.object(fleet_mod, "host_steps", side_effect=lambda f, h, steps: (
        [Step("checklist", terminate if h == "a" else steps[0].run), *steps[1:]]))
    with interrupts.handled():
        code, out = world.run(batch="100%")
    assert code == ExitCode.TERMINATED
    assert ("aborted", "a") in world.log.events, (world.log.events, out)
    assert [s for h, s in world.log.of("step") if h == "a"] == ["checklist"]
    assert table(out)["a"][0] == "aborted"
    assert sorted(h for (h,) in world.log.of("unlock")) == list(HOSTS)


def test_deploy_json_on_a_fleet_is_one_document_in_hosts_order(world):
    """Each host's flow prints nothing to stdout (its own --json is off); the fleet prints one
    document: the release, the exit code, every host's outcome and error."""
    world.fail[("b", "services")] = failing_b
    code, out = world.run(policy="continue", json=True)
    doc = json.loads(world.stdout)
    assert {e[1] for e in world.log.of("json_out")} == {False}
    assert doc["release"] == world.log.of("flow")[0][2] and doc["exit_code"] == code == ExitCode.ROLLED_BACK
    assert [(h["host"], h["outcome"], h["exit_code"]) for h in doc["hosts"]] == [
        ("a", "success", 0), ("b", "rolled_back", ExitCode.ROLLED_BACK), ("c", "success", 0)]
    assert doc["hosts"][1]["error"]["what"] == "health failed"


def test_deploy_json_with_a_lock_refused_still_prints_one_document(world):
    FakeLock.refuse = {"c"}
    code, out = world.run(json=True)
    doc = json.loads(world.stdout)
    assert code == doc["exit_code"] == ExitCode.LOCKED
    assert [h["outcome"] for h in doc["hosts"]] == ["not started"] * 3
    assert doc["hosts"][2]["error"]["exit_code"] == ExitCode.LOCKED
