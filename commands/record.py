"""The release record on the host: ``<APP_DIR>/.deploy/releases.jsonl``, JSON lines appended step
by step so a crash still leaves a trail (who, when, stage, git before/after, images before/after,
steps with timings, outcome). Also the pure logic that reads it back: every line is checked against
the record's schema before it is folded into releases, so a torn, corrupt or hostile line is skipped
(and reported) instead of crashing ``history`` or steering ``rollback``. The rollback decisions
themselves live in :mod:`commands.rollback_plan`.
"""
from __future__ import annotations

import json
import math
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Mapping

from commands.shell import UnsafeValue, check_image, check_path, q

SCHEMA_VERSION = 1
OUTCOMES = ("success", "failed", "rolled_back", "aborted")
# How much of the record history, status and rollback read: about 130 deploys. An explicit
# `rollback --to <older release>` also searches the whole file for that id (search()).
READ_LINES = 2000
# A search for one release id stops after this many matching lines: a deploy writes about 25, so
# this still sees enough of two releases to call a short prefix ambiguous.
SEARCH_MAX_LINES = 500

# new_release_id() makes "20261127T223704Z-d996"; the pattern is wider (any id this tool could
# have written), but excludes everything a shell, grep or terminal would read specially.
RELEASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_IMAGE_ID = re.compile(r"^(?:sha256:)?[0-9a-f]{12,64}$")
_SERVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def new_release_id(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def line(release: str, event: str, **data) -> str:
    return json.dumps({"v": SCHEMA_VERSION, "release": release, "event": event, "at": utc_now(), **data},
                      sort_keys=True, separators=(",", ":"))


def append(path: str, text_line: str) -> str:
    """Append one line, creating the directory; ``printf %s`` so the line is never interpreted.

    A crash mid-write can leave the file without a final newline; appending straight after it
    would glue this line to the torn one and lose both. So when the file's last byte is not a
    newline, a newline goes first. ``wc -l`` counts the newlines in that last byte (0 or 1); a
    plain ``[ -n "$(tail -c 1 FILE)" ]`` would not do: the shell drops a NUL byte, which is what a
    crash on some file systems leaves at the end of a file."""
    check_path(path, "record file")
    directory = path.rsplit("/", 1)[0]
    p = q(path)
    return (f"mkdir -p {q(directory)} && {{ if [ -s {p} ] && [ \"$(tail -c 1 {p} | wc -l)\" -eq 0 ]; "
            f"then echo; fi; printf '%s\\n' {q(text_line)}; }} >> {p}")


def read(path: str, last: int = READ_LINES) -> str:
    """The record's line count (for line numbers in warnings), then its last ``last`` lines."""
    check_path(path, "record file")
    return f"{{ wc -l < {q(path)} && tail -n {int(last)} {q(path)}; }} 2>/dev/null || true"


def search(path: str, release: str) -> str:
    """Every line of the whole record whose release id starts with ``release``, numbered
    (``grep -n``), for an explicit ``rollback --to`` older than the lines :func:`read` returns."""
    check_path(path, "record file")
    if not RELEASE_ID.match(release or ""):
        raise UnsafeValue(f"release id {release!r} may hold only letters, digits and . _ : - (not first)")
    needle = f'"release":"{release}'
    return f"grep -n -F -m {SEARCH_MAX_LINES} -e {q(needle)} -- {q(path)} 2>/dev/null || true"


# ---- reading it back: the schema, line by line -------------------------------------------------


@dataclass
class RecordRead:
    """The lines that passed the schema (with their line numbers in the file, 0 when unknown) and
    the ones that did not, as (line number, reason); a reason names fields, never the line's values."""
    lines: list[dict] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def warning(self, path: str, shown: int = 5) -> str:
        if not self.skipped:
            return ""
        where = "; ".join(f"line {n}: {why}" if n else why for n, why in self.skipped[:shown])
        more = f"; and {len(self.skipped) - shown} more" if len(self.skipped) > shown else ""
        return (f"release record {path}: skipped {len(self.skipped)} line(s) that do not match the record's "
                f"schema ({where}{more}); they are never used for history or as a rollback target")


def _is_str(v) -> bool:
    return isinstance(v, str)


def _is_opt_str(v) -> bool:
    return v is None or isinstance(v, str)


def _is_bool(v) -> bool:
    return isinstance(v, bool)            # "false" (a string) is not false: it must never read as healthy


def _is_seconds(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def _is_dict(v) -> bool:
    return isinstance(v, dict)


def _is_str_list(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _is_revisions(v) -> bool:
    """An alembic revision, or the list of them (one per head)."""
    return v is None or isinstance(v, str) or _is_str_list(v)


def _is_image_ref(v) -> bool:
    try:
        return isinstance(v, str) and bool(check_image(v))
    except UnsafeValue:
        return False


def _is_image(v) -> bool:
    return (isinstance(v, dict) and isinstance(v.get("id"), str) and bool(_IMAGE_ID.match(v["id"]))
            and ("ref" not in v or _is_image_ref(v["ref"]))
            and isinstance(v.get("digests", []), list) and all(_is_image_ref(d) for d in v.get("digests", [])))


def _is_images(v) -> bool:
    """service -> {ref, id, digests}, as services.images_of() writes it."""
    return isinstance(v, dict) and all(isinstance(k, str) and _SERVICE.match(k) and _is_image(i) for k, i in v.items())


# event -> {field: (required, check, what it must be)}. Only what the fold reads is checked.
SCHEMA: dict[str, dict[str, tuple[bool, Callable[[object], bool], str]]] = {
    "start": {"kind": (False, _is_str, "a string"), "stage": (False, _is_str, "a string"),
              "host": (False, _is_str, "a string"), "who": (False, _is_str, "a string"),
              "git_before": (False, _is_opt_str, "a string"), "note": (False, _is_opt_str, "a string"),
              "message": (False, _is_opt_str, "a string"), "steps": (False, _is_str_list, "a list of strings")},
    "images_before": {"images": (True, _is_images, "an object of service -> {ref, id, digests}"),
                      "healthy": (True, _is_bool, "true or false"), "version": (False, _is_opt_str, "a string")},
    "git": {"before": (False, _is_opt_str, "a string"), "after": (False, _is_opt_str, "a string")},
    "step": {"step": (True, _is_str, "a string"), "sub": (False, _is_opt_str, "a string or null"),
             "seconds": (True, _is_seconds, "a number of seconds"), "ok": (False, _is_bool, "true or false")},
    "migrations": {"before": (False, _is_revisions, "a revision or a list of them"),
                   "after": (False, _is_revisions, "a revision or a list of them")},
    "end": {"outcome": (True, lambda v: v in OUTCOMES, "one of " + ", ".join(OUTCOMES)),
            "seconds": (False, _is_seconds, "a number of seconds"), "bottleneck": (False, _is_opt_str, "a string"),
            "error": (False, _is_dict, "an object"), "serving": (False, _is_opt_str, "a string")},
}
SCHEMA["images_after"] = SCHEMA["images_before"]


def validate(d: object) -> str | None:
    """Why this record line does not match the schema, or None. Events this version does not
    fold (downtime, lock_takeover, newer ones) only need the common fields."""
    if not isinstance(d, dict):
        return "not a JSON object"
    if d.get("v") != SCHEMA_VERSION or isinstance(d.get("v"), bool):
        return f"schema version (v) is not {SCHEMA_VERSION}"
    if not isinstance(d.get("release"), str) or not RELEASE_ID.match(d["release"]):
        return "release is not a release id"
    if not isinstance(d.get("event"), str) or not isinstance(d.get("at", ""), str):
        return "event or at is not a string"
    event = d["event"]
    for name, (required, ok, what) in SCHEMA.get(event, {}).items():
        if name not in d:
            if required:
                return f"{event} line without {name}"
        elif not ok(d[name]):
            return f"{event} line: {name} is not {what}"
    return None


def check(raws: Iterable[tuple[int, str]]) -> RecordRead:
    """Numbered raw lines -> the valid ones and the skipped ones. Blank lines are ignored."""
    out = RecordRead()
    for number, raw in raws:
        raw = raw.strip()
        if not raw:
            continue
        try:
            d = json.loads(raw)
        except (ValueError, RecursionError):
            out.skipped.append((number, "not valid JSON (a torn or corrupt line)"))
            continue
        why = validate(d)
        if why:
            out.skipped.append((number, why))
        else:
            out.lines.append(d)
            out.numbers.append(number)
    return out


def parse(text: str) -> list[dict]:
    """Every line of ``text`` that matches the schema (a torn last line is skipped, not fatal)."""
    return check(enumerate(text.split("\n"), 1)).lines


def parse_read(stdout: str) -> RecordRead:
    """The output of :func:`read`: the newline count, then the last lines. Line numbers follow
    from the count (a torn last line has no newline, so it is one more)."""
    head, _, body = stdout.partition("\n")
    if not head.strip().isdigit():
        return check((0, raw) for raw in stdout.split("\n"))
    rows = body.split("\n")
    if rows and rows[-1] == "":
        rows.pop()                           # the newline that ends the last line
    total = int(head.strip()) + (0 if body.endswith("\n") or not body else 1)
    first = total - len(rows) + 1
    return check(enumerate(rows, first))


def parse_search(stdout: str) -> RecordRead:
    """The output of :func:`search`: ``NUMBER:line`` per match."""
    rows = []
    for raw in stdout.split("\n"):
        number, sep, rest = raw.partition(":")
        if sep and number.isdigit():
            rows.append((int(number), rest))
    return check(rows)


def merge(tail: RecordRead, found: RecordRead) -> RecordRead:
    """One read in file order: the search hits from before the tail's first line, then the tail."""
    numbered = tail.numbers + [n for n, _ in tail.skipped]
    if not numbered:
        return found                         # an empty tail: nothing to merge with
    if not all(numbered):
        return tail                          # line numbers unknown: the tail alone
    first = min(numbered)
    older = [(n, d) for n, d in zip(found.numbers, found.lines) if n < first]
    return RecordRead(lines=[d for _, d in older] + tail.lines, numbers=[n for n, _ in older] + tail.numbers,
                      skipped=[s for s in found.skipped if s[0] < first] + tail.skipped)


# ---- folding lines into releases ------------------------------------------------------------------


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


def _fold(r: Release, d: Mapping) -> None:
    ev = d.get("event")
    if ev == "start":
        r.kind = d.get("kind") or r.kind
        r.stage, r.host, r.who = d.get("stage", ""), d.get("host", ""), d.get("who", "")
        r.started = d.get("at", "")
        r.git_before = d.get("git_before") or r.git_before
        r.note = d.get("note") or d.get("message") or ""
    elif ev in ("images_before", "images_after"):
        images, healthy = d["images"], d["healthy"] is True
        if ev == "images_before":
            r.images_before, r.before_healthy = images, healthy
        else:
            r.images_after, r.after_healthy = images, healthy
    elif ev == "git":
        r.git_before = d.get("before") or r.git_before
        r.git_after = d.get("after") or r.git_after
    elif ev == "step":
        r.steps.append({k: d.get(k) for k in ("step", "sub", "seconds", "ok")})
    elif ev == "migrations":
        r.migrations = {k: d.get(k) for k in ("before", "after")}
    elif ev == "end":
        r.outcome = d["outcome"]
        r.ended = d.get("at", "")
        r.seconds = float(d.get("seconds") or 0)
        r.bottleneck = d.get("bottleneck") or ""
        r.error = d.get("error") or {}
        r.serving = d.get("serving") or ""


def releases(lines: Iterable[dict]) -> list[Release]:
    """Fold the lines into releases, oldest first. A line that fails :func:`validate` is ignored
    here too, whoever passes it in."""
    by_id: dict[str, Release] = {}
    for d in lines:
        if validate(d) is not None:
            continue
        rid = d["release"]
        if rid not in by_id:
            by_id[rid] = Release(id=rid)
        _fold(by_id[rid], d)
    return list(by_id.values())


def image_ids(images: Mapping[str, Mapping]) -> dict[str, str]:
    return {svc: (img or {}).get("id", "") for svc, img in images.items()}
