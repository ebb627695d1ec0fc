"""Reading the blue/green slots on the host (``STRATEGY=blue-green``); the decisions are in
commands/slots.py, the moves in tasks/bluegreen.py."""
from __future__ import annotations

from commands import compose as compose_cmd
from commands import docker as docker_cmd
from commands import slots as slots_cmd
from tasks.session import Session


def enabled(s: Session) -> bool:
    return s.settings.strategy == "blue-green"


def slot_states(s: Session) -> list[slots_cmd.SlotState]:
    """Both slots, running or not, with their health and image (ps -q + docker inspect)."""
    pair = slots_cmd.pair(s.settings)
    ids = compose_cmd.parse_ps_ids(s.run(s.compose.ps_ids([x.service for x in pair])).stdout)
    found = docker_cmd.parse_inspect(s.run(docker_cmd.inspect(ids)).stdout) if ids else []
    return slots_cmd.states_of(pair, found)


def serving(s: Session) -> tuple[str, str]:
    """(the slot that serves, its health URL); under recreate ("", HEALTH_URL)."""
    if not enabled(s):
        return "", s.settings.health_url
    slot = slots_cmd.active(slot_states(s))
    return slot, slots_cmd.health_url(slots_cmd.pair(s.settings), slot, s.settings.health_url)


def exec_service(s: Session) -> str:
    """The service to ``compose exec`` into for the backend (alembic, the db check): the serving
    slot under blue-green (the other one may be stopped), else BACKEND_SERVICE."""
    if not enabled(s):
        return s.settings.backend_service
    return slots_cmd.active(slot_states(s)) or s.settings.backend_service
