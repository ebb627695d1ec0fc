"""What runs on the host, read and polled: containers and their images, health, logs.

Every reader a runbook section needs lives here, so "is the backend running" or "what serves now"
is computed one way. Container state comes from ``docker inspect`` of the containers
tasks/containerids.py names: from ``compose ps -q`` or, once the Compose project is known, by
Compose's labels (works with Compose v1 and v2, runbook note 8).
"""
from __future__ import annotations

import time
from typing import Sequence

from commands import docker as docker_cmd
from commands import health as health_cmd
from commands import slots as slots_cmd
from commands.docker import ContainerState
from tasks import messages, slotstate, ui
from tasks.containerids import container_ids, learn_project, list_and_inspect
from tasks.errors import DeployError, ExitCode
from tasks.runstate import Observation
from tasks.session import Session


def inspect_ids(s: Session, services: Sequence[str], env_keys: Sequence[str] = ()) -> list[ContainerState]:
    """ONE ``docker inspect`` of the known containers of ``services``. A container removed since
    its ID was resolved (by hand, on the host) makes inspect fail: resolve once more, then read."""
    states = list_and_inspect(s, services, env_keys)
    if states is None:
        ids = container_ids(s, services)
        if not ids:
            return []
        r = s.run(docker_cmd.inspect(ids), check=False)
        if not r.ok:
            s.state.container_ids.clear()
            ids = container_ids(s, services)
            if not ids:
                return []
            r = s.run(docker_cmd.inspect(ids))
        states = docker_cmd.parse_inspect(r.stdout, env_keys)
    learn_project(s, states)
    s.state.inspected = (time.monotonic(), tuple(states))
    return states


def last_inspected(s: Session, services: Sequence[str]) -> list[ContainerState] | None:
    """The containers of ``services`` as the run's last ``docker inspect`` read them, when that was
    under RECENT seconds ago, it read every one of them and nothing changed since (a change drops
    it): None otherwise. For a read right after another one (the migration after the database-ready
    poll): a container that stopped since fails the exec as it would a moment after a fresh inspect."""
    at, seen = s.state.inspected or (0.0, ())
    if time.monotonic() - at > RECENT or not set(container_ids(s, services)) <= {c.id for c in seen}:
        return None
    return [c for c in seen if c.service in services]


RECENT = 0.5


def exec_command(s: Session, service: str, argv: Sequence[str], known: Sequence[ContainerState] | None = None) -> str:
    """The command that runs ``argv`` in ``service``'s container: ``docker exec ID`` once the Compose
    project is known (its containers are then found by label, ~15 ms) and the service has exactly
    one running container, which is the one ``compose exec`` would pick; otherwise ``compose exec
    -T SERVICE`` (project unknown, none running, or several: Compose chooses, and says why not).
    ``known``: the service's containers as just inspected (not inspected again)."""
    if s.settings.compose_project or s.state.compose_project:     # (the settings: asking s.compose would wait for the probe)
        running = [c for c in (inspect_ids(s, [service]) if known is None else known) if c.service == service and c.status == "running"]
        if len(running) == 1:
            return docker_cmd.exec_in(running[0].id, argv)
    return s.compose.exec(service, argv)


def exec_sh(s: Session, service: str, command_line: str) -> str:
    """Like :func:`exec_command` for a configured one-line command, run by ``sh -c`` in the container."""
    return exec_command(s, service, ["sh", "-c", command_line])


def containers(s: Session, services: Sequence[str] = (), env_keys: Sequence[str] = (), *,
               recent: bool = False) -> list[ContainerState]:
    """Containers of the given services (all services when empty): IDs resolved once, one docker
    inspect; ``recent``: the run's last inspect instead, when :func:`last_inspected` allows it."""
    pair = slots_cmd.pair(s.settings) if slotstate.enabled(s) and services else ()
    query = slots_cmd.with_slots(services, pair, s.settings.backend_service)
    seen = last_inspected(s, query) if recent and query and not env_keys else None
    states = seen or [c for c in inspect_ids(s, query, env_keys) if not query or c.service in query]
    states = slots_cmd.fold(states, pair, s.settings.backend_service) if pair else states   # blue/green: the serving slot
    wanted = set(services)
    return [c for c in states if not wanted or c.service in wanted]


def images_of(s: Session, states: Sequence[ContainerState], services: Sequence[str], *, digests_too: bool = True) -> dict:
    """service -> {ref, id, digests} of what runs now (digests let a pruned image be pulled back;
    one ``docker image inspect``, left out with ``digests_too=False`` where only the IDs are shown)."""
    by_service = {c.service: c for c in states if c.service in services}
    ids = sorted({c.image_id for c in by_service.values() if c.image_id}) if digests_too else []
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


HTTP_POLL = 0.1     # seconds between polls while the health URL may answer before Docker says healthy


def wait_ready(s: Session, services: Sequence[str], timeout: float, *, what: str, step: str,
               next_step: str | None = None, http: tuple[str, str] | None = None) -> list[ContainerState]:
    """Poll docker inspect until every service is running and healthy; fail fast on unhealthy,
    exited, OOM-killed or restarting containers. ``http`` = (service, health URL): that service is
    also ready once its URL answers while its healthcheck still starts (health.evaluate_http_first)."""
    if s.dry:
        ui.say(f"[dry] would wait up to {timeout:g} s for {', '.join(services)} to be running and healthy")
        return []
    deadline = time.monotonic() + timeout
    baseline: dict[str, int] | None = None
    ask = http is not None          # the URL is asked beside the inspect while it may decide the poll
    while True:
        states, answer = _poll(s, services, http if ask else None)
        if len({c.service for c in states}) < len(services):
            s.state.container_ids.clear()        # a container not created yet: resolve again next poll
        if baseline is None:
            baseline = {c.id: c.restart_count for c in states}
        verdict = _judge(s, services, states, baseline, http, answer)
        ask = http is not None and _starting(states, http[0])
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
        time.sleep(min(s.settings.health_interval, HTTP_POLL) if http else s.settings.health_interval)


def _poll(s: Session, services: Sequence[str], http: tuple[str, str] | None):
    """One poll: the containers, and with ``http`` its URL asked at the same time on another
    channel (a round trip less per poll than asking it after the inspect). Both are read after
    ``up -d`` returned, so the answer is the new container's (health.evaluate_http_first)."""
    inspect = lambda: [c for c in inspect_ids(s, services) if c.service in services]  # noqa: E731
    if http is None:
        return inspect(), None
    states, answer = s.concurrently(inspect, lambda: http_check(s, http[1], s.settings.smoke_timeout))
    return states, answer


def _starting(states: Sequence[ContainerState], service: str) -> bool:
    return any(c.service == service and c.status == "running" and c.health == "starting" for c in states)


def _judge(s: Session, services: Sequence[str], states: Sequence[ContainerState], baseline: dict,
           http: tuple[str, str] | None, answer: health_cmd.HttpCheck | None) -> health_cmd.Readiness:
    s.state.health_answer = None     # only an answer of this very poll stands for the URL (not one seconds old)
    verdict = health_cmd.evaluate(services, states, baseline, redact=s.redactor)
    if verdict.ready or verdict.failed or not http:
        return verdict
    service, url = http
    if not _starting(states, service):
        return verdict      # nothing the URL could change is waiting
    check = answer or http_check(s, url, s.settings.smoke_timeout)
    s.state.health_answer = check if check.ok else None      # wait_http need not ask again
    return health_cmd.evaluate_http_first(services, states, service, check.ok, baseline, redact=s.redactor)


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
    states = containers(s, st.services, recent=True)    # verify's, right after the health wait: no inspect
    verdict = health_cmd.evaluate(st.services, states)
    slot, url = slotstate.serving(s)
    running = not verdict.failed and all(c.status == "running" for c in states)
    # The image records and the health URL at once (two channels); the URL only when it can matter.
    images, check = s.concurrently(lambda: images_of(s, states, st.services),
                                   lambda: http_check(s, url) if running else None)
    healthy, version = False, None
    # Right after an HTTP-first health wait Docker may still say `starting`: the URL decides then.
    if check is not None:
        healthy = check.ok and health_cmd.evaluate_http_first(st.services, states, st.backend_service, check.ok).ready
        version = check.version
    s.state.observed = Observation(images, healthy, version, slot)
    return s.state.observed
