"""`fab deploy --version TAG` on a stage with several HOSTS (tasks/deploy.py -> tasks/fleetdeploy.py):
every host's flow checks the tag, pulls and migrates with it, writes it to its own .env and
records it under the fleet's release id. The hosts are plan-world hosts (tasks/planworld.py): the
real flow, locks and recorder run against them and nothing connects."""
import dataclasses

import pytest
from invoke import Exit

from commands import compose as compose_cmd
from commands import versions as versions_cmd
from config import load_settings
from tasks import deploy as deploy_mod
from tasks import fleetdeploy
from tasks.plan import PlanExecutor
from tasks.plananswers import Answers
from tasks.planworld import PlanHost, PlanWorld
from tasks.session import Session

HOSTS = ("a", "b", "c")


@pytest.fixture
def fleet(mocker):
    st = dataclasses.replace(load_settings("production", {}), hosts=HOSTS, failure_policy="stop", batch_size="100%",
                             batch_wait=0.0)
    calls = {h: [] for h in HOSTS}
    sessions = {h: Session(st, h, None, executor=PlanExecutor(Answers(PlanHost(st, PlanWorld(), compose_cmd.V2)), calls[h]))
                for h in HOSTS}
    mocker.patch.object(fleetdeploy, "open_sessions", side_effect=lambda c, settings, order, accept: {h: sessions[h] for h in order})
    return st, sessions, calls


def run(st, version):
    try:
        deploy_mod._fleet(None, st, "test", list(HOSTS), False, version=version)
    except Exit as e:
        return e.code
    return 0


def test_fleet_deploy_version_reaches_every_host_and_is_recorded_under_the_fleet_release(fleet):
    st, sessions, calls = fleet
    assert run(st, "v2") == 0
    compose_v2 = dataclasses.replace(compose_cmd.Compose(compose_cmd.V2, st.app_dir, st.compose_file), env=("IMAGE_TAG", "v2"))
    rids = set()
    for h in HOSTS:
        lines = sessions[h].recorder.lines
        start = next(x for x in lines if x["event"] == "start")
        assert start["steps"][0] == "version", h
        version = [x for x in lines if x["event"] == "version"]
        assert [(x["variable"], x["tag"], x["previous"]) for x in version] == [("IMAGE_TAG", "v2", "")], h
        assert lines[-1]["event"] == "end" and lines[-1]["outcome"] == "success", h
        rids |= {x["release"] for x in lines}
        commands = [c.command for c in calls[h]]
        assert "docker pull --quiet registry.example.com/ai-doc-qa/backend:v2" in commands, h
        assert compose_v2.pull(st.services) in commands, h              # the new tag pulled before the .env changes
        assert versions_cmd.set_variable_command(st.app_dir, "IMAGE_TAG", "v2") in commands, h
        assert [c for c in commands if c is None] == []
    assert len(rids) == 1, "one fleet release id on every host"
    migrations = [h for h in HOSTS if any("alembic upgrade head" in c.command for c in calls[h])]
    assert migrations == ["a"], "migrated once, on the migration host, with the tag"


def test_fleet_deploy_without_version_runs_todays_steps(fleet):
    st, sessions, calls = fleet
    assert run(st, None) == 0
    for h in HOSTS:
        start = next(x for x in sessions[h].recorder.lines if x["event"] == "start")
        assert start["steps"][0] == "checklist" and "version" not in start["steps"]
        assert not [c for c in calls[h] if "IMAGE_TAG" in c.command], "no .env write, no VAR=TAG prefix"
