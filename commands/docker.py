"""``docker`` commands and parsers: container state via ``docker inspect`` (works under Compose v1
and v2 alike), image identity, tags and ``docker stats``."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from commands.shell import UnsafeValue, check_image, join, q

COMPOSE_SERVICE_LABEL = "com.docker.compose.service"
# Set by Compose v1 and v2 alike on every container they create (checked on the sandbox host for
# both generations); `compose ps` finds a project's containers by them too.
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
COMPOSE_ONEOFF_LABEL = "com.docker.compose.oneoff"


@dataclass(frozen=True)
class ContainerState:
    id: str
    name: str
    service: str
    image_ref: str          # what the service asked for, e.g. registry/app:latest
    image_id: str           # sha256:... the image actually running
    status: str             # created | running | restarting | exited | paused | dead
    health: str | None      # None (no healthcheck) | starting | healthy | unhealthy
    restart_count: int
    oom_killed: bool
    exit_code: int
    started_at: str
    finished_at: str
    memory_limit: int       # bytes, 0 = unlimited
    health_log: tuple[str, ...] = ()   # last healthcheck outputs, newest last
    env: dict = field(default_factory=dict)  # only the keys asked for; never the whole environment
    project: str = ""       # the Compose project that created it (its label)


def short_image_id(image_id: str) -> str:
    return image_id.split(":", 1)[-1][:12] if image_id else ""


def inspect(ids: Sequence[str]) -> str:
    return "docker inspect -- " + join(ids)


def parse_inspect(stdout: str, env_keys: Iterable[str] = ()) -> list[ContainerState]:
    """Parse ``docker inspect`` JSON of containers.

    ``env_keys`` selects which environment variables to keep (e.g. CONTEXT_SIZE): the full
    ``Config.Env`` carries secrets from env files and is dropped here, at the boundary.
    """
    wanted = set(env_keys)
    out: list[ContainerState] = []
    for c in json.loads(stdout or "[]"):
        state = c.get("State") or {}
        cfg = c.get("Config") or {}
        labels = cfg.get("Labels") or {}
        health = state.get("Health") or None
        env = {}
        for item in cfg.get("Env") or []:
            key, _, value = item.partition("=")
            if key in wanted:
                env[key] = value
        logs = tuple((entry.get("Output") or "").strip() for entry in (health or {}).get("Log") or [])
        out.append(ContainerState(
            id=c.get("Id", ""),
            name=(c.get("Name") or "").lstrip("/"),
            service=labels.get(COMPOSE_SERVICE_LABEL, ""),
            image_ref=cfg.get("Image", ""),
            image_id=c.get("Image", ""),
            status=state.get("Status", "unknown"),
            health=health.get("Status") if health else None,
            restart_count=int(c.get("RestartCount") or 0),
            oom_killed=bool(state.get("OOMKilled")),
            exit_code=int(state.get("ExitCode") or 0),
            started_at=state.get("StartedAt", ""),
            finished_at=state.get("FinishedAt", ""),
            memory_limit=int((c.get("HostConfig") or {}).get("Memory") or 0),
            health_log=logs[-3:],
            env=env,
            project=labels.get(COMPOSE_PROJECT_LABEL, ""),
        ))
    return out


def project_containers(project: str) -> str:
    """``ID SERVICE`` of every container of a Compose project, running or not, one-off ``run``
    containers left out: what ``compose ps -a -q`` lists, read from the labels Compose sets, without
    starting Compose (~0.1 s on v2, ~0.6 s on v1; this is one ``docker`` call, ~15 ms)."""
    fmt = '{{.ID}} {{.Label "' + COMPOSE_SERVICE_LABEL + '"}}'
    return (f"docker ps -a --no-trunc --filter label={COMPOSE_PROJECT_LABEL}={q(project)} "
            f"--filter {q(f'label={COMPOSE_ONEOFF_LABEL}=False')} --format {q(fmt)}")


def inspect_project(project: str) -> str:
    """``docker inspect`` of every container of a Compose project (one-off ``run`` containers left
    out), listed as :func:`project_containers` lists them, in the same command: one round trip
    where a ``docker ps`` then a ``docker inspect`` took two. ``[]`` when it has none."""
    listing = (f"docker ps --all --quiet --no-trunc --filter label={COMPOSE_PROJECT_LABEL}={q(project)} "
               f"--filter {q(f'label={COMPOSE_ONEOFF_LABEL}=False')}")
    return f'ids=$({listing}) || exit $?; if [ -z "$ids" ]; then echo "[]"; else docker inspect -- $ids; fi'


COMPOSE_WORKING_DIR_LABEL = "com.docker.compose.project.working_dir"
COMPOSE_CONFIG_FILES_LABEL = "com.docker.compose.project.config_files"


def project_containers_created_from(project: str) -> str:
    """:func:`project_containers` with, for each container, the directory and the compose files
    Compose created it from (its labels, as JSON strings: a path may hold spaces)."""
    fmt = "{{.ID}} " + " ".join('{{json (.Label "' + label + '")}}' for label in
                                (COMPOSE_SERVICE_LABEL, COMPOSE_WORKING_DIR_LABEL, COMPOSE_CONFIG_FILES_LABEL))
    return (f"docker ps -a --no-trunc --filter label={COMPOSE_PROJECT_LABEL}={q(project)} "
            f"--filter {q(f'label={COMPOSE_ONEOFF_LABEL}=False')} --format {q(fmt)}")


@dataclass(frozen=True)
class CreatedFrom:
    id: str
    service: str
    working_dir: str
    config_files: tuple[str, ...]


def parse_created_from(stdout: str) -> list[CreatedFrom] | None:
    """Rows of :func:`project_containers_created_from`; None when a line is not one (say nothing
    rather than half)."""
    rows = []
    decoder = json.JSONDecoder()
    for line in stdout.splitlines():
        if not line.strip():
            continue
        cid, _, rest = line.strip().partition(" ")
        values = []
        try:
            while rest.strip():
                value, end = decoder.raw_decode(rest.strip())
                values.append(value)
                rest = rest.strip()[end:]
        except ValueError:
            return None
        if not _CONTAINER_ID.match(cid) or len(values) != 3 or not all(isinstance(v, str) for v in values):
            return None
        rows.append(CreatedFrom(cid, values[0], values[1], tuple(f for f in values[2].split(",") if f)))
    return rows


_ID_SERVICE = re.compile(r"^([0-9a-f]{12,64}) (\S+)$")
_CONTAINER_ID = re.compile(r"^[0-9a-f]{12,64}$")


def logs_of(container_ids: Sequence[str], tail: int, mark: str) -> str:
    """The last ``tail`` log lines of several containers in one round trip, each after a line
    ``MARK ID`` (``mark`` is per run, so a log line cannot pose as one): what ``compose logs
    --tail`` shows per service, without starting Compose. stderr is merged into stdout."""
    if not re.fullmatch(r"[A-Za-z0-9@_-]{8,}", mark):
        raise UnsafeValue(f"log marker {mark!r} must be 8 or more letters, digits, @, _ or -")
    parts = []
    for cid in container_ids:
        if not _CONTAINER_ID.match(cid):
            raise UnsafeValue(f"container ID {cid!r} is not 12 to 64 hex digits")
        parts.append(f"echo {mark} {cid}; docker logs --tail {int(tail)} {cid} 2>&1")
    return "; ".join(parts) or "true"


def parse_logs_of(stdout: str, mark: str) -> dict[str, str]:
    """Container ID -> its log text, from :func:`logs_of`'s output."""
    out: dict[str, list[str]] = {}
    current = None
    for line in stdout.splitlines():
        # Found anywhere in the line: a log that ends without a newline (a container killed
        # mid-line) glues the next separator to its last line. The mark is per run: not forgeable.
        torn, found, cid = line.rpartition(mark + " ")
        if found and _CONTAINER_ID.match(cid):
            if torn and current is not None:
                current.append(torn)
            current = out.setdefault(cid, [])
        elif current is not None:
            current.append(line)
    return {cid: "\n".join(lines) for cid, lines in out.items()}


def exec_in(container_id: str, argv: Sequence[str], stdin: bool = False) -> str:
    """``docker exec`` into one container by ID: what ``compose exec -T SERVICE`` does (no TTY, no
    stdin unless asked; the container's own environment, user and working directory), without
    starting Compose (~0.1 s on v2, ~0.5 s on v1)."""
    if not _CONTAINER_ID.match(container_id):
        raise UnsafeValue(f"container ID {container_id!r} is not 12 to 64 hex digits")
    return f"docker exec {'-i ' if stdin else ''}{container_id} {join(argv)}"


def parse_project_containers(stdout: str, services: Iterable[str] = ()) -> list[str]:
    """Container IDs from :func:`project_containers`, of ``services`` (all when empty); lines that
    are not ``ID SERVICE`` (a warning, a container without the service label) are ignored."""
    wanted = set(services)
    found = (_ID_SERVICE.match(line.strip()) for line in stdout.splitlines())
    return [m.group(1) for m in found if m and (not wanted or m.group(2) in wanted)]


def image_inspect(refs: Sequence[str]) -> str:
    """Image ID and repo digests, one JSON object per line; a missing image prints nothing for it.

    One call for all: the Docker CLI inspects each reference in turn, prints what it found and
    reports the missing ones only at the end (exit 1, ignored here), so a missing image hides
    nothing; one call per image cost ~30 ms of CLI start-up each."""
    for r in refs:
        check_image(r)
    fmt = '{"id":{{json .Id}},"digests":{{json .RepoDigests}},"tags":{{json .RepoTags}}}'
    return f"docker image inspect --format {q(fmt)} -- {' '.join(q(r) for r in refs)} 2>/dev/null ; true"


@dataclass(frozen=True)
class ImageInfo:
    id: str
    digests: tuple[str, ...]
    tags: tuple[str, ...]


def parse_image_inspect(stdout: str) -> list[ImageInfo]:
    infos = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        d = json.loads(line)
        infos.append(ImageInfo(d.get("id") or "", tuple(d.get("digests") or ()), tuple(d.get("tags") or ())))
    return infos


def tag(image_id: str, ref: str) -> str:
    return f"docker tag {q(check_image(image_id))} {q(check_image(ref))}"


def pull(ref: str) -> str:
    return f"docker pull --quiet {q(check_image(ref))}"


def stats(names: Sequence[str]) -> str:
    return "docker stats --no-stream --format '{{json .}}' -- " + join(names)


@dataclass(frozen=True)
class Stats:
    name: str
    id: str
    cpu: str
    mem_usage: int     # bytes
    mem_limit: int     # bytes
    mem_percent: float


_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}


def parse_size(text: str) -> int:
    m = re.match(r"^\s*([0-9.]+)\s*([A-Za-z]*)\s*$", text or "")
    if not m:
        return 0
    unit = (m.group(2) or "b").lower()
    return int(float(m.group(1)) * _UNITS.get(unit, 1))


def parse_stats(stdout: str) -> list[Stats]:
    out = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        d = json.loads(line)
        usage, _, limit = (d.get("MemUsage") or "").partition("/")
        try:
            pct = float((d.get("MemPerc") or "0").rstrip("%") or 0)
        except ValueError:
            pct = 0.0
        out.append(Stats(d.get("Name", ""), d.get("ID", ""), d.get("CPUPerc", ""),
                         parse_size(usage), parse_size(limit), pct))
    return out


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
