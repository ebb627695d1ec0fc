"""What runs on the host, read and polled: containers and their images, health, logs.

Every reader a runbook section needs lives here, so "is the backend running" or "what serves now"
is computed one way. Container state comes from ``docker inspect`` on the IDs from ``compose ps -q``
(works with Compose v1 and v2, runbook note 8).
"""
from __future__ import annotations

import time
from typing import Sequence

from commands import compose as compose_cmd
from commands import docker as docker_cmd
from commands import health as health_cmd
from commands import slots as slots_cmd
from commands.docker import ContainerState
from tasks import messages, slotstate, ui
from tasks.errors import DeployError, ExitCode
from tasks.runstate import Observation
from tasks.session import Session


def containers(s: Session, services: Sequence[str] = (), env_keys: Sequence[str] = ()) -> list[ContainerState]:
    """Containers of the given services (all services when empty), via ps -q + docker inspect."""
    pair = slots_cmd.pair(s.settings) if slotstate.enabled(s) and services else ()
    ids = compose_cmd.parse_ps_ids(s.run(s.compose.ps_ids(slots_cmd.with_slots(services, pair, s.settings.backend_service))).stdout)
    if not ids:
        return []
    states = docker_cmd.parse_inspect(s.run(docker_cmd.inspect(ids)).stdout, env_keys)
    states = slots_cmd.fold(states, pair, s.settings.backend_service) if pair else states   # blue/green: the serving slot
    wanted = set(services)
    return [c for c in states if not wanted or c.service in wanted]


def images_of(s: Session, states: Sequence[ContainerState], services: Sequence[str]) -> dict:
    """service -> {ref, id, digests} of what runs now (digests let a pruned image be pulled back)."""
    by_service = {c.service: c for c in states if c.service in services}
    ids = sorted({c.image_id for c in by_service.values() if c.image_id})
    digests: dict[str, list[str]] = {}
    if ids:
        for info in docker_cmd.parse_image_inspect(s.run(docker_cmd.image_inspect(ids)).stdout):
            digests[info.id] = list(info.digests)
    return {svc: {"ref": c.image_ref, "id": c.image_id, "digests": digests.get(c.image_id, [])}
            for svc, c in sorted(by_service.items())}


def describe_images(images: dict) -> str:
    if not images:
        return "no service containers"
    return ", ".join(f"{svc} {docker_cmd.short_image_id(i.get('id', ''))}" for svc, i in sorted(images.items()))


def label(images: dict, version: str | None = None) -> str:
    """``v2 (backend 9b7e60c579ae, ...)``: what serves, for progress lines and the host state."""
    return (f"{version} " if version else "") + f"({describe_images(images)})"


def backend_running(s: Session) -> bool:
    return any(c.status == "running" for c in containers(s, [s.settings.backend_service]))


def container_of(s: Session, service: str, env_keys: Sequence[str] = ()) -> ContainerState | None:
    found = containers(s, [service], env_keys)
    return found[0] if found else None


# ---- checks -----------------------------------------------------------------------------------------

def http_check(s: Session, url: str, timeout: float | None = None) -> health_cmd.HttpCheck:
    t = timeout or s.settings.smoke_timeout
    r = s.run(health_cmd.curl(url, t), check=False, timeout=t + 10)
    return health_cmd.parse_curl(url, r.exited, r.stdout, r.stderr)


def logs_tail(s: Session, service: str, lines: int = 20) -> str:
    r = s.run(s.compose.logs(service, lines), check=False)
    return ui.clean(r.stdout + r.stderr).strip()


def wait_ready(s: Session, services: Sequence[str], timeout: float, *, what: str, step: str,
               next_step: str | None = None) -> list[ContainerState]:
    """Poll docker inspect until every service is running and healthy; fail fast on unhealthy,
    exited, OOM-killed or restarting containers."""
    if s.dry:
        ui.say(f"[dry] would wait up to {timeout:g} s for {', '.join(services)} to be running and healthy")
        return []
    deadline = time.monotonic() + timeout
    baseline: dict[str, int] | None = None
    ids: list[str] = []
    while True:
        if not ids or baseline is None or len(ids) < len(services):
            ids = compose_cmd.parse_ps_ids(s.run(s.compose.ps_ids(services)).stdout)
        states = docker_cmd.parse_inspect(s.run(docker_cmd.inspect(ids)).stdout) if ids else []
        states = [c for c in states if c.service in services]
        if baseline is None:
            baseline = {c.id: c.restart_count for c in states}
        verdict = health_cmd.evaluate(services, states, baseline, redact=s.redactor)
        if verdict.ready:
            return states
        if verdict.failed or time.monotonic() > deadline:
            bad = [svc for svc in services if any(x.startswith(svc + " ") or x.startswith(svc + ":")
                                                  for x in verdict.problems + verdict.waiting)]
            output = "\n".join(f"--- {svc} ---\n{logs_tail(s, svc)}" for svc in bad)
            reason = "; ".join(verdict.problems or [f"still waiting after {timeout:g} s: " + "; ".join(verdict.waiting)])
            raise DeployError(f"{what}: {reason}", command="; ".join(s.compose.logs(svc, 20) for svc in bad) or None,
                              output=output, step=step, code=ExitCode.UNHEALTHY, details=verdict.problems + verdict.waiting,
                              next_step=next_step or messages.rollback_then_diagnose(s.host))
        time.sleep(s.settings.health_interval)


def wait_http(s: Session, url: str, timeout: float, *, step: str) -> health_cmd.HttpCheck:
    """Poll the URL (curl on the host) until 2xx or the deadline."""
    if s.dry:
        ui.say(f"[dry] would poll {url} for up to {timeout:g} s")
        return health_cmd.HttpCheck(url, True, 0, 0.0)
    deadline = time.monotonic() + timeout
    while True:
        check = http_check(s, url, min(s.settings.smoke_timeout, max(1.0, deadline - time.monotonic())))
        if check.ok:
            return check
        if time.monotonic() > deadline:
            raise DeployError(f"{url} did not answer 2xx within {timeout:g} s (last: {check.error})",
                              command=health_cmd.curl(url, s.settings.smoke_timeout), output=check.body,
                              step=step, code=ExitCode.UNHEALTHY,
                              next_step=messages.rollback_then_diagnose(s.host))
        time.sleep(s.settings.health_interval)


def observe(s: Session) -> Observation:
    """What runs now: images per deployed service, whether all are healthy (containers *and* the
    health URL), and the version the health URL reports. Cached until the next change."""
    if s.state.observed is not None:
        return s.state.observed
    st = s.settings
    states = containers(s, st.services)
    images = images_of(s, states, st.services)
    healthy = health_cmd.evaluate(st.services, states).ready
    version = None
    slot, url = slotstate.serving(s)
    if healthy:
        check = http_check(s, url)
        healthy = check.ok
        version = check.version
    s.state.observed = Observation(images, healthy, version, slot)
    return s.state.observed
