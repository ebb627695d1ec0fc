"""(Found by an adversary pass.) Adversarial checks of containerids.list_and_inspect (ac9ac10) and kill_running stopping the
prefetches first (67fd41d)."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import threading

import pytest
from invoke import Result

from commands import docker as docker_cmd
from tasks import hoststate
from tasks.errors import CommandFailed
from tests.tasks.scripted import COMPOSE_V2, INSPECT_PROJECT, Containers, all_of

DOWN = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n"


def session_on(make_session, settings, *script):
    s, remote = make_session([COMPOSE_V2, *script], settings=settings)
    s.state.compose_project = "ai-doc-qa"
    return s, remote


def fake_docker(tmp_path, ps_out="", ps_rc=0, inspect_rc=0):
    """A real /bin/sh runs the combined command against a fake `docker` that logs its argv."""
    log = tmp_path / "argv.log"
    script = tmp_path / "docker"
    script.write_text(f"""#!/bin/sh
printf '%s\\n' "$*" >> {log}
case "$1" in
  ps) printf '{ps_out}'; exit {ps_rc};;
  inspect) shift; printf 'INSPECTED %s\\n' "$*"; exit {inspect_rc};;
esac
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")
    return env, log


@pytest.mark.parametrize("project", ["ai-doc-qa", "my project", "it's"])
def test_adv10_combined_command_runs_in_real_sh(tmp_path, project):
    env, log = fake_docker(tmp_path, ps_out="aaa\nbbb\n")
    r = subprocess.run(["sh", "-c", docker_cmd.inspect_project(project)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "INSPECTED -- aaa bbb\n"
    assert f"label=com.docker.compose.project={project} " in log.read_text()


def test_adv10_combined_command_empty_and_daemon_down(tmp_path):
    env, _ = fake_docker(tmp_path, ps_out="")
    r = subprocess.run(["sh", "-c", docker_cmd.inspect_project("p")], env=env, capture_output=True, text=True)
    assert (r.returncode, r.stdout) == (0, "[]\n")
    d = tmp_path / "down"
    d.mkdir()
    env, log = fake_docker(d, ps_out="", ps_rc=1)
    r = subprocess.run(["sh", "-c", docker_cmd.inspect_project("p")], env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "inspect" not in log.read_text()


def test_adv10_daemon_down_error_is_readable_and_not_tried_twice(make_session, settings):
    """Before: `docker ps ...` failed once (check=True) and the error named it. Now the listing's
    failure is indistinguishable from the inspect race and the whole command runs twice."""
    s, remote = session_on(make_session, settings, (INSPECT_PROJECT, Result(stderr=DOWN, exited=1)))
    with pytest.raises(CommandFailed) as e:
        hoststate.inspect_ids(s, ["backend"])
    assert "Cannot connect to the Docker daemon" in e.value.output
    assert e.value.command == docker_cmd.inspect_project("ai-doc-qa")
    assert len([c for c in remote.commands if c.startswith("ids=")]) == 1, remote.commands


def test_adv10_env_keys_only_of_the_query_and_no_other_env(make_session, settings):
    hosts = Containers(*all_of())
    for svc, c in hosts.by_service.items():
        c["Config"]["Env"] = [*c["Config"].get("Env", []), f"SECRET_OF_{svc.upper()}=s3cr3t-{svc}", "CONTEXT_SIZE=4096"]
    s, remote = session_on(make_session, settings, *hosts.script())
    c = hoststate.container_of(s, "backend", ["CONTEXT_SIZE"])
    assert c.service == "backend" and c.env == {"CONTEXT_SIZE": "4096"}
    assert remote.commands[0].startswith("ids=")
    assert "s3cr3t" not in repr(s.state.inspected)


def test_adv10_other_projects_and_other_services_are_left_out(make_session, settings):
    hosts = Containers(*all_of())
    extra = json.loads(json.dumps(hosts.by_service["backend"]))
    extra["Id"] = "f" * 64
    extra["Config"]["Labels"]["com.docker.compose.service"] = "worker"      # same project, not a known service
    hosts.by_service["worker"] = extra
    s, remote = session_on(make_session, settings, *hosts.script())
    states = hoststate.inspect_ids(s, ["backend"])
    assert "worker" not in {c.service for c in states}
    assert "f" * 64 not in [i for ids in s.state.container_ids.values() for i in ids]
    assert [c.service for c in hoststate.inspect_ids(s, ["worker"])] == ["worker"]


def test_adv10_kill_running_stops_a_prefetch_that_holds_the_ids_lock(make_session, settings, mocker):
    """A prefetch inside list_and_inspect holds ids_lock during the remote command. kill_running
    (lost connection, Ctrl-C) must leave it sending nothing more (not the retry), release the
    lock, and the main thread's read must still be made (fetched re-reads in place)."""
    hosts = Containers(*all_of())
    entered, release = threading.Event(), threading.Event()
    calls = []

    def answer(command):
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            entered.set()
            release.wait(5)
            return Result(stdout="", stderr="Terminated", exited=143)      # killed by the pkill
        return hosts.inspect_project(command)
    s, remote = session_on(make_session, settings, (INSPECT_PROJECT, answer), (r"^pkill ", ""), *hosts.script())
    mocker.patch.object(type(s.executor), "background", new=True, create=True)
    s.prefetch("k", lambda: hoststate.inspect_ids(s, ["backend"]))
    assert entered.wait(5)
    assert s.kill_running() in (True, False)
    release.set()
    states = s.fetched("k", lambda: hoststate.inspect_ids(s, ["backend"]))
    assert "backend" in {c.service for c in states}
    assert [n.startswith("prefetch") for n in calls] == [True, False], calls
