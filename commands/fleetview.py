"""What the read tasks (status, history, check-*, diagnose, smoke) conclude over a fleet, pure: one
host's result word, the fleet's exit code, and whether the hosts serve different versions. The
engine that reads the hosts is tasks/fleetread.py."""
from __future__ import annotations

from typing import Mapping, Sequence

from commands import fleet as plan

CONNECTION_CODE = 5
UNKNOWN = "?"


def result_word(code: int, interrupted: bool = False) -> str:
    """The table's result for one host: what the single-host run of the task would have ended in."""
    if interrupted:
        return "interrupted"
    if code == 0:
        return "ok"
    if code == CONNECTION_CODE:
        return "unreachable"
    return f"failed (exit {code})"


def exit_code(codes: Sequence[tuple[str, int]], interrupt_code: int = 0) -> int:
    """(host, code) in HOSTS order -> one exit code, by the fleet deploy's rule (docs/fleets.md):
    0 only if every host ended 0; else the signal's code if interrupted, else 8 if a host's
    rollback failed, else the first host's own non-zero code in HOSTS order."""
    if interrupt_code:
        return interrupt_code
    return plan.exit_code([(h, plan.SUCCESS if c == 0 else plan.FAILED, c) for h, c in codes])


def split(versions: Mapping[str, str]) -> str:
    """"fleet split: web-1, web-2 serve v2; web-3 serves v1" when the hosts whose version is known
    serve more than one; "" when they agree. Hosts whose version is unknown are named apart."""
    by_version: dict[str, list[str]] = {}
    for host, version in versions.items():
        by_version.setdefault(version or UNKNOWN, []).append(host)
    known = [v for v in by_version if v != UNKNOWN]
    if len(known) < 2:
        return ""
    parts = [f"{', '.join(hosts)} {'serve' if len(hosts) > 1 else 'serves'} {v}" for v, hosts in by_version.items()
             if v != UNKNOWN]
    if UNKNOWN in by_version:
        parts.append(f"version unknown on {', '.join(by_version[UNKNOWN])}")
    return "fleet split: " + "; ".join(parts)


def differ(values: Mapping[str, str], what: str) -> str:
    """"last release differs: web-1 R2; web-3 R1" when the hosts do not agree; "" when they do."""
    if len(set(values.values())) < 2:
        return ""
    return f"{what} differs: " + "; ".join(f"{h} {v or '-'}" for h, v in values.items())
