"""The first read of the containers after a change, once the Compose project is known: listed and
inspected in ONE command (tasks/containerids.py list_and_inspect), its IDs kept for the reads after it."""
from __future__ import annotations

from invoke import Result

from commands import docker as docker_cmd
from tasks import hoststate
from tests.tasks.scripted import COMPOSE_V2, INSPECT_PROJECT, Containers, all_of


def session_on(make_session, settings, *script):
    s, remote = make_session([COMPOSE_V2, *script], settings=settings)
    s.state.compose_project = "ai-doc-qa"
    return s, remote


def test_one_command_lists_and_inspects_then_the_ids_are_kept(make_session, settings):
    hosts = Containers(*all_of())
    s, remote = session_on(make_session, settings, *hosts.script())
    states = hoststate.inspect_ids(s, ["backend"])
    assert remote.commands == [docker_cmd.inspect_project("ai-doc-qa")]
    assert {c.service for c in states} == {"backend", "postgres", "redis", "model_server", "proxy"} & set(hosts.by_service)
    hoststate.inspect_ids(s, ["postgres"])                          # IDs known now: one plain inspect
    assert remote.commands[1].startswith("docker inspect -- ") and len(remote.commands) == 2
    s.state.changed()                                               # a command that changes what runs
    hoststate.inspect_ids(s, ["backend"])
    assert remote.commands[2] == docker_cmd.inspect_project("ai-doc-qa")


def test_a_container_removed_between_the_listing_and_the_inspect_is_listed_again(make_session, settings):
    hosts = Containers(*all_of())
    gone = [Result(stdout="[]", stderr="Error: No such object: abc\n", exited=1)]

    def answer(command):
        return gone.pop() if gone else hosts.inspect_project(command)
    s, remote = session_on(make_session, settings, (INSPECT_PROJECT, answer))
    states = hoststate.inspect_ids(s, ["backend"])
    assert [c for c in remote.commands if c.startswith("ids=")] == [docker_cmd.inspect_project("ai-doc-qa")] * 2
    assert [c.service for c in states if c.service == "backend"] == ["backend"]


def test_a_project_without_containers_is_an_empty_answer(make_session, settings):
    s, remote = session_on(make_session, settings, (INSPECT_PROJECT, "[]\n"))
    assert hoststate.inspect_ids(s, ["backend"]) == []
    assert s.state.container_ids and list(s.state.container_ids.values()) == [[]]


def test_the_command_lists_as_docker_ps_by_labels_does_and_says_so_when_none():
    cmd = docker_cmd.inspect_project("ai-doc-qa")
    assert "docker ps --all --quiet --no-trunc --filter label=com.docker.compose.project=ai-doc-qa --filter label=com.docker.compose.oneoff=False)" in cmd
    assert cmd.endswith('if [ -z "$ids" ]; then echo "[]"; else docker inspect -- $ids; fi')
