"""`fab rollback` on several HOSTS (tasks/fleetrollback.py) over fake hosts: the records, the
images running, the locks and the flows are fakes that record what happened; the target choice
(commands/fleetrollback.py), the lock-all-first, the fleet engine and the report are real."""
import json
import types

import pytest
from invoke import Exit, MockContext

from commands import record
from commands.timing import Timer
from config import load_settings
from tasks import fleet as fleet_mod
from tasks import fleetdeploy, fleetrollback, ui
from tasks.errors import DeployError, ExitCode
from tasks.rollback import rollback
from tasks.steps import Step
from tests.commands.test_fleet_rollback_plan import F1, LATER, V1, V2, V3, rel
from tests.tasks.conftest import hermetic_config
from tests.tasks.test_fleet import FakeLock, Log
from tests.tasks.test_fleet import table as fleet_table

HOSTS = ("a", "b", "c")


def table(out):
    """The fleet table's rows: host -> (outcome, version serving)."""
    return fleet_table(out[out.index("\nhost ") + 1:])


def rels(*chunks):
    return record.releases(record.parse("\n".join(line for c in chunks for line in c)))


@pytest.fixture
def world(mocker, monkeypatch, capsys):
    log = Log()
    FakeLock.log, FakeLock.refuse = log, set()
    hosts = {}                       # host -> {"rels": [...], "now": images}
    fail = {}                        # host -> DeployError its rollback step raises

    def fake_flow(s, steps, opts, rid="", held=None):
        log.add("flow", s.host, opts.kind, rid)
        s.recorder = types.SimpleNamespace(lines=[json.loads(record.line(rid, "start", kind="rollback", stage="production",
                                                                           host=s.host, who="me"))])
        for step in steps:
            held.ensure_held(step.name)
            step.run(s, opts)

    def planned(target, source):
        def run(s, opts):
            if s.host in fail:
                raise fail[s.host]
            log.add("switched", s.host, target["backend"]["id"])
            hosts[s.host]["now"] = target
        return (Step("rollback", run, switches=True),)

    st = load_settings("production", {})
    sessions = {h: types.SimpleNamespace(host=h, timer=Timer(), state=None, dry=False, settings=st, close=lambda: None)
                for h in HOSTS}
    mocker.patch.object(fleet_mod.flow, "run_flow", side_effect=fake_flow)
    mocker.patch.object(fleetdeploy, "DeployLock", FakeLock)
    mocker.patch.object(fleetrollback, "open_sessions", side_effect=lambda c, st, order, acc: {h: sessions[h] for h in order})
    mocker.patch.object(fleetrollback, "current_images", side_effect=lambda s: log.add("read", s.host) or hosts[s.host]["now"])
    mocker.patch.object(fleetrollback, "load_releases", side_effect=lambda s: hosts[s.host]["rels"])
    mocker.patch.object(fleetrollback, "planned_steps", side_effect=planned)
    version = {V1["backend"]["id"]: "v1", V2["backend"]["id"]: "v2", V3["backend"]["id"]: "v3"}
    mocker.patch.object(fleetrollback, "serving_versions",
                        side_effect=lambda fleet: {h: version[hosts[h]["now"]["backend"]["id"]] for h in fleet.sessions})
    monkeypatch.setenv("DEPLOY_HOSTS", ",".join(HOSTS))

    def run(**options):
        code = 0
        try:
            rollback(MockContext(config=hermetic_config()), stage="production", **options)
        except Exit as e:
            code = e.code
        out, err = capsys.readouterr()
        return code, out, err

    yield types.SimpleNamespace(run=run, log=log, hosts=hosts, fail=fail)
    ui.set_json_mode(False)         # --json switched it on for the process: the tests after this one call run_flow directly


def stopped_half_way(world):
    """Fleet release F2 switched a only: b rolled itself back, c never started."""
    world.hosts.update({"a": {"rels": rels(rel(*F1), rel("F2", V2, V3, when=LATER)), "now": V3},
                        "b": {"rels": rels(rel(*F1), rel("F2", V2, V2, outcome="rolled_back", when=LATER)), "now": V2},
                        "c": {"rels": rels(rel(*F1)), "now": V2}})


def test_fleet_rollback_locks_every_host_first_and_brings_the_fleet_to_one_version(world):
    stopped_half_way(world)
    code, out, err = world.run()
    assert code == 0, err
    log = world.log
    assert [e[0] for e in log.events[:3]] == ["lock"] * 3, "every lock before anything is read or changed"
    assert log.of("switched") == [("a", V2["backend"]["id"])], "only a moves; b and c already serve V2"
    assert sorted(h for (h,) in log.of("unlock")) == list(HOSTS)
    assert table(out) == {"a": ("success", "v2"), "b": ("unchanged", "v2"), "c": ("unchanged", "v2")}
    assert "every host succeeded; the fleet serves one version: v2" in out


def test_a_fleet_release_is_rolled_back_everywhere_under_one_release_id(world):
    world.hosts.update({h: {"rels": rels(rel(*F1)), "now": V2} for h in HOSTS})
    code, out, err = world.run()
    assert code == 0, err
    assert sorted(world.log.of("switched")) == [(h, V1["backend"]["id"]) for h in HOSTS]
    rids = {rid for _, kind, rid in world.log.of("flow")}
    assert len(rids) == 1 and [kind for _, kind, _ in world.log.of("flow")] == ["rollback"] * 3
    assert "the fleet serves one version: v1" in out


def test_one_lock_refused_changes_nothing_anywhere(world):
    stopped_half_way(world)
    FakeLock.refuse = {"c"}
    code, out, err = world.run()
    assert code == ExitCode.LOCKED
    assert world.log.of("read") == [] and world.log.of("flow") == [], "nothing read, nothing changed"
    assert sorted(world.log.of("lock")) == sorted(world.log.of("unlock")) == [("a",), ("b",)]
    assert "nothing was changed on any host; the locks taken on a, b are released" in " ".join(err.split())


def test_records_that_disagree_change_nothing_and_exit_8(world):
    world.hosts.update({"a": {"rels": rels(rel(*F1), rel("F2", V2, V3, when=LATER)), "now": V3},
                        "b": {"rels": rels(rel(*F1), rel("F2", V2, V3, when=LATER)), "now": V3},
                        "c": {"rels": rels(rel("F0", V3, V1)), "now": V1}})
    code, out, err = world.run()
    assert code == ExitCode.ROLLBACK_FAILED
    assert world.log.of("flow") == []
    flat = " ".join(err.split())
    assert "records disagree" in flat and "not recorded as healthy on c" in flat
    assert "nothing was changed on any host" in flat
    assert sorted(h for (h,) in world.log.of("unlock")) == list(HOSTS)


def test_one_hosts_rollback_failing_the_others_are_still_rolled_back_exit_8(world):
    world.hosts.update({h: {"rels": rels(rel(*F1)), "now": V2} for h in HOSTS})
    world.fail["b"] = DeployError("restore failed", code=ExitCode.ROLLBACK_FAILED, state="b serves nothing healthy")
    code, out, err = world.run()
    assert code == ExitCode.ROLLBACK_FAILED
    assert sorted(h for h, _ in world.log.of("switched")) == ["a", "c"]
    assert table(out) == {"a": ("success", "v1"), "b": ("failed", "v2"), "c": ("success", "v1")}
    assert "✗ FAILED" in err and "on b" in err and "the fleet does NOT serve one known version" in out


def test_rollback_to_is_resolved_on_every_host_before_any_changes(world, mocker):
    world.hosts.update({h: {"rels": [], "now": V2} for h in HOSTS})

    def resolve(s, to, current):
        if s.host == "c":
            raise DeployError("no valid rollback target: image v1 is not on the host", code=ExitCode.ROLLBACK_FAILED)
        return V1, "image v1"
    mocker.patch.object(fleetrollback, "resolve_target", side_effect=resolve)
    code, out, err = world.run(to="v1")
    assert code == ExitCode.ROLLBACK_FAILED
    assert world.log.of("flow") == []
    assert "✗ FAILED on c" in err and err.count("✗ FAILED") == 1
    assert "image v1 is not on the host" in err and "nothing was changed on any host" in " ".join(err.split())
    mocker.patch.object(fleetrollback, "resolve_target", side_effect=lambda s, to, cur: (V1, "image v1"))
    code, out, err = world.run(to="v1")
    assert code == 0, err
    assert sorted(h for h, _ in world.log.of("switched")) == list(HOSTS)


def test_fleet_rollback_json_is_one_document(world):
    stopped_half_way(world)
    code, out, err = world.run(json=True)
    assert code == 0, err
    doc = json.loads(out)
    assert [(h["host"], h["outcome"]) for h in doc["hosts"]] == [("a", "success"), ("b", "unchanged"), ("c", "unchanged")]
    assert doc["hosts"][0]["record"]["id"] == doc["release"] and doc["hosts"][1]["record"] is None
    assert doc["exit_code"] == 0


def test_fleet_rollback_refused_under_json_still_prints_one_document(world):
    world.hosts.update({"a": {"rels": rels(rel("F1", V1, V2), rel("F2", V2, V3, when=LATER)), "now": V3},
                        "b": {"rels": rels(rel("F1", V1, V2), rel("F2", V2, V3, when=LATER)), "now": V3},
                        "c": {"rels": rels(rel("F0", V3, V1)), "now": V1}})
    code, out, err = world.run(json=True)
    assert code == ExitCode.ROLLBACK_FAILED and world.log.of("flow") == []
    doc = json.loads(out)
    assert doc["exit_code"] == ExitCode.ROLLBACK_FAILED
    assert [(h["host"], h["outcome"]) for h in doc["hosts"]] == [("a", "not started"), ("b", "not started"), ("c", "not started")]
    assert any(h["error"] for h in doc["hosts"]) or doc.get("error")


def test_a_host_whose_read_raises_something_unexpected_refuses_with_an_error_block_not_a_traceback(world, mocker):
    world.hosts.update({h: {"rels": rels(rel("F1", V1, V2)), "now": V2} for h in ("a", "b", "c")})

    def load(s):
        if s.host == "b":
            raise ValueError("corrupt record line 3")
        return world.hosts[s.host]["rels"]
    mocker.patch.object(fleetrollback, "load_releases", side_effect=load)
    code, out, err = world.run()
    assert code == ExitCode.BUG and world.log.of("flow") == []
    assert "✗ FAILED at rollback on b" in err and "corrupt record line 3" in err and "Traceback" not in err
    assert sorted(h for (h,) in world.log.of("unlock")) == ["a", "b", "c"]


def test_fleet_rollback_lock_refused_under_json_still_prints_one_document(world):
    stopped_half_way(world)
    FakeLock.refuse = {"c"}
    code, out, err = world.run(json=True)
    assert code == ExitCode.LOCKED and world.log.of("read") == []
    doc = json.loads(out)
    assert doc["exit_code"] == ExitCode.LOCKED and [h["outcome"] for h in doc["hosts"]] == ["not started"] * 3
    assert doc["hosts"][2]["error"] is not None and doc["hosts"][0]["error"] is None


def test_fleet_rollback_interrupted_before_any_change_under_json_still_prints_one_document(world, mocker):
    world.hosts.update({h: {"rels": rels(rel(*F1)), "now": V2} for h in HOSTS})
    mocker.patch.object(fleetrollback.plan, "plan", side_effect=KeyboardInterrupt)
    code, out, err = world.run(json=True)
    assert code == 130 and world.log.of("flow") == []
    assert sorted(h for (h,) in world.log.of("unlock")) == list(HOSTS)
    doc = json.loads(out)
    assert doc["exit_code"] == 130 and [h["outcome"] for h in doc["hosts"]] == ["not started"] * 3


def test_fleet_rollback_one_host_aborted_by_a_signal_after_others_switched(world):
    """A signal reaches b's flow (it aborts) after a and c switched: every lock is released, the
    table and the one --json document say which host is where."""
    world.hosts.update({h: {"rels": rels(rel(*F1)), "now": V2} for h in HOSTS})
    world.fail["b"] = KeyboardInterrupt()
    code, out, err = world.run(json=True)
    assert code != 0 and sorted(h for h, _ in world.log.of("switched")) == ["a", "c"]
    assert sorted(h for (h,) in world.log.of("unlock")) == list(HOSTS)
    doc = json.loads(out)
    assert [(h["host"], h["outcome"]) for h in doc["hosts"]] == [("a", "success"), ("b", "aborted"), ("c", "success")]
    assert doc["hosts"][1]["record"]["id"] == doc["release"]
