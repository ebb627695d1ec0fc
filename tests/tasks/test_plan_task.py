"""`fab plan` runs the real deploy flow in the plan world and never connects (tasks/plan.py)."""
from __future__ import annotations

import dataclasses
import re
import shlex
import socket
import threading

import paramiko
import pytest
import requests
from invoke import Exit, MockContext

from commands import alembic, docker, git, health, lock
from commands import compose as compose_cmd
from commands import versions as versions_cmd
from config import load_settings
from tasks import deploy as deploy_mod
from tasks.conftest import hermetic_config
from tasks.plan import PATHS, entries, plan, preview
from tasks.plananswers import Answers
from tasks.planworld import PlanWorld

V2 = compose_cmd.Compose(compose_cmd.V2, "/app/ai-doc-qa", "docker-compose.production.yml")


def run_plan(capsys, stage="production", **kw) -> str:
    plan(MockContext(config=hermetic_config()), stage=stage, **kw)
    return capsys.readouterr().out


def main_part(out: str) -> str:
    return out.split("\n=== if ")[0]


def test_plan_opens_no_socket_and_starts_no_thread(monkeypatch, capsys):
    """Every way out of this machine raises: sockets, name resolution, paramiko, requests. Staging
    has a webhook, a monitoring URL and smoke tests from the operator's machine: each is shown,
    none is requested."""
    def refuse(*a, **kw):
        raise AssertionError("fab plan tried to connect")
    for target, name in ((socket.socket, "connect"), (socket.socket, "connect_ex"), (socket, "create_connection"),
                         (socket, "getaddrinfo"), (paramiko.SSHClient, "connect"), (requests.Session, "send")):
        monkeypatch.setattr(target, name, refuse)
    started = []
    monkeypatch.setattr(threading.Thread, "start", lambda self: started.append(self.name))
    out = run_plan(capsys, stage="staging")
    assert started == []                                   # no heartbeat, no probe, no SSH worker, no HTTP thread
    assert "POST [REDACTED]" in out and "9100/hook" not in out     # the whole webhook URL is a secret
    assert "GET http://127.0.0.1:9100/dashboard" in out and "GET http://127.0.0.1:8080/health" in out
    assert "it ends: success" in out


# The migration runs by `docker exec` into the backend's one running container (found by Compose's labels).
# From the revisions the checklist read (--expect), when it read them.
# A deploy hands it to the migration's Python it started early (commands/prestart.py), which the
# same command falls back to when that Python is gone: ``d=DIR; if ... fi; fi; docker exec ...``.
MIGRATE_IN_BACKEND = (r"(d=/tmp/tmp\.\w+; if \[ -d .*; then rm -rf \"\$d\"; fi; )?"
                      "docker exec [0-9a-f]{12,64} " + re.escape(shlex.join(["sh", "-c", alembic.MIGRATE_SCRIPT]))
                      + "( sh --expect( [0-9A-Za-z_]+)*)?")


def test_plan_shows_the_runbook_steps_in_the_flows_order(capsys):
    out = main_part(run_plan(capsys))
    assert re.findall(r"^\[([a-z -]+)\]$", out, re.M) == [
        "connect", "start", "checklist", "prepare", "pull", "migrate", "services", "verify", "finish"]
    cmds = [line.strip() for line in out.splitlines() if line.startswith("  ") and not line.strip().startswith("#")]
    pull, up = cmds.index(V2.pull(["backend", "model_server", "proxy"])), cmds.index(V2.up())
    # the containers of the project Compose names by default (ai-doc-qa, the app dir's name), no Compose start
    record_images = cmds.index(docker.project_containers_created_from("ai-doc-qa"))
    migrate = cmds.index(next(c for c in cmds if re.fullmatch(MIGRATE_IN_BACKEND, c)))
    assert record_images < pull < migrate < up     # images recorded before any pull (runbook note 3); pulled before migrating
    prestarted = cmds.index(next(c for c in cmds if c.startswith("command -v setsid ")))
    assert cmds[migrate].startswith("d=/tmp/tmp.") and record_images < prestarted < migrate   # begun during the checklist
    assert git.merge_ff_only("/app/ai-doc-qa", "origin/main") in cmds
    assert cmds[-1] == lock.release("/app/ai-doc-qa/.deploy/lock", "<token>")


def test_plan_is_derived_from_the_flow_not_kept_beside_it(monkeypatch, capsys):
    """Issue 8: commands/plan.py was a hand-kept copy of the flow. Take the verify step out of the
    deploy: the plan must lose its smoke tests and log scan too."""
    assert " docker logs --tail 100 " in run_plan(capsys)
    monkeypatch.setattr(deploy_mod, "DEPLOY_STEPS", tuple(s for s in deploy_mod.DEPLOY_STEPS if s.name != "verify"))
    out = main_part(run_plan(capsys))
    assert "[verify]" not in out and " docker logs --tail 100 " not in out
    assert health.curl("http://localhost/api/v1/documents", 10) not in out


@pytest.mark.parametrize("stage", ["production", "staging"])
@pytest.mark.parametrize("world", [PlanWorld(), *(w for _, w in PATHS)], ids=["deploy", "first-deploy", "auto-rollback"])
def test_the_plan_world_knows_every_command_of_every_path(stage, world, staging_settings):
    st = staging_settings if stage == "staging" else load_settings(stage, {})
    p = preview(st, world, compose_cmd.V2)
    assert [c.command for c in p.calls if c.answer is None] == []
    assert p.calls[-1].command.endswith("then rm -rf -- /app/ai-doc-qa/.deploy/lock && echo released; else echo not-ours; fi )") \
        or "echo released" in p.calls[-1].command          # the lock is released on every path


def test_the_paths_a_deploy_can_take():
    st = load_settings("production", {})
    first, failing = (preview(st, w, compose_cmd.V2) for _, w in PATHS)
    run_rm = V2.run_rm("backend", ["sh", "-c", alembic.MIGRATE_SCRIPT])
    exec_ = V2.exec("backend", ["sh", "-c", alembic.MIGRATE_SCRIPT])
    assert first.stopped is None and first.outcome == "success"
    assert run_rm in [c.command for c in first.calls] and not any(c.command.startswith(exec_) for c in first.calls)
    assert failing.outcome == "rolled_back" and int(failing.stopped.code) == 7
    commands = [c.command for c in failing.calls]
    assert any(c.startswith("docker tag sha256:") and c.endswith(" registry.example.com/ai-doc-qa/backend:latest") for c in commands)
    assert V2.up(["backend"], no_deps=True) in commands


def test_the_commands_that_change_the_host_are_marked():
    st = load_settings("production", {})
    es = entries(preview(st, PlanWorld(), compose_cmd.V2), st.hosts[0])
    changes = {e.command for e in es if e.changes}
    assert {git.merge_ff_only(st.app_dir, "origin/main"), V2.pull(st.services), V2.up(), V2.up(st.dependency_services),
            lock.release(st.lock_dir, "<token>"), lock.heartbeat(st.lock_dir, "<token>")} <= changes
    assert [c for c in changes if re.fullmatch(MIGRATE_IN_BACKEND, c)]
    ids = docker.project_containers_created_from("ai-doc-qa")
    reads = {git.state(st.app_dir), git.fetch(st.app_dir, "origin", "main"), ids, lock.status(st.lock_dir)}
    assert not reads & changes and {git.state(st.app_dir), ids} <= {e.command for e in es}


def deploy_host_commands(out: str) -> list[str]:
    """The commands of the main path that run on the deploy host (not on the test stage's)."""
    lines = main_part(out).splitlines()
    return [cmd.strip() for note, cmd in zip(lines, lines[1:])
            if note.startswith("  # ") and not cmd.startswith("  #") and "# on " not in note]


def test_plan_for_compose_v1_and_an_explicit_compose_command(capsys, monkeypatch):
    cmds = deploy_host_commands(run_plan(capsys, compose="docker-compose"))
    assert "cd /app/ai-doc-qa && docker-compose -f docker-compose.production.yml up -d" in cmds
    # The checklist's early revision read asks no Compose (`docker exec` into the backend the
    # start's `docker ps` found). The only `docker compose` command is the early pull's try,
    # before any probe, as a deploy on that host sends it: it fails, the probe says v1, and the
    # pull is made with docker-compose, still before `git pull`.
    tried = [i for i, c in enumerate(cmds) if "docker compose -f" in c]
    assert len(tried) == 1 and cmds[tried[0]].endswith(" pull --quiet -- backend model_server proxy")
    assert cmds[tried[0] + 1] == compose_cmd.PROBE_COMPOSE
    assert cmds[tried[0] + 2] == "cd /app/ai-doc-qa && docker-compose -f docker-compose.production.yml pull --quiet -- backend model_server proxy"
    assert tried[0] + 2 < next(i for i, c in enumerate(cmds) if " merge --ff-only " in c)
    assert [c for c in cmds if "alembic_version" in c and "@@before" not in c][0].startswith("docker exec ")
    monkeypatch.setenv("DEPLOY_COMPOSE_COMMAND", "docker compose")
    cmds = deploy_host_commands(run_plan(capsys, compose="docker-compose"))
    assert "cd /app/ai-doc-qa && docker-compose -f docker-compose.production.yml up -d" in cmds
    assert compose_cmd.PROBE_COMPOSE not in cmds        # a configured Compose is not detected


def test_an_unknown_compose_option_is_a_usage_error(capsys):
    with pytest.raises(Exit) as exc:
        run_plan(capsys, compose="podman-compose")
    assert exc.value.code == 2 and "--compose must be" in capsys.readouterr().err


def test_a_command_the_plan_world_does_not_know_is_said(monkeypatch, capsys):
    known = Answers.answer
    monkeypatch.setattr(Answers, "answer", lambda self, c: None if " fetch --quiet " in c else known(self, c))
    out = run_plan(capsys)
    assert "# not known to the plan world: answered as if it succeeded with no output\n  git -C /app/ai-doc-qa fetch" in out
    assert "command(s) are not known to the plan world" in out


def test_plan_hides_the_secrets_of_webhook_monitoring_and_db_commands(monkeypatch, capsys):
    monkeypatch.setenv("DEPLOY_WEBHOOK_URL", "https://hooks.example.com/services/T0/B0/sentinelhooktoken")
    monkeypatch.setenv("DEPLOY_MONITORING_URL", "https://grafana.example.com/d?auth_token=sentinel-monitor")
    monkeypatch.setenv("DEPLOY_DB_READY_COMMAND", "PGPASSWORD='sentinel pg' pg_isready -U postgres")
    out = run_plan(capsys)
    assert "POST [REDACTED]" in out and "GET https://grafana.example.com/d?auth_token=[REDACTED]" in out
    assert "pg_isready -U postgres" in out and "sentinel" not in out


def test_plan_says_where_a_deploy_would_stop_in_the_plan_world(monkeypatch, capsys):
    """A config that stops every deploy at the checklist (a blocking item that cannot pass: no
    MONITORING_URL) shows the commands up to there and says so; the plan itself succeeds."""
    monkeypatch.setenv("DEPLOY_MONITORING_URL", "")
    monkeypatch.setenv("DEPLOY_CHECKLIST_BLOCKING", "monitoring")
    out = run_plan(capsys)
    assert "it ends at checklist: failed (exit 9): 1 blocking checklist item(s) failed: monitoring" in out
    assert "[prepare]" not in main_part(out) and "[finish]" in main_part(out)


def test_preview_runs_the_deploy_tasks_own_body_with_its_defaults():
    """The plan runs `fab deploy` itself (its body), not a copy of its options."""
    import inspect

    from tasks.plan import DEPLOY
    assert DEPLOY is inspect.unwrap(deploy_mod.deploy.body)
    assert list(inspect.signature(DEPLOY).parameters) == ["s", "json", "lock_wait", "message", "show", "parallel", "version"]
    assert dataclasses.is_dataclass(PlanWorld())


def test_deploy_version_must_be_a_docker_tag():
    assert deploy_mod.check_options(version=None) == []
    assert deploy_mod.check_options(version="v2") == []
    assert deploy_mod.check_options(version="")
    assert deploy_mod.check_options(version="$(reboot)")
    assert [x.name for x in deploy_mod.steps_for("v2")][:2] == ["version", "checklist"]
    assert deploy_mod.steps_for(None) == deploy_mod.DEPLOY_STEPS


def section(out: str, step: str) -> list[str]:
    """The commands of one step of the plan's main path."""
    lines = main_part(out).split(f"\n[{step}]\n", 1)[1].split("\n\n", 1)[0].splitlines()
    return [x.strip() for x in lines if not x.strip().startswith("#")]


def test_plan_version_shows_the_tag_check_first_and_the_env_write_right_before_up(capsys):
    """Issue 10: `fab plan --version v2` is the --version deploy: the registry check as the first
    step, pull and migrate with IMAGE_TAG=v2, the .env written right before `up`."""
    out = run_plan(capsys, version="v2")
    assert "Plan for `fab deploy --version v2`" in out and "it ends: success" in out
    assert re.findall(r"^\[([a-z -]+)\]$", main_part(out), re.M) == [
        "connect", "start", "version", "checklist", "prepare", "pull", "migrate", "services", "verify", "finish"]
    version = section(out, "version")
    assert versions_cmd.read_variable_command("/app/ai-doc-qa", "IMAGE_TAG") in version
    assert dataclasses.replace(V2, env=("IMAGE_TAG", "v2")).config_images() in version
    assert "docker pull --quiet registry.example.com/ai-doc-qa/backend:v2" in version
    # The pull begins during the checklist, once the incoming release is fetched (its compose files unchanged).
    assert dataclasses.replace(V2, env=("IMAGE_TAG", "v2")).pull(["backend", "model_server", "proxy"]) in section(out, "checklist")
    services = section(out, "services")
    write = services.index(versions_cmd.set_variable_command("/app/ai-doc-qa", "IMAGE_TAG", "v2"))
    assert write < services.index(V2.up())            # the .env changes when the services switch, not before
    assert "# IMAGE_TAG=v2 into the .env" in out
    failing = out.split("auto-rollback when AUTO_ROLLBACK=true")[1]
    assert versions_cmd.unset_variable_command("/app/ai-doc-qa", "IMAGE_TAG") in failing     # set back: it was unset


@pytest.mark.parametrize("compose", [compose_cmd.V2, compose_cmd.V1])
@pytest.mark.parametrize("world", [PlanWorld(), *(w for _, w in PATHS)], ids=["deploy", "first-deploy", "auto-rollback"])
def test_the_plan_world_knows_every_command_of_a_version_deploy(world, compose):
    st = dataclasses.replace(load_settings("production", {}), compose_command=compose)
    p = preview(st, world, compose, "v2")
    assert [c.command for c in p.calls if c.answer is None] == []


def test_plan_version_that_is_not_a_tag_is_a_usage_error(capsys):
    with pytest.raises(Exit) as exc:
        run_plan(capsys, version="v2;reboot")
    assert exc.value.code == 2 and "is not a docker tag" in capsys.readouterr().err


@pytest.mark.parametrize("world", [PlanWorld(), *(w for _, w in PATHS)], ids=["deploy", "first-deploy", "auto-rollback"])
def test_plan_under_blue_green_shows_the_slot_switch_and_knows_every_command(world):
    """Seen: `DEPLOY_STRATEGY=blue-green fab plan` died with a traceback (exit 1: KeyError on the
    second slot's image), and `compose stop` of the old slot was a command the world did not know."""
    st = load_settings("production", {"DEPLOY_STRATEGY": "blue-green"})
    p = preview(st, world, compose_cmd.V2)
    assert [c.command for c in p.calls if c.answer is None] == []
    commands = [c.command for c in p.calls]
    first_slot = "backend" if not world.running else "backend_green"     # nothing runs: the first idle slot
    assert V2.up([first_slot], no_deps=True) in commands
    if world == PlanWorld():
        assert p.outcome == "success" and V2.stop(["backend"]) in commands


def test_verify_under_blue_green_scans_the_logs_of_the_serving_slot():
    """Seen in the blue-green plan: verify read `logs backend`, the old slot the switch had just
    stopped, so the new slot's errors were never looked at."""
    st = load_settings("production", {"DEPLOY_STRATEGY": "blue-green"})
    [logs] = [c for c in preview(st, PlanWorld(), compose_cmd.V2).calls if " docker logs --tail " in c.command]
    # One `docker logs` of each service's container (found by label); the world answers each by its service.
    assert "backend_green-1  | " in logs.answer.stdout and "\nbackend-1  | " not in "\n" + logs.answer.stdout
    assert "proxy-1  | " in logs.answer.stdout
