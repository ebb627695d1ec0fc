"""The release record on the host: ``<APP_DIR>/.deploy/releases.jsonl``, JSON lines appended step
by step so a crash still leaves a trail (who, when, stage, git before/after, images before/after,
steps with timings, outcome). Also the pure logic that reads it back: history and rollback targets.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable, Mapping, Sequence

from commands.shell import check_path, q

SCHEMA_VERSION = 1
OUTCOMES = ("success", "failed", "rolled_back", "aborted")


def new_release_id(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def line(release: str, event: str, **data) -> str:
    return json.dumps({"v": SCHEMA_VERSION, "release": release, "event": event, "at": utc_now(), **data},
                      sort_keys=True, separators=(",", ":"))


def append(path: str, text_line: str) -> str:
    """Append one line, creating the directory; ``printf %s`` so the line is never interpreted."""
    check_path(path, "record file")
    directory = path.rsplit("/", 1)[0]
    return f"mkdir -p {q(directory)} && printf '%s\\n' {q(text_line)} >> {q(path)}"


def read(path: str, last: int = 2000) -> str:
    check_path(path, "record file")
    return f"tail -n {int(last)} {q(path)} 2>/dev/null || true"


def parse(text: str) -> list[dict]:
    """Every well-formed line; a torn last line (crash mid-write) is skipped, not fatal."""
    out = []
    for raw in text.splitlines():
        raw = raw.strip()
        if not raw.startswith("{"):
            continue
        try:
            out.append(json.loads(raw))
        except json.JSONDecodeError:
            continue
    return out


@dataclass
class Release:
    id: str
    kind: str = "deploy"
    stage: str = ""
    host: str = ""
    who: str = ""
    started: str = ""
    ended: str = ""
    outcome: str = "incomplete"         # until an "end" line says otherwise
    git_before: str = ""
    git_after: str = ""
    images_before: dict = field(default_factory=dict)
    before_healthy: bool = False
    images_after: dict = field(default_factory=dict)
    after_healthy: bool = False
    steps: list = field(default_factory=list)
    seconds: float = 0.0
    bottleneck: str = ""
    error: dict = field(default_factory=dict)
    serving: str = ""
    migrations: dict = field(default_factory=dict)
    note: str = ""


def releases(lines: Iterable[dict]) -> list[Release]:
    """Fold the lines into releases, oldest first."""
    by_id: dict[str, Release] = {}
    order: list[str] = []
    for d in lines:
        rid = d.get("release")
        if not rid:
            continue
        if rid not in by_id:
            by_id[rid] = Release(id=rid)
            order.append(rid)
        r = by_id[rid]
        ev = d.get("event")
        if ev == "start":
            r.kind = d.get("kind", r.kind)
            r.stage, r.host, r.who = d.get("stage", ""), d.get("host", ""), d.get("who", "")
            r.started = d.get("at", "")
            r.git_before = d.get("git_before", "") or r.git_before
            r.note = d.get("note", "")
        elif ev == "images_before":
            r.images_before = d.get("images") or {}
            r.before_healthy = bool(d.get("healthy"))
        elif ev == "images_after":
            r.images_after = d.get("images") or {}
            r.after_healthy = bool(d.get("healthy"))
        elif ev == "git":
            r.git_before = d.get("before", r.git_before)
            r.git_after = d.get("after", r.git_after)
        elif ev == "step":
            r.steps.append({k: d.get(k) for k in ("step", "sub", "seconds", "ok")})
        elif ev == "migrations":
            r.migrations = {k: d.get(k) for k in ("before", "after")}
        elif ev == "end":
            r.outcome = d.get("outcome", r.outcome)
            r.ended = d.get("at", "")
            r.seconds = float(d.get("seconds") or 0)
            r.bottleneck = d.get("bottleneck", "")
            r.error = d.get("error") or {}
            r.serving = d.get("serving", "")
    return [by_id[i] for i in order]


def image_ids(images: Mapping[str, Mapping]) -> dict[str, str]:
    return {svc: (img or {}).get("id", "") for svc, img in images.items()}


@dataclass(frozen=True)
class Candidate:
    release: str
    when: str
    source: str                 # "after release X (healthy)" or "before release X (healthy)"
    images: Mapping[str, Mapping]


def rollback_candidates(rels: Sequence[Release], services: Sequence[str]) -> list[Candidate]:
    """Image sets known to have served healthily, newest first, duplicates removed.

    Only two kinds of evidence count (never a half-finished release, the complaint against
    Capistrano and Deployer): the images a release left running when it ended ``success``
    (health and smoke passed), and the images observed running *and healthy* before a release
    changed anything.
    """
    found: list[Candidate] = []
    for r in rels:
        if r.before_healthy and r.images_before:
            found.append(Candidate(r.id, r.started, f"running and healthy before {r.kind} {r.id}", r.images_before))
        if r.outcome == "success" and r.after_healthy and r.images_after:
            found.append(Candidate(r.id, r.ended or r.started, f"deployed by {r.kind} {r.id} (finished healthy)", r.images_after))
    seen: set[tuple] = set()
    out: list[Candidate] = []
    for c in reversed(found):
        key = tuple(sorted((s, (c.images.get(s) or {}).get("id", "")) for s in services if s in c.images))
        if not key or key in seen:
            continue
        seen.add(key)
        out.append(c)
    return out


def choose_target(cands: Sequence[Candidate], current: Mapping[str, str], services: Sequence[str]) -> Candidate | None:
    """The newest candidate that differs from what runs now (by image ID)."""
    for c in cands:
        ids = {s: (c.images.get(s) or {}).get("id", "") for s in services if s in c.images}
        if any(current.get(s, "") != i for s, i in ids.items()):
            return c
    return None
