"""Operator messages in one place: the next command to run after a failure, and who is paged.

Every ``Next:`` line names a command the operator can paste; they are built here so the same
situation always gets the same advice.
"""
from __future__ import annotations

import getpass
import socket

from tasks.errors import SETUP

ESCALATION_LABEL = {
    "database": "Database corruption / database failure",
    "infrastructure": "Infrastructure down",
    "security": "Security incident",
}


def fab(host: str, task: str) -> str:
    """``fab -H HOST TASK...``: a command to paste."""
    return f"fab -H {host} {task}"


def status(host: str) -> str:
    return fab(host, "status")


def diagnose(host: str) -> str:
    return fab(host, "diagnose")


def rollback_then_diagnose(host: str) -> str:
    return f"{fab(host, 'rollback')}   (back to the images recorded before this deploy), then {diagnose(host)}"


def rollback_to(host: str, what: str = "<release>") -> str:
    return fab(host, f"rollback --to {what}")


def check_db(host: str, fix: bool = False) -> str:
    return fab(host, "check-db --fix" if fix else "check-db")


def lock(host: str) -> str:
    return fab(host, "lock")


def unlock_force(host: str) -> str:
    return fab(host, "unlock --force")


def lock_goes_stale(host: str, stale_after: float) -> str:
    """What happens to a lock this run could not release."""
    return (f"a deploy lock this run could not release goes stale {stale_after:g} s after its last heartbeat; "
            f"take it over with {unlock_force(host)}, then re-run")


def escalation(kind: str, settings) -> str:
    """Who is paged for a failure of this kind. Escalation rows are for failures on a service; a
    setup error (configuration, first contact with a host) is fixed by the operator."""
    if kind == SETUP:
        return "nobody: a setup problem, not a service failure; fix it as Next says"
    c = settings.contact(kind)
    return (f"{ESCALATION_LABEL.get(kind, kind)} -> {c.team}, response {c.response}"
            + (f" ({c.reach})" if c.reach else ""))


def operator() -> str:
    """Who runs the tool, as user@machine (the record, the lock, notifications)."""
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
