"""Runbook 3. Deploy services: record the running images, pull, up, wait until healthy.

Runbook notes 3 and 4: the previous images are recorded *before* ``pull`` (a pull of a mutable
tag such as ``latest`` overwrites what ``docker images`` would have shown), and health is
polled until ready or a deadline, never checked once right after ``up -d``.
"""
from __future__ import annotations

import threading
import time
from typing import Sequence

from commands import compose as compose_cmd
from commands import docker as docker_cmd
from commands import health as health_cmd
from commands.docker import ContainerState
from tasks import ui
from tasks.base import operator_task
from tasks.errors import CommandFailed, DeployError, ExitCode
from commands.shell import q
from tasks.session import Session


# ---- reading state --------------------------------------------------------------------------------

def containers(s: Session, services: Sequence[str] = (), env_keys: Sequence[str] = ()) -> list[ContainerState]:
    """Containers of the given services (all services when empty), via ps -q + docker inspect."""
    ids = compose_cmd.parse_ps_ids(s.run(s.compose.ps_ids(services)).stdout)
    if not ids:
        return []
    states = docker_cmd.parse_inspect(s.run(docker_cmd.inspect(ids)).stdout, env_keys)
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


def serving_label(s: Session, images: dict, version: str | None = None) -> str:
    v = f"version {version} " if version else ""
    return f"{v}({describe_images(images)})"


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
                              next_step=next_step or f"fab -H {s.host} rollback   (back to the images recorded before this deploy), then fab -H {s.host} diagnose")
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
                              next_step=f"fab -H {s.host} rollback   (back to the images recorded before this deploy), then fab -H {s.host} diagnose")
        time.sleep(s.settings.health_interval)


def observe(s: Session) -> tuple[dict, bool, str | None]:
    """What runs now: images per deployed service, whether all are healthy (containers *and* the
    health URL), and the version the health URL reports. Cached until the next change."""
    if "observed" in s.facts:
        return s.facts["observed"]
    st = s.settings
    states = containers(s, st.services)
    images = images_of(s, states, st.services)
    healthy = health_cmd.evaluate(st.services, states).ready
    version = None
    if healthy:
        check = http_check(s, st.health_url)
        healthy = check.ok
        version = check.version
    s.facts["observed"] = (images, healthy, version)
    return images, healthy, version


class DowntimeProbe:
    """Requests a URL on the host every 0.2 s while the services are switched, on a second SSH
    channel, so the deploy reports the outage it caused instead of assuming zero downtime."""

    def __init__(self, s: Session, url: str):
        self.s, self.url = s, url
        self.stop_file = f"/tmp/{s.run_tag}-probe"
        self.result: health_cmd.Downtime | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.s.dry:
            return
        st = self.s.settings
        limit = int(st.up_timeout + st.health_timeout + 30)

        def loop():
            try:
                r = self.s.run(health_cmd.probe_loop(self.url, self.stop_file, limit), check=False,
                               timeout=limit + 10, quiet=True)
                self.result = health_cmd.parse_probe(r.stdout)
            except Exception:            # measuring must never break a deploy
                self.result = None

        self._thread = threading.Thread(target=loop, name="downtime-probe", daemon=True)
        self._thread.start()

    def stop(self) -> health_cmd.Downtime | None:
        if self._thread is None:
            return None
        try:
            self.s.run(f"touch {q(self.stop_file)}", check=False, quiet=True)
        except Exception:
            return None
        self._thread.join(timeout=10)
        return self.result


# ---- the step -------------------------------------------------------------------------------------------

def record_before(s: Session) -> tuple[dict, bool]:
    """Images now running for each deployed service, and whether they are healthy right now."""
    st = s.settings
    states = containers(s, st.services)
    images = images_of(s, states, st.services)
    verdict = health_cmd.evaluate(st.services, states)
    return images, verdict.ready


def pull(s: Session, step: str = "services › pull") -> None:
    """compose pull of the deployed services. Nothing that runs changes: a failure here leaves the
    old containers serving."""
    st = s.settings
    try:
        s.run(s.compose.pull(st.services), timeout=st.pull_timeout, mutating=True, interruptible=True)
    except CommandFailed as failed:
        raise DeployError.from_command(
            failed, f"pulling the new images of {', '.join(st.services)} failed", step=step,
            state=s.describe_state() + "; no container was restarted",
            next_step="check the image tags and the registry from the host (docker pull <image>), then re-run fab deploy",
        ) from None


def up(s: Session, services: Sequence[str] = (), *, no_deps: bool = False, step: str = "services") -> None:
    st = s.settings
    try:
        s.run(s.compose.up(services, no_deps=no_deps), timeout=st.up_timeout, mutating=True)
    except CommandFailed as failed:
        raise DeployError.from_command(failed, "docker compose up failed", step=f"{step} › up",
                                       code=ExitCode.UNHEALTHY, next_step=f"fab -H {s.host} status") from None


def deploy_services(s: Session, *, pulled: bool = False) -> dict:
    """pull (unless done already) -> up -> wait healthy -> health URL. Returns the images now
    running (the caller has recorded the previous ones)."""
    st = s.settings
    if not pulled:
        with s.timed("services", "pull"):
            pull(s)
    probe = DowntimeProbe(s, st.smoke_urls[0])
    try:
        probe.start()
        with s.timed("services", "up"):
            up(s)
        s.facts["serving"] = "new containers started, not yet healthy (old images recorded)"
        with s.timed("services", "health wait"):
            states = wait_ready(s, [*st.dependency_services, *st.services], st.health_timeout,
                                what="the services did not become healthy", step="services › health wait")
            check = wait_http(s, st.health_url, st.health_timeout, step="services › health wait")
    finally:
        downtime = probe.stop()
    if downtime:
        ui.say(f"      {downtime.describe(st.smoke_urls[0])}")
        if s.recorder:
            s.recorder.write("downtime", url=st.smoke_urls[0], probes=downtime.probes, failed=downtime.failed,
                             longest_seconds=downtime.longest)
    images = images_of(s, states, st.services) if states else {}
    s.facts["serving"] = "serving the new version " + serving_label(s, images, check.version)
    s.facts["version"] = check.version
    ui.say(f"      healthy: {describe_images(images)}" + (f"; {st.health_url} reports version {check.version}" if check.version else ""))
    return images


@operator_task(help={})
def services(s: Session):
    """Runbook 3: record running images, compose pull, up -d, wait until healthy (locked, recorded; no checklist)."""
    from tasks.deploy import run_flow
    run_flow(s, steps=("services",), kind="services")
