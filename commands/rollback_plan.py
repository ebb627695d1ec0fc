"""Which image set a rollback goes to, decided from the folded release record (pure: no SSH).

Evidence that an image set served healthily comes in two kinds only (never a half-finished release,
the complaint against Capistrano and Deployer): the images a release left running when it ended
healthy (``success``, or ``rolled_back`` to the previous images), and the images observed running
*and healthy* before a release changed anything.

``rollback --to RELEASE`` means the image set that release left serving healthily (its
``images_after``), looked up in the releases themselves, never in a de-duplicated list of sets.

A bare ``rollback`` means Capistrano's "go back one more": the newest healthy set that differs from
what runs now and that no later successful rollback moved away from. So v1 -> v2 -> v3, rollback
(-> v2), rollback again (-> v1), never back to v3 unless asked for with ``--to``. A set that a
rollback moved away from becomes a bare-rollback target again only when a later release leaves it
serving healthily (a fresh deploy of it, or ``--to`` it); a fresh deploy therefore restarts the chain.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from commands.record import RELEASE_ID, Release
from commands.shell import UnsafeValue, check_image

_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
TO_ACCEPTS = ("a release id or a unique prefix of one (fab history), a tag of the backend's image (v1), "
              "a full image reference (registry/backend:v1) or an image ID (sha256:... or 12-64 hex digits)")
LIMIT_MAX = 100_000


def check_reference(to: object) -> str | None:
    """Why ``--to`` is unusable (checked before any SSH), or None."""
    if to == "" or to is None:
        return None
    if isinstance(to, str) and len(to) > 255:        # Docker's own limit for an image reference
        return f"--to {to[:40]!r}... is not accepted: longer than 255 characters; --to takes {TO_ACCEPTS}"
    if isinstance(to, str) and (_TAG.match(to) or RELEASE_ID.match(to)):
        return None
    try:
        if isinstance(to, str) and check_image(to):
            return None
    except UnsafeValue:
        pass
    return f"--to {to!r} is not accepted: --to takes {TO_ACCEPTS}"


def check_limit(limit: object) -> str | None:
    """Why ``history --limit`` is unusable, or None."""
    text = str(limit).strip() if isinstance(limit, (int, str)) and not isinstance(limit, bool) else ""
    if text.isdigit() and text.isascii() and 1 <= int(text) <= LIMIT_MAX:
        return None
    return f"--limit {limit!r} is not accepted: --limit takes a whole number of releases from 1 to {LIMIT_MAX}, e.g. --limit 20"


def set_key(images: Mapping[str, Mapping], services: Sequence[str]) -> tuple:
    """An image set, by image ID, over the deployed services (tags are mutable: IDs are not)."""
    return tuple(sorted((s, (images.get(s) or {}).get("id", "")) for s in services
                        if s in images and (images.get(s) or {}).get("id")))


def differs(images: Mapping[str, Mapping], current: Mapping[str, str], services: Sequence[str]) -> bool:
    """True when some service of ``images`` runs another image ID now."""
    return any(current.get(s, "") != i for s, i in set_key(images, services))


@dataclass(frozen=True)
class Candidate:
    release: str                 # the --to that selects exactly this set; "" when no release left it serving
    when: str
    source: str                  # the newest evidence, e.g. "left serving healthily by deploy X"
    images: Mapping[str, Mapping]
    rolled_away_by: str = ""     # the rollback that moved away from it (a bare rollback skips it)


class NoTarget(Exception):
    """No valid rollback target; ``matches`` lists the release ids of an ambiguous prefix."""

    def __init__(self, why: str, matches: Sequence[str] = ()):
        self.why = why
        self.matches = list(matches)
        super().__init__(why)


def _left_healthy(r: Release) -> bool:
    """The release ended leaving its images_after serving healthily."""
    return r.outcome in ("success", "rolled_back") and r.after_healthy and bool(r.images_after) and not r.problem


def healthy_sets(rels: Sequence[Release], services: Sequence[str]) -> list[Candidate]:
    """Every image set the record shows serving healthily, each once, newest evidence first. A set
    that a successful release left running names that release (what ``--to`` takes to get it)."""
    newest: dict[tuple, tuple[int, Candidate]] = {}
    named: dict[tuple, Candidate] = {}    # the newest successful release that left the set running
    away: dict[tuple, str] = {}           # the rollback that moved away from it, "" once re-established
    seen = 0
    for r in rels:
        if r.problem:                     # events that do not add up are no evidence of anything
            continue
        before, after = set_key(r.images_before, services), set_key(r.images_after, services)
        if before and r.before_healthy:
            seen += 1
            newest[before] = (seen, Candidate("", r.started, f"running and healthy before {r.kind} {r.id}", r.images_before))
        if before and r.kind == "rollback" and r.outcome == "success":
            away[before] = r.id
        if after and _left_healthy(r):
            seen += 1
            c = Candidate("", r.ended or r.started, f"left serving healthily by {r.kind} {r.id}", r.images_after)
            newest[after] = (seen, c)
            away[after] = ""
            if r.outcome == "success":
                named[after] = Candidate(r.id, c.when, c.source, c.images)
    ordered = sorted(newest.items(), key=lambda kv: -kv[1][0])
    out = []
    for key, (_, c) in ordered:
        c = named.get(key, c)
        out.append(Candidate(c.release, c.when, c.source, c.images, away.get(key, "")))
    return out


def choose_target(cands: Sequence[Candidate], current: Mapping[str, str], services: Sequence[str]) -> Candidate | None:
    """The bare-rollback target: the newest set that differs from what runs now and that no
    later rollback moved away from."""
    for c in cands:
        if differs(c.images, current, services) and not c.rolled_away_by:
            return c
    return None


def bare_target(rels: Sequence[Release], current: Mapping[str, str], services: Sequence[str]) -> Candidate:
    cands = healthy_sets(rels, services)
    target = choose_target(cands, current, services)
    if target:
        return target
    if not cands:
        raise NoTarget("no release in the record finished healthy")
    skipped = sorted({c.rolled_away_by for c in cands if c.rolled_away_by and differs(c.images, current, services)})
    if not skipped:
        raise NoTarget("every recorded healthy image set is what runs now")
    raise NoTarget("every other recorded healthy image set was rolled away from by a later rollback ("
                   + ", ".join(skipped) + "); a bare rollback never returns to one: name the one you want with --to")


def _never_healthy(r: Release) -> str:
    how = {"incomplete": "it has no end line (it crashed or is still running)",
           "rolled_back": "its images failed and the previous ones were put back",
           "failed": "it failed", "aborted": "it was interrupted"}.get(r.outcome, "its images were not recorded healthy")
    return (f"release {r.id} never served healthily: {r.kind}, outcome {r.outcome}, {how}; only a deploy or "
            "rollback that ended success with healthy images is a --to target")


def release_target(rels: Sequence[Release], ref: str, services: Sequence[str]) -> Candidate | None:
    """``--to RELEASE``: the image set that release left serving healthily. None when no release
    id starts with ``ref`` (it may be an image tag); NoTarget when the prefix is ambiguous or the
    release never served healthily."""
    matches = [r for r in rels if r.id == ref] or [r for r in rels if r.id.startswith(ref)]
    if not matches:
        return None
    if len(matches) > 1:
        raise NoTarget(f"release id prefix {ref!r} is ambiguous: it matches {len(matches)} releases",
                       matches=[r.id for r in matches])
    r = matches[0]
    if not (r.outcome == "success" and r.after_healthy and set_key(r.images_after, services)):
        raise NoTarget(_never_healthy(r))
    if r.problem:
        raise NoTarget(f"release {r.id} is not a --to target: its record is inconsistent ({r.problem}); "
                       "name the image instead (--to <tag or image id>) if you know it served healthily")
    return Candidate(r.id, r.ended or r.started, f"left serving healthily by {r.kind} {r.id}", r.images_after)


def annotate(cands: Sequence[Candidate], current: Mapping[str, str] | None,
             services: Sequence[str]) -> list[tuple[Candidate, str]]:
    """Each candidate once, with what it is to the operator: running now, the next bare rollback,
    or rolled away from (reachable only with --to). ``current`` None: what runs is unknown."""
    target = choose_target(cands, current, services) if current is not None else None
    out = []
    for c in cands:
        if current is not None and not differs(c.images, current, services):
            note = "running now"
        elif c is target:
            note = "next bare rollback"
        elif c.rolled_away_by:
            note = f"rolled away from by {c.rolled_away_by}: only with --to"
        else:
            note = ""
        out.append((c, note))
    return out


_IMAGE_ID = re.compile(r"(sha256:)?[0-9a-f]{12,64}")


def is_image_id(ref: str) -> bool:
    return bool(_IMAGE_ID.fullmatch(ref))


def image_reference(to: str, current_ref: str) -> str:
    """What ``--to`` names for the backend: an image ID or a full reference as given, else a tag
    of the repository the backend runs now (``v1`` -> ``registry/backend:v1``)."""
    if is_image_id(to) or "/" in to or ":" in to:
        return to
    last = current_ref.rsplit("/", 1)[-1]
    repo = current_ref.rsplit(":", 1)[0] if ":" in last else current_ref
    return f"{repo}:{to}"
