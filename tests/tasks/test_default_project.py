"""The run's first resolution of container IDs without starting Compose (tasks/hoststate.py,
_ids_of_default_project): ONE `docker ps` by the project name Compose gives the app by default,
kept only when every container found came from the app's directory and compose file; otherwise
`compose ps` decides, as before."""
import json

import pytest
from invoke import Result

from commands import compose as compose_cmd
from commands import docker as docker_cmd
from tasks import hoststate
from tests.tasks.scripted import COMPOSE_V2, Containers, all_of

APP, FILE = "/app/ai-doc-qa", "/app/ai-doc-qa/docker-compose.production.yml"
CREATED_FROM = r"^docker ps -a --no-trunc --filter label=com\.docker\.compose\.project=\S+ .*working_dir"
COMPOSE_PS = "cd /app/ai-doc-qa && docker compose -f docker-compose.production.yml ps -a -q"


def created_from(containers: Containers, where=lambda svc: (APP, FILE)):
    def answer(command):
        return "".join(f"{c['Id']} {json.dumps(svc)} {json.dumps(where(svc)[0])} {json.dumps(where(svc)[1])}\n"
                       for svc, c in containers.by_service.items())
    return answer


@pytest.fixture
def host(make_session):
    def make(answer, dot_env=None):
        containers = Containers(*all_of())
        s, remote = make_session([(CREATED_FROM, answer(containers) if callable(answer) else answer),
                                  COMPOSE_V2, *containers.script()])
        s.state.env_files[".env"] = dot_env            # as learn_secrets leaves it (None: no .env on the host)
        return s, remote, containers
    return make


def ids_of(containers):
    """Every known service's container: IDs are resolved for all of them at once."""
    return sorted(c["Id"] for c in containers.by_service.values())


def test_containers_created_from_the_app_are_found_without_compose(host):
    s, remote, containers = host(created_from)
    assert sorted(hoststate.container_ids(s, ["backend", "proxy"])) == ids_of(containers)
    assert remote.commands == [docker_cmd.project_containers_created_from("ai-doc-qa")]
    assert s.state.compose_project == "ai-doc-qa"          # later lookups: docker ps by the project label
    s.state.container_ids.clear()
    hoststate.container_ids(s, ["backend"])
    assert remote.commands[-1] == docker_cmd.project_containers("ai-doc-qa")


def test_compose_v1_names_the_files_relative_to_the_directory(host):
    """docker-compose 1.29 labels config_files "docker-compose.production.yml" (seen on the sandbox)."""
    s, remote, containers = host(lambda c: created_from(c, lambda svc: (APP, "docker-compose.production.yml")))
    assert sorted(hoststate.container_ids(s, ["backend"])) == ids_of(containers)
    assert len(remote.commands) == 1 and s.state.compose_project == "ai-doc-qa"


@pytest.mark.parametrize("why, where", [
    ("another app's directory of the same name", lambda svc: ("/srv/other/ai-doc-qa", "/srv/other/ai-doc-qa/docker-compose.production.yml")),
    ("created from another compose file", lambda svc: (APP, f"{APP}/docker-compose.yml")),
    ("one container of many from elsewhere", lambda svc: (APP, FILE) if svc != "redis" else ("/tmp/x", "/tmp/x/c.yml")),
])
def test_a_container_not_created_from_the_apps_directory_and_file_leaves_the_answer_to_compose(host, why, where):
    s, remote, containers = host(lambda c: created_from(c, where))
    assert sorted(hoststate.container_ids(s, ["backend"])) == ids_of(containers), why
    assert any(c.startswith(COMPOSE_PS) for c in remote.commands), why
    assert not s.state.compose_project or s.state.compose_project == "ai-doc-qa"   # learned from compose's answer, if at all


@pytest.mark.parametrize("answer", [Result(stdout=""), Result(stdout="", stderr="Cannot connect to the Docker daemon", exited=1),
                                    Result(stdout="abc 'backend' /app x\n"), Result(stdout="not json at all\n")])
def test_nothing_found_or_an_answer_it_cannot_read_leaves_the_answer_to_compose(host, answer):
    s, remote, containers = host(answer)
    assert sorted(hoststate.container_ids(s, ["backend"])) == ids_of(containers)
    assert any(c.startswith(COMPOSE_PS) for c in remote.commands)


def test_a_compose_project_name_in_the_apps_env_is_the_name_looked_for(host):
    s, remote, containers = host(created_from, dot_env={"COMPOSE_PROJECT_NAME": "docqa"})
    hoststate.container_ids(s, ["backend"])
    assert remote.commands[0] == docker_cmd.project_containers_created_from("docqa")


def test_without_the_apps_env_read_compose_is_asked(make_session):
    containers = Containers(*all_of())
    s, remote = make_session([COMPOSE_V2, *containers.script()])      # learn_secrets did not read .env
    hoststate.container_ids(s, ["backend"])
    assert not any("working_dir" in c for c in remote.commands) and any(c.startswith(COMPOSE_PS) for c in remote.commands)


def test_the_default_project_name_as_both_generations_keep_it():
    assert compose_cmd.default_project("/app/ai-doc-qa", "docker-compose.production.yml", {}) == ("ai-doc-qa", "/app/ai-doc-qa")
    assert compose_cmd.default_project("/app/ai-doc-qa/", "./c.yml", {}) == ("ai-doc-qa", "/app/ai-doc-qa")
    assert compose_cmd.default_project("/app/x", "c.yml", {"COMPOSE_PROJECT_NAME": "prod_1"}) == ("prod_1", "/app/x")
    assert compose_cmd.default_project("/app/x", "c.yml", None) is None             # the .env was not read
    assert compose_cmd.default_project("/app/x", "deploy/c.yml", {}) is None        # its project dir has its own .env
    for odd in ("/app/AI Doc QA", "/app/Docqa", "/app/doc.qa", "/app/-x", "/app/_x"):
        assert compose_cmd.default_project(odd, "c.yml", {}) is None, odd          # v1 and v2 would rewrite it
    assert compose_cmd.default_project("/app/x", "c.yml", {"COMPOSE_PROJECT_NAME": "Bad Name"}) is None


def test_parse_created_from_reads_paths_with_spaces_and_refuses_half_answers():
    cid = "a" * 64
    rows = docker_cmd.parse_created_from(f'{cid} "backend" "/srv/my app" "/srv/my app/c.yml,/srv/my app/o.yml"\n')
    assert rows == [docker_cmd.CreatedFrom(cid, "backend", "/srv/my app", ("/srv/my app/c.yml", "/srv/my app/o.yml"))]
    assert docker_cmd.parse_created_from("") == []
    for bad in (f'{cid} "backend" "/srv"\n', 'xyz "backend" "/a" "/a/c.yml"\n', f'{cid} "backend" "/a" 7\n',
                f'{cid} "backend" "/a" "/a/c.yml" "extra"\n', f'{cid} backend /a /a/c.yml\n'):
        assert docker_cmd.parse_created_from(bad) is None, bad
