"""(Found by an adversary pass.) Paths around the removed checklist probe (834b7dd) that held up."""
from __future__ import annotations

import re

from invoke import Result

from commands import compose as compose_cmd
from config import load_settings
from tests.tasks.scripted_host import NEW, ScriptedHost
from tests.tasks.test_prefetch import deploy_on, pulls_and_merge

V1_PULL = r"^cd \S+ && docker-compose -f \S+ pull --quiet "
NOT_A_COMMAND = Result(stdout="", stderr="docker: 'compose' is not a docker command.\n", exited=1)


def v1_host():
    st = load_settings("production", {})
    host = ScriptedHost(st.services, st.dependency_services)
    return host, [(re.escape(compose_cmd.PROBE_COMPOSE), Result(stdout="v1 1.29.2\n", exited=0)),
                  (r"^cd \S+ && docker compose ", NOT_A_COMMAND)]


def test_v1_host_with_a_changed_compose_file_probes_early_and_pulls_with_docker_compose_after_the_merge(mocker, capsys):
    host, v1 = v1_host()
    code, out, err, commands = deploy_on(mocker, capsys, host, [
        *v1, (r" diff --quiet ", Result(stdout=NEW + "\n", exited=1))])
    assert code == 0, err
    pulls, merge = pulls_and_merge(commands)
    assert len(pulls) == 1 and pulls[0] > merge and re.match(V1_PULL, commands[pulls[0]])
    assert commands.count(compose_cmd.PROBE_COMPOSE) == 1 and commands.index(compose_cmd.PROBE_COMPOSE) < merge
    assert not [c for c in commands if c.startswith("cd ") and " docker compose " in c]


def test_v1_host_whose_early_pull_fails_for_a_registry_reason_reports_it_at_the_pull_step(mocker, capsys):
    host, v1 = v1_host()
    code, out, err, commands = deploy_on(mocker, capsys, host, [
        *v1, (r" diff --quiet ", Result(stdout=NEW + "\n", exited=0)),
        (V1_PULL, Result(stdout="", stderr="toomanyrequests: rate limit\n", exited=1))])
    assert code != 0 and "toomanyrequests" in err and "not a docker command" not in err
    assert commands.count(compose_cmd.PROBE_COMPOSE) == 1
    assert not [c for c in commands if " up -d" in c and "postgres" not in c]
