"""What one run knows about the host, typed: what serves, the code and the database, the images
recorded before anything changed. The flow and the steps write it; error blocks, the release
record's ``end`` line and the outcome line read it (:meth:`RunState.describe`)."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Observation:
    """What runs now: images per deployed service, whether all of them are healthy (containers and
    the health URL), and the version the health URL reports."""
    images: dict
    healthy: bool
    version: str | None = None
    slot: str = ""              # STRATEGY=blue-green: the backend slot that serves


@dataclass
class RunState:
    serving: str = ""                  # one line: what the host serves now, as far as this run knows
    migrations: str = ""               # one line: the database revision (and what this run changed)
    git: str = ""                      # one line: the code (and what this run changed)
    before: Observation | None = None  # recorded before anything changed: the rollback evidence
    version: str | None = None         # the version the health URL reported last
    after: Observation | None = None   # what an automatic rollback restored
    slot: str = ""                     # STRATEGY=blue-green: the backend slot this run left serving
    services_touched: bool = False     # a command that changes what serves has run
    changed_at: float | None = None    # monotonic time of the first such command (the change window's start)
    tag_change: tuple[str, str] | None = None   # --version: (variable, its value before this run; "" = unset)
    failed_step: str = ""              # the step of the flow that failed
    pending_migrations: list[str] = field(default_factory=list)
    checked_revision: list[str] | None = None   # the database revision the checklist checked the pending migrations from
    checked_revision_source: str = ""           # how it was read: "alembic_version table" or "alembic current"
    observed: Observation | None = None   # cache of the last observation; dropped by any change
    container_ids: dict = field(default_factory=dict)   # Compose services -> container IDs; dropped by any change
    inspected: tuple = ()              # (monotonic time, states) of the last docker inspect; dropped by any change
    ids_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)   # one resolution at a time
    prefetched: dict = field(default_factory=dict)      # key -> worker.Background: reads started early (Session.prefetch)
    after_fetch: list = field(default_factory=list)     # (incoming ref) -> None: run once the checklist fetched it
    after_reads: list = field(default_factory=list)     # () -> None: run once the checklist's reads are done
    fetched: str = ""                  # the remote ref this run's checklist fetched and checked: prepare merges it as is
    pulled_early: bool = False         # the deploy's pull began during the checklist (tasks/services.py)
    head: str = ""                     # the commit prepare checked out (the early pull compared another: pull again)
    compose_project: str = ""          # the Compose project of the app's containers, from their label
    health_answer: object = None       # the health URL's 2xx answer that made wait_ready ready (HttpCheck)
    record_warned: bool = False        # bad release-record lines were reported once already
    record_unreadable: bool = False    # the release record exists but the SSH user cannot read it
    inconsistent_warned: bool = False  # releases whose events do not add up were reported once already
    env_files: dict = field(default_factory=dict)   # name -> parsed env file (None: missing), read once

    def changed(self) -> None:
        """A command that may change what runs: observe again, resolve the containers again."""
        self.observed = None
        self.container_ids.clear()
        self.inspected = ()

    def touch(self) -> None:
        """A command that changes what serves is about to run: the change window starts (once)."""
        self.services_touched = True
        if self.changed_at is None:
            self.changed_at = time.monotonic()

    def describe(self, override: str | None = None) -> str:
        base = override or self.serving or "not determined yet"
        return "; ".join(x for x in (base, self.migrations, self.git) if x)
