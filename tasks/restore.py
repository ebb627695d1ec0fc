"""Putting images back: ``compose up`` of deployed services, and restoring a recorded image set.

Runbook note 2: ``docker compose pull backend:previous-tag`` is not valid Compose (``pull`` takes
service names). What works for mutable and immutable tags alike: point the reference the service
uses (e.g. ``registry/backend:latest``) at the recorded image *ID* on the host with ``docker tag``,
then ``up -d --no-deps`` those services. A pruned image is pulled back by its recorded digest.
Used by ``fab rollback``, by the automatic rollback and by the clean-up after an interrupt.
"""
from __future__ import annotations

import time
from typing import Sequence

from commands import docker as docker_cmd
from commands import policy
from tasks import bluegreen, messages, slotstate, ui, versions
from tasks.errors import CommandFailed, DeployError, ExitCode
from tasks.hoststate import containers, images_of, wait_http, wait_ready
from tasks.session import Session


def up(s: Session, services: Sequence[str] = (), *, no_deps: bool = False, step: str = "services") -> None:
    """``compose up -d`` of deployed services: from here on, what serves may have changed."""
    st = s.settings
    s.state.touch()
    try:
        s.run(s.compose.up(services, no_deps=no_deps), timeout=st.up_timeout, mutating=True)
    except CommandFailed as failed:
        raise DeployError.from_command(failed, "docker compose up failed", step=f"{step} › up",
                                       code=ExitCode.UNHEALTHY, next_step=messages.status(s.host)) from None


def end_change_window(s: Session) -> None:
    """A version serves healthily again (the new one after a switch; the restored one after a
    rollback, measured from the run's first change): the change window (issue 9, target 6) ends
    here. It goes into the timing table and the release record (event ``change_window``)."""
    if s.state.changed_at is None or s.dry:
        return
    seconds = round(time.monotonic() - s.state.changed_at, 3)
    s.timer.change_window = seconds
    s.recorder.write("change_window", seconds=seconds, strategy=s.settings.strategy)


def restore(s: Session, target: dict, *, step: str) -> dict:
    """Point each service's image reference at the target image ID and recreate it; wait healthy.
    Returns the images running afterwards."""
    st = s.settings
    states = containers(s, st.services)
    current = images_of(s, states, st.services)
    running = {c.service for c in states if c.status == "running" and c.health in (None, "healthy", "starting")}
    by_tag = versions.restore_variable(s, target, current)      # fab deploy --version: the variable first
    plan = policy.plan_restore(st.services, target, current, running, target_refs=by_tag)
    if slotstate.enabled(s) and target.get(st.backend_service):
        return _restore_slots(s, target, plan, step)
    if plan.nothing_to_do:
        # Still wait: a restore run again after a lost connection (or after Ctrl-C) finds the first
        # try's `up` done, with the backend perhaps still starting: no "healthy" before it is.
        ui.say("      every service already runs the target image: waiting until it is healthy")
        _healthy_again(s, st.services, step)
        return current
    bring_back_pruned(s, plan.changes, step)
    s.state.touch()
    for c in plan.changes:
        ui.say(f"      {c.service}: {c.ref} -> image {docker_cmd.short_image_id(c.want['id'])}")
        s.run(docker_cmd.tag(c.want["id"], c.ref), mutating=True)
    if plan.restart:
        ui.say(f"      {', '.join(plan.restart)}: on the target image but not running and healthy: recreating")
    up(s, plan.services, no_deps=True, step=step)
    _healthy_again(s, plan.services, step)
    return images_of(s, containers(s, st.services), st.services)


def _healthy_again(s: Session, services, step: str) -> None:
    """The restored services healthy and the health URL answering: the version it reports."""
    st = s.settings
    wait_ready(s, services, st.health_timeout, what="the rolled-back services did not become healthy", step=step,
               next_step=f"escalate now; {messages.fab(s.host, 'history')} lists other healthy releases: "
                         f"{messages.rollback_to(s.host)}")
    s.state.version = wait_http(s, st.health_url, st.health_timeout, step=step).version
    end_change_window(s)


def _restore_slots(s: Session, target: dict, plan: policy.RestorePlan, step: str) -> dict:
    """STRATEGY=blue-green: the other services as under recreate; the backend's image reference
    is pointed at the target and a slot serving it is kept (the slot of before this run first)
    or started, and only then the other slot stops. Never neither slot."""
    st = s.settings
    bring_back_pruned(s, plan.changes, step)
    s.state.touch()
    for c in plan.changes:
        ui.say(f"      {c.service}: {c.ref} -> image {docker_cmd.short_image_id(c.want['id'])}")
        s.run(docker_cmd.tag(c.want["id"], c.ref), mutating=True)
    others = [x for x in plan.services if x != st.backend_service]
    if others:
        up(s, others, no_deps=True, step=step)
        wait_ready(s, others, st.health_timeout, what="the rolled-back services did not become healthy", step=step)
    bluegreen.settle(s, target[st.backend_service]["id"], _slot_that_served(s, target), step)
    s.state.version = wait_http(s, slotstate.serving(s)[1], st.health_timeout, step=step).version
    end_change_window(s)
    return images_of(s, containers(s, st.services), st.services)


def _slot_that_served(s: Session, target: dict) -> str:
    """The slot that served the target backend image before this run (auto-rollback, abort): it is
    the one to keep or bring back. "" for any other target (fab rollback): the idle slot starts."""
    before = s.state.before
    backend = s.settings.backend_service
    if before and before.slot and (before.images.get(backend) or {}).get("id") == target[backend]["id"]:
        return before.slot
    return ""


def bring_back_pruned(s: Session, changes: Sequence[policy.Change], step: str) -> None:
    """Pull a target image that is no longer on the host back by its recorded digest."""
    if not changes:
        return
    present = {i.id for i in docker_cmd.parse_image_inspect(
        s.run(docker_cmd.image_inspect([c.want["id"] for c in changes])).stdout)}
    for c in changes:
        if c.want["id"] in present:
            continue
        digests = c.want.get("digests") or []
        if not digests:
            raise DeployError(f"the target image {docker_cmd.short_image_id(c.want['id'])} of {c.service} is no longer on the host "
                              "and has no recorded digest to pull it back",
                              step=step, code=ExitCode.ROLLBACK_FAILED, state=s.describe_state(),
                              next_step=f"roll back to an image tag that is in the registry: {messages.rollback_to(s.host, '<tag>')}")
        try:
            s.run(docker_cmd.pull(digests[0]), timeout=s.settings.pull_timeout, mutating=True)
        except CommandFailed as failed:
            raise DeployError.from_command(failed, f"pulling {c.service}'s target image back by digest failed", step=step,
                                           code=ExitCode.ROLLBACK_FAILED, state=s.describe_state(),
                                           next_step="check the registry, or roll back with --to <tag>") from None


def restore_again_if_cut_off(s: Session, images: dict, *, step: str) -> dict:
    """restore(), once more if the SSH connection was lost under it and is back: the first try's
    must-finish commands (its ``compose up``) are let finish on the host first, then the restore
    runs again from what they left. (Killed twice, during the deploy's ``up`` and the rollback's,
    the run said neither version was healthy while the rollback's ``up`` went on to serve v1.)"""
    try:
        try:
            return restore(s, images, step=step)
        except DeployError as err:
            if err.code != ExitCode.CONNECTION or s.dry or not s.kill_running(let_finish=True):
                raise
            ui.say(f"      {step}: the SSH connection was lost under it and is back: restoring again")
            return restore(s, images, step=step)
    except CommandFailed as failed:     # a command of the restore itself (docker tag, inspect): the caller's error block
        raise DeployError.from_command(failed, "a command of the restore failed", step=step, code=ExitCode.UNHEALTHY,
                                       next_step=messages.status(s.host)) from None
