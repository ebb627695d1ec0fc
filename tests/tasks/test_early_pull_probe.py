"""The deploy's early pull (begun during the checklist) does not wait for the Compose probe: it
pulls with `docker compose`, the probe's first choice; a v1-only host is pulled again with
docker-compose once the probe has answered; a real pull failure is the pull step's to report."""
from __future__ import annotations

import re
import threading

from invoke import Result

from commands import compose as compose_cmd
from config import load_settings
from tests.tasks.scripted_host import NEW, ScriptedHost
from tests.tasks.test_prefetch import deploy_on, pulls_and_merge

V2_PULL = r"^cd \S+ && docker compose -f \S+ pull --quiet "
V1_PULL = r"^cd \S+ && docker-compose -f \S+ pull --quiet "
NOT_A_COMMAND = Result(stdout="", stderr="docker: 'compose' is not a docker command.\nSee 'docker --help'\n", exited=1)


def probe_after_the_pull_began(answer: str):
    """A probe that answers only once a pull has been sent: the pull did not wait for it."""
    began = threading.Event()

    def probe(command):
        assert began.wait(10), "the early pull waited for the Compose probe"
        return Result(stdout=answer, exited=0)
    return began, probe


def host_and_settings():
    st = load_settings("production", {})
    return st, ScriptedHost(st.services, st.dependency_services)


def test_the_early_pull_does_not_wait_for_the_compose_probe(mocker, capsys):
    st, host = host_and_settings()
    began, probe = probe_after_the_pull_began("v2 2.26.1\n")

    def pull(command):
        began.set()
        return host.pull(command)
    code, out, err, commands = deploy_on(mocker, capsys, host, [
        (re.escape(compose_cmd.PROBE_COMPOSE), probe), (r" diff --quiet ", Result(stdout=NEW + "\n", exited=0)),
        (V2_PULL, pull)])
    assert code == 0, err
    pulls, merge = pulls_and_merge(commands)
    assert len(pulls) == 1 and pulls[0] < merge and re.match(V2_PULL, commands[pulls[0]])


def deploy_on_a_v1_host(mocker, capsys):
    """A deploy on a host with docker-compose only, whose probe answers after the early pull began."""
    st, host = host_and_settings()
    began, probe = probe_after_the_pull_began("v1 1.29.2\n")

    def v2_pull(command):
        began.set()
        return NOT_A_COMMAND
    return deploy_on(mocker, capsys, host, [
        (re.escape(compose_cmd.PROBE_COMPOSE), probe), (r" diff --quiet ", Result(stdout=NEW + "\n", exited=0)),
        (V2_PULL, v2_pull), (V1_PULL, host.pull)])


def test_on_a_compose_v1_host_the_early_pull_is_made_again_with_docker_compose(mocker, capsys):
    code, out, err, commands = deploy_on_a_v1_host(mocker, capsys)
    pulls, merge = pulls_and_merge(commands)
    assert [bool(re.match(V2_PULL, commands[i])) for i in pulls] == [True, False]
    assert re.match(V1_PULL, commands[pulls[1]]) and pulls[1] < merge       # still early, with docker-compose
    assert "FAILED at pull" not in err and "not a docker command" not in err + out


def test_a_failed_early_pull_with_the_probed_command_is_not_made_again_until_the_pull_step(mocker, capsys):
    st, host = host_and_settings()
    began, probe = probe_after_the_pull_began("v2 2.26.1\n")

    def failing(command):
        began.set()
        return Result(stdout="", stderr="toomanyrequests: rate limit\n", exited=1)
    code, out, err, commands = deploy_on(mocker, capsys, host, [
        (re.escape(compose_cmd.PROBE_COMPOSE), probe), (r" diff --quiet ", Result(stdout=NEW + "\n", exited=0)),
        (V2_PULL, failing)])
    pulls, merge = pulls_and_merge(commands)
    assert len(pulls) == 2 and pulls[0] < merge < pulls[1]          # once early, once by the step
    assert code != 0 and "FAILED at pull" in err and "toomanyrequests" in err
    assert not [c for c in commands if " up -d" in c and "postgres" not in c]


def test_a_configured_compose_command_is_pulled_with_at_once(mocker, capsys, monkeypatch):
    monkeypatch.setenv("DEPLOY_COMPOSE_COMMAND", "docker-compose")
    st, host = host_and_settings()
    code, out, err, commands = deploy_on(mocker, capsys, host, [
        (r" diff --quiet ", Result(stdout=NEW + "\n", exited=0)), (V1_PULL, host.pull)])
    pulls, merge = pulls_and_merge(commands)
    assert len(pulls) == 1 and re.match(V1_PULL, commands[pulls[0]]) and pulls[0] < merge
    assert compose_cmd.PROBE_COMPOSE not in commands


def test_a_deploy_whose_early_pull_worked_asks_no_compose_probe(mocker, capsys):
    """`docker compose pull` worked: the host has what the probe would have named first; the run
    keeps it (~0.1 s of CPU less on 2 shared cores) and runs the rest with `docker compose`."""
    st, host = host_and_settings()
    code, out, err, commands = deploy_on(mocker, capsys, host, [(r" diff --quiet ", Result(stdout=NEW + "\n", exited=0))])
    assert code == 0, err
    assert compose_cmd.PROBE_COMPOSE not in commands
    assert any(re.match(r"^cd \S+ && docker compose -f \S+ up -d$", c) for c in commands)


def test_without_an_early_pull_the_probe_is_asked_before_the_pull_step_needs_it(mocker, capsys):
    """The compose file changes at the incoming release: no pull during the checklist, but the
    probe is asked then (in the early pull's thread), not by the pull step after `git pull`."""
    st, host = host_and_settings()
    code, out, err, commands = deploy_on(mocker, capsys, host, [(r" diff --quiet ", Result(stdout=NEW + "\n", exited=1))])
    assert code == 0, err
    pulls, merge = pulls_and_merge(commands)
    assert len(pulls) == 1 and pulls[0] > merge
    assert commands.count(compose_cmd.PROBE_COMPOSE) == 1 and commands.index(compose_cmd.PROBE_COMPOSE) < merge
