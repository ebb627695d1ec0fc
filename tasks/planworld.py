"""The plan world: the host ``fab plan`` runs the real deploy flow against. Nothing connects; this
module answers each command the flow issues the way such a host would, and changes as the
commands that change a host run (a pull brings a new image, ``up`` recreates containers, ...).

The world, as the deploy finds it (:class:`PlanWorld` with its defaults):
- every service (DEPENDENCY_SERVICES, SERVICES) runs one container, healthy, on the previous
  release; the health URL answers 200 with version ``v1``;
- the checkout is clean, on GIT_BRANCH, one commit behind GIT_REMOTE/GIT_BRANCH;
- the database is at revision 0001; the incoming release adds 0002 (one pending migration);
  TESTED_ON_STAGE (if set) has applied 0002 already;
- ENV_FILES and SECRET_FILES exist with the same keys; ENV_EXAMPLE documents them, also in the
  incoming release;
- the deploy lock is free; every command that changes the host succeeds; the monitoring URL and
  the webhook answer 200;
- the incoming release has a new image for the backend (BACKEND_SERVICE, else the first of
  SERVICES); the other images are unchanged. After ``up`` every container is running and healthy
  (at once: every wait and poll ends at its first look) and the health URL reports ``v2``.
Variants, for the paths a deploy can take: ``running=False`` (nothing runs yet: a first
deploy) and ``healthy_after_up=False`` (the new backend is unhealthy after ``up``: auto-rollback).

Commands are recognised as their builders make them (tasks/plananswers.py); a command the world
does not know is answered "exit 0, no output" and marked, so the plan says so.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field

from config import Settings

OLD_COMMIT = hashlib.sha1(b"ai-doc-qa plan world: the release running now").hexdigest()
NEW_COMMIT = hashlib.sha1(b"ai-doc-qa plan world: the incoming release").hexdigest()
MIGRATIONS = (("0001", None, "0001_create_documents.py", "create documents table"),
              ("0002", "0001", "0002_add_summary.py", "add summary column to documents"))
ENV_KEYS = ("APP_ENV", "LOG_LEVEL", "SUMMARY_MAX_CHARS")
COMPOSE_VERSIONS = {"docker compose": "v2 2.26.1", "docker-compose": "v1 1.29.2"}


@dataclass(frozen=True)
class PlanWorld:
    """Which path of the deploy the plan follows (see the module's docstring for the rest)."""
    running: bool = True               # False: no container at all (a first deploy)
    healthy_after_up: bool = True      # False: the new backend is unhealthy after `up`
    database: str = "0001"             # the database's revision ("" for none)


@dataclass
class Container:
    id: str
    service: str
    ref: str
    image_id: str
    healthy: bool = True
    running: bool = True               # False once `compose stop`ped (a blue/green slot): still listed by ps -a


def _hex(text: str, n: int = 64) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def image_ref(service: str) -> str:
    """The image reference a service uses in the plan world (always a valid reference)."""
    name = re.sub(r"[^a-z0-9]+", "-", service.lower()).strip("-") or "service"
    return f"registry.example.com/ai-doc-qa/{name}:latest"


def image_id(service: str, version: str) -> str:
    return "sha256:" + _hex(f"image {service} {version}")


PROJECT = "ai-doc-qa"     # the Compose project of the plan world's containers (their label)


@dataclass
class PlanHost:
    """The plan world's host for one stage, as it changes while the flow runs."""
    settings: Settings
    world: PlanWorld
    compose_command: str
    head: str = OLD_COMMIT
    database: str = ""
    containers: dict = field(default_factory=dict)     # service -> Container
    tags: dict = field(default_factory=dict)           # image reference -> image ID
    versions: dict = field(default_factory=dict)       # image ID -> release name
    generation: int = 0
    env_tag: str = ""           # IMAGE_TAG_VARIABLE in the app dir's .env: unset (a first --version deploy)

    def __post_init__(self):
        self.database = self.world.database
        for svc in self.all_services:
            self._learn(svc, "v1")
            if self.world.running:
                self._recreate(svc)

    # -- what is there ---------------------------------------------------------------------------
    @property
    def all_services(self) -> list[str]:
        st = self.settings
        return list(dict.fromkeys([*st.dependency_services, *st.services]))

    @property
    def changed(self) -> str:
        """The service the incoming release brings a new image for."""
        st = self.settings
        return st.backend_service if st.backend_service in st.services else st.services[0]

    def _learn(self, svc: str, version: str) -> None:
        iid = image_id(svc, version)
        self.tags[image_ref(svc)] = iid
        self.versions[iid] = version

    def ref(self, svc: str) -> str:
        """Under STRATEGY=blue-green the second slot runs the backend's image (Compose's
        ``image:`` of both slots is the same); `fab plan` died on a KeyError without this."""
        st = self.settings
        same = st.strategy == "blue-green" and svc == st.blue_green_slot
        return image_ref(st.backend_service if same else svc)

    def _recreate(self, svc: str) -> None:
        self.generation += 1
        ref = self.ref(svc)
        iid = self.tags[ref]
        healthy = self.world.healthy_after_up or self.versions[iid] == "v1" or svc not in (self.changed, self.ref_slot)
        self.containers[svc] = Container(_hex(f"container {self.settings.stage} {svc} {self.generation}"), svc, ref, iid, healthy)

    @property
    def ref_slot(self) -> str:
        """The second blue/green slot ("" under recreate): unhealthy like the backend in that variant."""
        return self.settings.blue_green_slot if self.settings.strategy == "blue-green" else ""

    def by_id(self, cid: str) -> Container | None:
        return next((c for c in self.containers.values() if c.id == cid), None)

    # -- what changes it ---------------------------------------------------------------------------
    # Each returns what the command prints (nothing).
    def pull(self) -> str:
        self._learn(self.changed, "v2")
        return ""

    def up(self, services: list[str]) -> str:
        """``compose up -d``: create what is missing, recreate what runs another image."""
        for svc in services or self.all_services:
            c = self.containers.get(svc)
            if c is None or c.image_id != self.tags.get(self.ref(svc)):
                self._recreate(svc)
            elif not c.running:
                c.running = True
        return ""

    def stop(self, services: list[str]) -> str:
        """``compose stop``: the blue/green switch stops the slot that served."""
        for svc in services:
            if svc in self.containers:
                self.containers[svc].running = False
        return ""

    def tag(self, iid: str, ref: str) -> str:
        self.tags[ref] = iid
        return ""

    def set_env_tag(self, tag: str) -> str:
        self.env_tag = tag
        return ""

    def merge(self) -> str:
        self.head = NEW_COMMIT
        return ""

    def migrate(self) -> str:
        before, self.database = self.database, MIGRATIONS[-1][0]
        steps = [m for m in MIGRATIONS if m[0] > before]
        return ("@@before\n" + (f"{before}\n" if before else "") + "@@upgrade\n"
                + "".join(f"INFO  [alembic.runtime.migration] Running upgrade {m[1] or ''} -> {m[0]}, {m[3]}\n" for m in steps)
                + f"@@after\n{self.database} (head)\n@@history\n" + self.history())

    # -- what it answers ---------------------------------------------------------------------------
    def serving(self) -> tuple[int, str]:
        """(curl exit code, body + status line) of any URL the backend serves."""
        slots = (self.containers.get(svc) for svc in (self.changed, self.ref_slot) if svc)
        c = next((x for x in slots if x and x.running), None)
        if c is None:
            return 7, ""
        if not c.healthy:
            return 0, '{"status": "error"}\n@@status 500 0.004'
        return 0, json.dumps({"status": "ok", "version": self.versions[c.image_id]}) + "\n@@status 200 0.004"

    def inspect(self, ids: list[str]) -> str:
        found = [c for c in map(self.by_id, ids) if c]
        return json.dumps([{
            "Id": c.id, "Name": f"/ai-doc-qa-{c.service}-1", "Image": c.image_id, "RestartCount": 0,
            "State": {"Status": "running" if c.running else "exited", "Running": c.running, "OOMKilled": False, "ExitCode": 0,
                      "Health": {"Status": "healthy" if c.healthy else "unhealthy",
                                 "Log": [{"Output": "ok" if c.healthy else "HTTP 500"}]}},
            "Config": {"Image": c.ref, "Labels": {"com.docker.compose.service": c.service,
                                                  "com.docker.compose.project": PROJECT}},
            "HostConfig": {"Memory": 0}} for c in found], indent=4)

    def image_inspect(self, refs: list[str]) -> str:
        lines = []
        for ref in refs:
            iid = self.tags.get(ref, ref)
            if iid in self.versions:
                repo = next((r for r, i in self.tags.items() if i == iid), ref).rsplit(":", 1)[0]
                lines.append(json.dumps({"id": iid, "digests": [f"{repo}@sha256:{_hex('digest ' + iid)}"],
                                         "tags": [r for r, i in self.tags.items() if i == iid]}))
        return "\n".join(lines)

    def config_images(self, tag: str) -> str:
        """``VAR=TAG compose config --images``: the incoming release's image uses the variable."""
        return "".join((image_ref(svc).rsplit(":", 1)[0] + ":" + tag if svc == self.changed else image_ref(svc)) + "\n"
                       for svc in self.all_services)

    def project_containers(self, project: str) -> str:
        return "".join(f"{c.id} {svc}\n" for svc, c in self.containers.items())   # any project: a model

    def created_from(self, project: str) -> str:
        """The containers by the default project name, each created from the app dir and its compose file."""
        st = self.settings
        where = [json.dumps(st.app_dir), json.dumps(f"{st.app_dir.rstrip('/')}/{st.compose_file}")]
        return "".join(f"{c.id} {json.dumps(svc)} {' '.join(where)}\n" for svc, c in self.containers.items())

    def ps_ids(self, services: list[str]) -> str:
        return "".join(f"{c.id}\n" for svc, c in self.containers.items() if not services or svc in services)

    def current(self) -> str:
        return f"{self.database} (head)\n" if self.database else ""

    def history(self) -> str:
        return "".join(f"{m[1] or '<base>'} -> {m[0]}{' (head)' if i == len(MIGRATIONS) - 1 else ''}, {m[3]}\n"
                       for i, m in reversed(list(enumerate(MIGRATIONS))))

    def migration_headers(self, remote: str) -> str:
        path = self.settings.migrations_path
        return "".join(f"{remote}:{path}/{name}:revision = '{rev}'\n{remote}:{path}/{name}:down_revision = "
                       + (f"'{down}'" if down else "None") + "\n" for rev, down, name, _ in MIGRATIONS)

    def migration_source(self, path: str) -> str | None:
        """The incoming release's revision file: each adds what its message says, safely (nullable)."""
        for rev, down, name, message in MIGRATIONS:
            if path == f"{self.settings.migrations_path}/{name}":
                body = ("op.create_table('documents', sa.Column('id', sa.Integer, primary_key=True))" if down is None
                        else "op.add_column('documents', sa.Column('summary', sa.Text, nullable=True))")
                return (f'"""{message}"""\nimport sqlalchemy as sa\nfrom alembic import op\n\nrevision = {rev!r}\n'
                        f"down_revision = {down!r}\n\n\ndef upgrade():\n    {body}\n")
        return None

    def file(self, path: str) -> str | None:
        st = self.settings
        app = st.app_dir.rstrip("/")
        if st.env_example and path in (f"{app}/{st.env_example}", st.env_example):
            return "".join(f"{k}=\n" for k in ENV_KEYS)
        names = {n if n.startswith("/") else f"{app}/{n}" for n in (*st.env_files, *st.secret_files)}
        return "".join(f"{k}=plan-world-{k.lower()}\n" for k in ENV_KEYS) if path in names else None

    def log(self, old: str, new: str) -> str:
        return f"{new[:7]} Release v2: document summaries (migration 0002, SUMMARY_MAX_CHARS)\n" if (old, new) == (OLD_COMMIT, NEW_COMMIT) else ""

    def state(self) -> str:
        return f"{self.head}\n{self.settings.git_branch}\n"

    def behind(self) -> str:
        return "0\t0\n" if self.head == NEW_COMMIT else "1\t0\n"

    def tested_stage(self, settings: Settings) -> "PlanHost":
        """TESTED_ON_STAGE's host: the incoming migrations are applied there already."""
        compose = settings.compose_command if settings.compose_command != "auto" else "docker compose"
        return PlanHost(settings, dataclasses.replace(self.world, database=MIGRATIONS[-1][0], running=True), compose)
