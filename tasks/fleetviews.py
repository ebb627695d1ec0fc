"""The fleet forms of `status` and `history` (tasks/fleetread.py reads the hosts): the per-host
table's cells, what is said after it (hosts that serve different versions, records that differ)
and what the one ``--json`` document adds."""
from __future__ import annotations

from commands import fleetview
from commands.docker import short_image_id
from tasks.fleetread import CHECK, Across, HostReport

__all__ = ["CHECK", "HISTORY", "STATUS"]


# ---- status ----------------------------------------------------------------------------------------

def serving(r: HostReport) -> str:
    """What the host serves: the version its HEALTH_URL reports, else its backend's image ID; '' unknown."""
    d = r.found if isinstance(r.found, dict) else None
    if not d:
        return ""
    if d["health_url"]["version"]:
        return d["health_url"]["version"]
    backend = r.session.settings.backend_service if r.session else "backend"
    ids = [c["image_id"] for c in d["services"] if c["service"] == backend]
    return f"image {short_image_id(ids[0])}" if ids else ""


def status_row(r: HostReport) -> list:
    d = r.found if isinstance(r.found, dict) else None
    if not d:
        return ["-", "?", "-", "-"]
    health = "healthy" if d["healthy"] and d["health_url"]["ok"] else f"NOT healthy ({len(d['problems']) or 'health URL failing'})"
    last = d["last_release"]
    lock = d["lock"]
    return [health, serving(r) or "?", f"{last['id']} {last['outcome']}" if last else "none",
            "free" if lock["described"] == "free" else ("held (STALE)" if lock["stale"] else "held")]


def status_verdict(reports: list[HostReport]) -> list[str]:
    found = split_of(reports)
    return [found] if found else []


def split_of(reports: list[HostReport]) -> str:
    return fleetview.split({r.host: serving(r) for r in reports})


def status_document(reports: list[HostReport]) -> dict:
    versions = {r.host: serving(r) or None for r in reports}
    return {"versions": versions, "fleet_split": split_of(reports) or None}


STATUS = Across(("health", "serving", "last release", "lock"), status_row,
                document=status_document, verdict=status_verdict)


# ---- history ---------------------------------------------------------------------------------------

def last_release(r: HostReport) -> dict | None:
    d = r.found if isinstance(r.found, dict) else None
    return d["releases"][-1] if d and d["releases"] else None


def next_rollback(r: HostReport) -> str:
    d = r.found if isinstance(r.found, dict) else None
    cands = [c for c in (d or {}).get("rollback_candidates", []) if c["note"] == "next bare rollback"]
    return (cands[0]["release"] if cands[0]["release"] != "-" else cands[0]["images"]) if cands else "-"


def history_row(r: HostReport) -> list:
    last = last_release(r)
    if r.found is None:
        return ["-", "-", "-"]
    return [last["id"] if last else "none", f"{last['kind']} {last['outcome']}" if last else "-", next_rollback(r)]


def history_verdict(reports: list[HostReport]) -> list[str]:
    read = [r for r in reports if r.found is not None]
    lasts = {r.host: (last_release(r) or {}).get("id", "") for r in read}
    said = fleetview.differ(lasts, "last release")
    return [said + " (a fleet release has one id on every host)"] if said else []


HISTORY = Across(("last release", "kind, outcome", "next bare rollback"), history_row, verdict=history_verdict)
