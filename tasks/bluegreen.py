"""``STRATEGY=blue-green`` on the host: bring up the idle backend slot, wait until it answers its
own health URL, then stop the slot that served (the proxy retries the other upstream, so no request
fails). The same move serves a deploy (:func:`switch`) and every restore (:func:`settle`: the
auto-rollback, ``fab rollback`` and the clean-up after an interrupt). A slot is stopped only after
the slot that replaces it is healthy: a failure leaves the old slot serving.
"""
from __future__ import annotations

from typing import Sequence

from commands import slots as slots_cmd
from tasks import messages, ui
from tasks.errors import CommandFailed, DeployError, ExitCode
from tasks.hoststate import wait_http, wait_ready
from tasks.session import Session
from tasks.slotstate import slot_states


def _run(s: Session, command: str, what: str, step: str) -> None:
    s.state.touch()
    try:
        s.run(command, timeout=s.settings.up_timeout, mutating=True)
    except CommandFailed as failed:
        raise DeployError.from_command(failed, what, step=step, code=ExitCode.UNHEALTHY,
                                       next_step=messages.status(s.host)) from None


def bring_up(s: Session, service: str, step: str) -> str:
    """up -d --no-deps the slot, wait until its container is healthy and its own health URL
    answers; returns the version it reports."""
    url = slots_cmd.health_url(slots_cmd.pair(s.settings), service, s.settings.health_url)
    ui.say(f"      blue-green: starting slot {service} ({url})")
    try:
        _run(s, s.compose.up([service], no_deps=True), f"docker compose up of slot {service} failed", f"{step} › up")
        wait_ready(s, [service], s.settings.health_timeout, what=f"the new slot {service} did not become healthy",
                   step=f"{step} › health wait")
        return wait_http(s, url, s.settings.health_timeout, step=f"{step} › health wait").version or ""
    except DeployError as err:
        _stop_failed(s, service, err, step)
        raise


def _stop_failed(s: Session, service: str, err: DeployError, step: str) -> None:
    """A slot that failed to become healthy still takes the proxy's requests (it may listen and
    answer errors): stop it while another slot serves, with or without AUTO_ROLLBACK."""
    serving = [x.service for x in slot_states(s) if x.service != service and x.running and x.healthy]
    if not serving:
        err.details.append(f"the new slot {service} was left as it is: no other slot serves")
        return
    ui.say(f"      blue-green: stopping the failed slot {service}; {serving[0]} still serves")
    _run(s, s.compose.stop([service]), f"docker compose stop of slot {service} failed", f"{step} › stop")
    err.details.append(f"the new slot {service} was stopped; {serving[0]} serves the previous version as before")


def retire(s: Session, services: Sequence[str], step: str) -> None:
    if services:
        ui.say(f"      blue-green: stopping slot {', '.join(services)} (the proxy passes its requests on)")
        _run(s, s.compose.stop(services), f"docker compose stop of slot {', '.join(services)} failed", f"{step} › stop")


def switch(s: Session, step: str) -> str:
    """A deploy's switch of the backend (the new image is pulled); returns the version now serving."""
    plan = slots_cmd.switch_plan(slot_states(s))
    version = bring_up(s, plan.start, step)
    retire(s, plan.stop, step)
    s.state.slot = plan.serves
    return version


def settle(s: Session, want_id: str, prefer: str, step: str) -> None:
    """Leave exactly one slot serving image ``want_id`` (its reference already points at it):
    keep a slot that serves it (``prefer``, the slot of before this run, first), else start one."""
    plan = slots_cmd.restore_plan(slot_states(s), want_id, prefer)
    if plan.start:
        bring_up(s, plan.start, step)
    retire(s, plan.stop, step)
    s.state.slot = plan.serves
