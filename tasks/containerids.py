"""Which containers a run reads: the Compose services' container IDs, resolved once until a
command changes what runs (Session.run drops them then), and the first read after such a change
listed and inspected in one command. tasks/hoststate.py reads the containers these name.
"""
from __future__ import annotations

import posixpath
from typing import Sequence

from commands import compose as compose_cmd
from commands import docker as docker_cmd
from commands.docker import ContainerState
from tasks import slotstate
from tasks.errors import CommandFailed
from tasks.session import Session


def known_services(s: Session) -> list[str]:
    """Every Compose service a run looks at: dependencies, deployed services, the idle slot."""
    st = s.settings
    slot = [st.blue_green_slot] if slotstate.enabled(s) else []
    return list(dict.fromkeys([*st.dependency_services, *st.services, *slot]))


def container_ids(s: Session, services: Sequence[str]) -> list[str]:
    """IDs of the containers of ``services``, resolved once until a command changes what runs
    (Session.run drops them then). Once the Compose project is known (COMPOSE_PROJECT, or the label
    of a container read before) from ONE ``docker ps`` filtered by Compose's labels (~15 ms);
    before that from ONE ``compose ps`` of every known service (~0.1 s on v2, ~0.6 s on v1)."""
    query = _query(s, services)
    key = tuple(query)
    with s.state.ids_lock:          # reads at once (Session.concurrently, prefetch) resolve them once
        if key not in s.state.container_ids:
            project = s.settings.compose_project or s.state.compose_project    # (the settings: asking s.compose would probe)
            if project:
                ids = docker_cmd.parse_project_containers(s.run(docker_cmd.project_containers(project)).stdout, query)
            else:
                ids = _ids_of_default_project(s, query)
                if ids is None:
                    ids = compose_cmd.parse_ps_ids(_compose_ps_ids(s, query))
            s.state.container_ids[key] = ids
        return s.state.container_ids[key]


def _query(s: Session, services: Sequence[str]) -> list[str]:
    """The services whose containers are resolved together: every known one when ``services`` are
    among them (one resolution serves every read until a change)."""
    known = known_services(s)
    return known if services and set(services) <= set(known) else list(services)


def _ids_of_default_project(s: Session, query: Sequence[str]) -> list[str] | None:
    """The first resolution without starting Compose (``compose ps``: ~0.2 s on v2 beside the
    run's other early reads, ~0.6 s on v1): ONE ``docker ps`` by the project name Compose gives
    the app by default (commands/compose.py, default_project), kept only when every container
    found was created from the app's directory and its compose file (their labels). Then that
    name is the project for the rest of the run, as if read from a label. None (ask Compose)
    when the name cannot be told, nothing is found, or any container came from elsewhere: another
    app with a directory of the same name, a project renamed since, a file not the stage's."""
    st = s.settings
    read = s.state.env_files          # the app dir's .env, if the run read it (SECRET_FILES); None: missing
    guess = compose_cmd.default_project(st.app_dir, st.compose_file, (read[".env"] or {}) if ".env" in read else None)
    if guess is None:
        return None
    name, project_dir = guess
    r = s.run(docker_cmd.project_containers_created_from(name), check=False)
    rows = docker_cmd.parse_created_from(r.stdout) if r.ok else None
    compose_file = posixpath.join(project_dir, st.compose_file)
    if not rows or any(row.working_dir != project_dir or compose_file not in
                       {posixpath.normpath(posixpath.join(project_dir, f)) for f in row.config_files} for row in rows):
        return None
    s.state.compose_project = name
    return [row.id for row in rows if row.service in query] if query else [row.id for row in rows]


def _compose_ps_ids(s: Session, query: Sequence[str]) -> str:
    """``compose ps -a -q``'s output. The first time, with COMPOSE_COMMAND=auto, it does not wait
    for the Compose probe: it is asked with ``docker compose`` (the probe's first choice) beside
    the probe and kept once the probe has chosen the same; otherwise asked again with the probed one."""
    st = s.settings
    if s.compose_probed or st.compose_command != "auto":
        return s.run(s.compose.ps_ids(query)).stdout
    guess = compose_cmd.Compose(compose_cmd.V2, st.app_dir, st.compose_file, st.compose_project)
    compose, r = s.concurrently(lambda: s.compose, lambda: s.run(guess.ps_ids(query), check=False))
    if compose.command == guess.command and r.ok:
        return r.stdout
    return s.run(s.compose.ps_ids(query)).stdout


def learn_project(s: Session, states: Sequence[ContainerState]) -> None:
    """The project Compose gave the app's containers (its .env's COMPOSE_PROJECT_NAME, the app
    dir's name, ...), taken from what Compose wrote rather than recomputed by its rules."""
    if not s.state.compose_project:
        s.state.compose_project = next((c.project for c in states if c.project and c.service), "")


def list_and_inspect(s: Session, services: Sequence[str], env_keys: Sequence[str]) -> list[ContainerState] | None:
    """The first read after a change once the Compose project is known: the project's containers
    listed and inspected in ONE command (docker_cmd.inspect_project), their IDs kept as
    :func:`container_ids` keeps them. None when the IDs are known already or the project is not."""
    project = s.settings.compose_project or s.state.compose_project
    query = _query(s, services)
    with s.state.ids_lock:
        if not project or not query or tuple(query) in s.state.container_ids:
            return None
        r = s.run(docker_cmd.inspect_project(project), check=False)
        if not r.ok and "No such" in r.stderr:   # a container removed between the listing and the inspect
            r = s.run(docker_cmd.inspect_project(project), check=False)
        if not r.ok:            # the daemon, or Docker's permissions: said once, as it is
            raise CommandFailed(r.command, r.exited, r.stdout, r.stderr)
        states = [c for c in docker_cmd.parse_inspect(r.stdout, env_keys) if c.service in query]
        s.state.container_ids[tuple(query)] = [c.id for c in states]
    return states
