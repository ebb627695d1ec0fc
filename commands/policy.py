"""Decisions the flow makes, as pure functions of what it knows (no SSH): when to put the previous
images back automatically, and which exit code a failure of a given kind of run gets."""
from __future__ import annotations

from dataclasses import dataclass

# Exit codes, mirrored from tasks/errors.py's ExitCode (commands/ imports nothing of tasks/).
UNHEALTHY, CONNECTION, ROLLBACK_FAILED = 4, 5, 8


@dataclass(frozen=True)
class FailureFacts:
    """What is known when a step failed."""
    code: int                   # the failure's exit code
    step_recoverable: bool      # the failing step is one after which the previous images may be put back
    services_touched: bool      # a command that changes what serves has run
    before_images: bool         # images were recorded before anything changed
    before_healthy: bool        # ... and they served healthily then
    auto_rollback: bool         # AUTO_ROLLBACK
    dry: bool = False
    host_reachable: bool = True


def should_auto_rollback(f: FailureFacts) -> bool:
    """Put the recorded previous images back when health or smoke failed (or the connection was
    lost) after the services were switched, and the previous images are known to have served
    healthily. Never in a dry run, never on an unreachable host, never for a failure before the
    switch (a failed pull or migration changed nothing that serves)."""
    return (f.auto_rollback and not f.dry and f.host_reachable and f.services_touched and f.step_recoverable
            and f.code in (UNHEALTHY, CONNECTION) and f.before_images and f.before_healthy)


def run_exit_code(kind: str, code: int) -> int:
    """A rollback whose target fails its health checks is a failed rollback (escalate), not an
    unhealthy deploy."""
    return ROLLBACK_FAILED if kind == "rollback" and code == UNHEALTHY else code


@dataclass(frozen=True)
class Change:
    service: str
    want: dict           # {ref, id, digests} of the target image
    ref: str             # the image reference the service uses, to point at the target image ID


@dataclass(frozen=True)
class RestorePlan:
    changes: tuple[Change, ...]     # services whose image must change: retag, then recreate
    restart: tuple[str, ...]        # services on the right image whose container is stopped or unhealthy

    @property
    def nothing_to_do(self) -> bool:
        return not self.changes and not self.restart

    @property
    def services(self) -> list[str]:
        return [c.service for c in self.changes] + list(self.restart)


def plan_restore(services, target: dict, current: dict, running: set, target_refs: bool = False) -> RestorePlan:
    """What putting ``target`` (service -> {ref, id, digests}) back takes, given the images that run
    now and the services whose container runs and is not unhealthy. Services the target does not
    name are left alone. ``target_refs``: the target's own recorded references are pointed at its
    IDs (the variable of ``fab deploy --version`` was set back, so Compose resolves those); else
    the references the services use now (a mutable tag such as ``latest``)."""
    changes, restart = [], []
    for svc in services:
        want = target.get(svc)
        if not want or not want.get("id"):
            continue
        have = current.get(svc) or {}
        if have.get("id") != want["id"]:
            ref = (want.get("ref") or have.get("ref")) if target_refs else (have.get("ref") or want.get("ref"))
            changes.append(Change(svc, want, ref))
        elif svc not in running:
            restart.append(svc)
    return RestorePlan(tuple(changes), tuple(restart))
