"""The checklist's database revision read (tasks/checklist.py, current_db_revision) on the
containers it finds: blue/green slots, a scaled backend, a backend replaced after the start
observed it (scripted host from captured inspect JSON)."""
import copy
import dataclasses

from invoke import Result

from tasks import checklist
from tasks.hoststate import observe
from tests.tasks.scripted import COMPOSE_V2, INSPECT_PROJECT, Containers, all_of, container

CURL = (r"curl ", Result(stdout='{"status": "ok", "version": "v1"}\n@@status 200 0.004\n', exited=0))
IMG = (r"^docker image inspect ", "")


def green_of(blue: dict) -> dict:
    g = copy.deepcopy(blue)
    g["Id"] = "ab" * 32
    g["Name"] = "/ai-doc-qa-backend_green-1"
    g["Config"]["Labels"]["com.docker.compose.service"] = "backend_green"
    return g


def exec_lines(remote):
    return [c for c in remote.commands if "alembic" in c and ("docker exec" in c or " exec -T " in c)]


def test_blue_green_reads_the_serving_green_slot_not_the_stopped_blue(make_session, settings):
    blue = container("docker-inspect-all-v1-healthy.json", "backend", Status="exited")
    green = green_of(container("docker-inspect-all-v1-healthy.json", "backend"))
    others = [c for c in all_of() if c["Config"]["Labels"]["com.docker.compose.service"] != "backend"]
    hosts = Containers(blue, green, *others)
    st = dataclasses.replace(settings, strategy="blue-green")
    s, remote = make_session([COMPOSE_V2, CURL, IMG, *hosts.script(),
                              (r"alembic", Result(stdout="@@alembic_version\n0001\n", exited=0))], settings=st)
    observe(s)
    revs, why = checklist.current_db_revision(s)
    assert (revs, why) == (["0001"], "")
    assert exec_lines(remote)[0].startswith("docker exec " + green["Id"] + " ")


def test_scale_2_falls_back_to_compose_exec(make_session, settings):
    b1 = container("docker-inspect-all-v1-healthy.json", "backend")
    b2 = copy.deepcopy(b1)
    b2["Id"] = "cd" * 32
    others = [c for c in all_of() if c["Config"]["Labels"]["com.docker.compose.service"] != "backend"]
    hosts = Containers(b1, *others)
    script = [COMPOSE_V2, CURL, IMG,
              (r"^docker ps -a --no-trunc", lambda c: hosts.docker_ps(c) + f"{b2['Id']} backend\n"),
              (r"^docker inspect -- ", lambda c: hosts.inspect(c)[:-1] + ", " + __import__("json").dumps(b2) + "]"),
              (INSPECT_PROJECT, lambda c: hosts.inspect_project(c)[:-1] + ", " + __import__("json").dumps(b2) + "]"),
              (r"alembic", Result(stdout="@@alembic_version\n0001\n", exited=0))]
    s, remote = make_session(script, settings=settings)
    s.state.compose_project = "ai-doc-qa"
    observe(s)
    assert sum(c.service == "backend" for c in s.state.inspected[1]) == 2
    revs, why = checklist.current_db_revision(s)
    assert revs == ["0001"] and " exec -T backend " in exec_lines(remote)[0]


def test_a_container_replaced_after_the_observation_is_read_again_on_a_fresh_inspect(make_session, settings):
    """Someone recreated the backend between the start's observation and the read (no lock
    needed for `docker compose up -d` by hand): the read through the stale ID fails, and is made
    once more on a fresh inspect, which finds the new container."""
    hosts = Containers(*all_of())
    old = hosts.by_service["backend"]["Id"]

    def exec_(c):
        if c.startswith(f"docker exec {old} "):
            return Result(stdout="", stderr=f"Error response from daemon: No such container: {old}\n", exited=1)
        return Result(stdout="@@alembic_version\n0001\n", exited=0)
    def inspect(c):          # as docker answers: an ID it does not know fails the command
        ids = c.split(" -- ", 1)[1].split()
        known = {x["Id"] for x in hosts.by_service.values()}
        if not set(ids) <= known:
            return Result(stdout="[]\n", stderr="Error: No such object: " + next(i for i in ids if i not in known) + "\n", exited=1)
        return hosts.inspect(c)
    s, remote = make_session([COMPOSE_V2, CURL, IMG, (r"^docker inspect -- ", inspect), *hosts.script(),
                              (r"alembic", exec_)], settings=settings)
    s.state.compose_project = "ai-doc-qa"
    observe(s)
    new = copy.deepcopy(hosts.by_service["backend"])
    new["Id"] = "ef" * 32
    hosts.by_service["backend"] = new                  # recreated
    revs, why = checklist.current_db_revision(s)
    assert revs == ["0001"], why
