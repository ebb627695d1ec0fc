"""Blue/green slots of the backend, decided without SSH (``STRATEGY=blue-green``).

The backend runs in one of two Compose services, the *slots* (``BACKEND_SERVICE``, "blue", and
``BLUE_GREEN_SLOT``, "green"), each with its own health URL, both behind a proxy that retries the
other upstream when one refuses connections. A switch starts the idle slot on the new image, waits
until it is healthy on its own health URL, and only then stops the slot that served: at every
moment at least one slot serves. A restore (auto-rollback, ``fab rollback``, the clean-up after an
interrupt) is the same move towards the target image, keeping a slot that already serves it.

Everything else in the tool sees one logical service, ``BACKEND_SERVICE``: :func:`fold` relabels
the serving slot's container with that name, so the release record, the rollback plan and the
health evaluation are unchanged.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

from commands.docker import ContainerState

STRATEGIES = ("recreate", "blue-green")


@dataclass(frozen=True)
class Slot:
    service: str          # the Compose service
    health_url: str       # its own health URL (not the proxy's)


@dataclass(frozen=True)
class SlotState:
    service: str
    running: bool
    healthy: bool         # running and not unhealthy/starting (no healthcheck counts as healthy)
    image_id: str = ""


@dataclass(frozen=True)
class SlotPlan:
    start: str | None                 # the slot to bring up (None: a slot already serves the target)
    stop: tuple[str, ...]             # stopped only after ``start`` is healthy
    serves: str                       # the slot that serves once the plan is done


def states_of(slots: Sequence[Slot], containers: Sequence[ContainerState]) -> list[SlotState]:
    """One SlotState per slot, in slot order; a slot without a container is not running."""
    by_service = {c.service: c for c in containers}
    out = []
    for slot in slots:
        c = by_service.get(slot.service)
        running = bool(c and c.status == "running")
        out.append(SlotState(slot.service, running, running and c.health in (None, "healthy"), c.image_id if c else ""))
    return out


def active(states: Sequence[SlotState]) -> str:
    """The slot that serves: the only running one; with both running (a switch under way, or one
    interrupted) the healthy one, else the first; "" when none runs."""
    running = [x for x in states if x.running]
    if len(running) > 1:
        running = [x for x in running if x.healthy] or running
    return running[0].service if running else ""


def idle(states: Sequence[SlotState]) -> str:
    """The slot a switch starts: a slot that does not run (the first such); with both running,
    the one that does not serve."""
    serving = active(states)
    stopped = [x.service for x in states if not x.running]
    if stopped:
        return stopped[0]
    return next(x.service for x in states if x.service != serving)


def switch_plan(states: Sequence[SlotState]) -> SlotPlan:
    """A deploy: start the idle slot on the new image, then stop every other running slot."""
    start = idle(states)
    return SlotPlan(start, tuple(x.service for x in states if x.running and x.service != start), start)


def restore_plan(states: Sequence[SlotState], want_id: str, prefer: str = "") -> SlotPlan:
    """Back to image ``want_id``. A slot that runs it healthily keeps serving (``prefer`` first:
    the slot that served before this run) and the other slots stop. Otherwise ``prefer`` (or the
    idle slot) starts on it and the others stop once it is healthy."""
    ordered = sorted(states, key=lambda x: x.service != prefer)
    keep = next((x.service for x in ordered if x.running and x.healthy and x.image_id == want_id), None)
    if keep:
        return SlotPlan(None, tuple(x.service for x in states if x.running and x.service != keep), keep)
    start = prefer if _may_start(states, prefer) else idle(states)
    return SlotPlan(start, tuple(x.service for x in states if x.running and x.service != start), start)


def _may_start(states: Sequence[SlotState], service: str) -> bool:
    """Starting a slot recreates it if it runs: allowed only while another slot serves meanwhile."""
    slot = next((x for x in states if x.service == service), None)
    return slot is not None and (not slot.running or any(x.running and x.healthy for x in states if x is not slot))


def fold(containers: Sequence[ContainerState], slots: Sequence[Slot], backend: str) -> list[ContainerState]:
    """The containers with the slots replaced by one: the serving slot's container, named
    ``backend`` (a stopped slot's when none runs, so a dead backend is still seen)."""
    names = {slot.service for slot in slots}
    slot_containers = [c for c in containers if c.service in names]
    serving = active(states_of(slots, slot_containers))
    chosen = next((c for c in slot_containers if c.service == serving), None)
    if chosen is None:
        chosen = next((c for slot in slots for c in slot_containers if c.service == slot.service), None)
    rest = [c for c in containers if c.service not in names]
    return rest + ([dataclasses.replace(chosen, service=backend)] if chosen else [])


def with_slots(services: Sequence[str], slots: Sequence[Slot], backend: str) -> list[str]:
    """The Compose services to query for ``services``: the backend stands for all its slots."""
    if backend not in services or not slots:
        return list(services)
    return [x for x in services if x != backend] + [slot.service for slot in slots]


def describe(states: Sequence[SlotState], slots: Sequence[Slot]) -> str:
    """``backend_green serves (http://localhost:8002/health); backend stopped``: for fab status."""
    urls = {slot.service: slot.health_url for slot in slots}
    serving = active(states)
    parts = []
    for x in states:
        if x.service == serving:
            parts.append(f"{x.service} serves ({urls[x.service]})")
        else:
            parts.append(f"{x.service} {'running too' if x.running else 'stopped'}")
    return "; ".join(parts) if serving else "no slot runs: " + "; ".join(parts)


def pair(settings) -> tuple[Slot, Slot]:
    """The two slots from the settings (BACKEND_SERVICE with HEALTH_URL, BLUE_GREEN_SLOT with its URL)."""
    return (Slot(settings.backend_service, settings.health_url),
            Slot(settings.blue_green_slot, settings.blue_green_health_url))


def health_url(slots: Sequence[Slot], service: str, default: str) -> str:
    return next((slot.health_url for slot in slots if slot.service == service), default)
