"""Runbook 3. Deploy services: pull, up, wait until healthy (the previous images are recorded by
the flow before anything changes).

Runbook notes 3 and 4: the previous images are recorded *before* ``pull`` (a pull of a mutable
tag such as ``latest`` overwrites what ``docker images`` would have shown), and health is
polled until ready or a deadline, never checked once right after ``up -d``.
"""
from __future__ import annotations

import threading

from commands import compose as compose_cmd
from commands import git as git_cmd
from commands import health as health_cmd
from tasks import bluegreen, slotstate, ui, versions
from tasks.base import operator_task
from tasks.errors import CommandFailed, DeployError
from tasks.flow import run_flow
from tasks.hoststate import containers, describe_images, images_of, label, wait_http, wait_ready
from tasks.restore import end_change_window, up
from tasks.session import Session
from tasks.steps import RunOptions, Step


class DowntimeProbe:
    """Requests a URL on the host every 0.2 s while the services are switched, on a second SSH
    channel, so the deploy reports the outage it caused instead of assuming zero downtime."""

    def __init__(self, s: Session, url: str):
        self.s, self.url = s, url
        self.stop_file = f"/tmp/{s.run_tag}-probe"
        self.result: health_cmd.Downtime | None = None
        self._thread: threading.Thread | None = None
        self.started = False

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

        self.started = True
        if not self.s.executor.background:
            loop()          # fab plan: no thread; the probe is recorded once, where it starts
            return
        self._thread = threading.Thread(target=loop, name="downtime-probe", daemon=True)
        self._thread.start()

    def stop(self) -> health_cmd.Downtime | None:
        if not self.started:
            return None
        try:
            self.s.run(health_cmd.probe_stop(self.stop_file), check=False, quiet=True)
        except Exception:
            return None
        if self._thread is not None:
            self._thread.join(timeout=10)
        return self.result


def pull(s: Session, step: str, compose: compose_cmd.Compose | None = None) -> None:
    """compose pull of the deployed services. Nothing that runs changes: a failure here leaves the
    old containers serving. ``compose``: the one to pull with, if not the probed one."""
    st = s.settings
    try:
        # bookkeeping: what runs is unchanged, so what was observed stays valid (it may run beside reads).
        s.run((compose or s.compose).pull(st.services), timeout=st.pull_timeout, mutating=True, interruptible=True,
              bookkeeping=True)
    except CommandFailed as failed:
        raise DeployError.from_command(
            failed, f"pulling the new images of {', '.join(st.services)} failed", step=step,
            state=s.describe_state() + "; no container was restarted",
            next_step="check the image tags and the registry from the host (docker pull <image>), then re-run fab deploy",
        ) from None


def switch(s: Session) -> dict:
    """up -> wait healthy -> health URL, with the downtime measured. Returns the images now running."""
    st = s.settings
    probe = DowntimeProbe(s, st.smoke_urls[0])
    try:
        probe.start()
        versions.write_before_up(s)
        if slotstate.enabled(s):
            states, check = _switch_slots(s)
        else:
            with s.timed("services", "up"):
                up(s)
            s.state.serving = "new containers started, not yet healthy (old images recorded)"
            with s.timed("services", "health wait"):
                s.state.health_answer = None
                states = wait_ready(s, [*st.dependency_services, *st.services], st.health_timeout,
                                    what="the services did not become healthy", step="services › health wait",
                                    http=(st.backend_service, st.health_url))
                # The health URL's answer that made the backend ready, else (Docker said healthy) ask it.
                check = s.state.health_answer or wait_http(s, st.health_url, st.health_timeout, step="services › health wait")
    finally:
        downtime = probe.stop()
    if downtime:
        ui.say(f"      {downtime.describe(st.smoke_urls[0])}")
        s.recorder.write("downtime", url=st.smoke_urls[0], probes=downtime.probes, failed=downtime.failed,
                         longest_seconds=downtime.longest)
    end_change_window(s)
    images = images_of(s, states, st.services, digests_too=False) if states else {}   # verify records them with digests
    s.state.serving = "serving the new version " + label(images, check.version)
    s.state.version = check.version
    ui.say(f"      healthy: {describe_images(images)}" + (f"; {check.url} reports version {check.version}" if check.version else ""))
    return images


def _switch_slots(s: Session):
    """STRATEGY=blue-green: the other services are recreated as usual, the backend moves to its
    idle slot (tasks/bluegreen.py). Returns the (folded) container states and the health check."""
    st = s.settings
    others = [x for x in [*st.dependency_services, *st.services] if x != st.backend_service]
    with s.timed("services", "up"):
        up(s, others, no_deps=True)
    with s.timed("services", "health wait"):
        wait_ready(s, others, st.health_timeout, what="the services did not become healthy", step="services › health wait")
    with s.timed("services", "slot switch"):
        bluegreen.switch(s, step="services › slot switch")
    _, url = slotstate.serving(s)
    return containers(s, st.services), wait_http(s, url, st.health_timeout, step="services › health wait")


EARLY_PULL = "pull: begun during the checklist"


def pull_prefetch(s: Session) -> None:
    """A deploy's pull may begin as soon as the checklist has fetched the incoming release (it
    changes nothing that runs, and waits ~0.2 s on v2, ~0.6 s on v1 otherwise)."""
    if not s.dry:
        s.state.after_fetch.append(lambda remote: s.prefetch(EARLY_PULL, lambda: early_pull(s, remote)))


def early_pull(s: Session, remote: str) -> str:
    """Pull now if no compose file (nor a tracked .env) changes at ``remote``: the commit compared
    then; "" if it waits for its step. A failure is pulled again, and reported, by the step."""
    st = s.settings
    r = s.run(git_cmd.unchanged(st.app_dir, remote, compose_cmd.image_naming_files(st.compose_file)), check=False)
    commit = git_cmd.parse_commit(r.stdout)
    if not r.ok or not commit:
        s.compose               # the Compose probe, now, in this thread: the later steps need it
        return ""
    s.state.pulled_early = True
    _pull_before_the_probe(s)
    return commit


def _pull_before_the_probe(s: Session) -> None:
    """The early pull with COMPOSE_COMMAND=auto asks no Compose probe first (~0.1 s of CPU on 2
    shared cores, and its wait): it pulls with ``docker compose``, the probe's first choice, so a
    pull that worked tells what the probe would have found, and the session keeps it. A host
    without it (v1 only) fails at once and is probed, then pulled with what the probe found; a
    failed pull with the probed command is the pull's own failure, reported by the step's pull."""
    st = s.settings
    if s.compose_probed or st.compose_command != "auto":
        pull(s, step="pull")
        return
    guess = compose_cmd.Compose(compose_cmd.V2, st.app_dir, st.compose_file, st.compose_project)
    try:
        pull(s, step="pull", compose=guess)
    except DeployError:
        if s.compose.command == guess.command:
            raise
        pull(s, step="pull")
        return
    with s._compose_lock:                       # as the probe would have (Session._probe_compose)
        if s._compose is None:
            s._compose = guess
    if s.compose.command != guess.command:      # (probed meanwhile, and not v2: not expected)
        pull(s, step="pull")


def pull_step(s: Session, opts: RunOptions) -> None:
    """Pulls unless the early pull did for the very commit prepare checked out (a release pushed
    after the checklist's fetch may name other images)."""
    if s.fetched(EARLY_PULL, lambda: "") != s.state.head or not s.state.head:
        pull(s, step="pull")


def switch_step(s: Session, opts: RunOptions) -> None:
    switch(s)


def services_step(s: Session, opts: RunOptions) -> None:
    """The runbook section on its own: pull, then switch."""
    with s.timed("services", "pull"):
        pull(s, step="services › pull")
    switch(s)


@operator_task(help={})
def services(s: Session):
    """Runbook 3: record running images, compose pull, up -d, wait until healthy (locked, recorded; no checklist)."""
    run_flow(s, (Step("services", services_step, recoverable=True),), RunOptions("services"))
