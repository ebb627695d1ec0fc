"""The release record on the host: ``<APP_DIR>/.deploy/releases.jsonl``, JSON lines appended step
by step so a crash still leaves a trail (who, when, stage, git before/after, images before/after,
steps with timings, outcome). Also the pure logic that reads it back: every line is checked against
the record's schema (:mod:`commands.record_schema`) before it is folded into releases, so a torn,
corrupt or hostile line is skipped (and reported) instead of crashing ``history`` or steering
``rollback``. The rollback decisions themselves live in :mod:`commands.rollback_plan`.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable, Mapping

from commands.record_schema import RELEASE_ID, SCHEMA_VERSION, RecordRead, check, validate
from commands.shell import UnsafeValue, check_path, q

# How much of the record history, status and rollback read: about 130 deploys. An explicit
# `rollback --to <older release>` also searches the whole file for that id (search()).
READ_LINES = 2000
# A search for one release id stops after this many matching lines: a deploy writes about 25, so
# this still sees enough of two releases to call a short prefix ambiguous.
SEARCH_MAX_LINES = 500
# A real line is under 5 kB. Longer ones (a hostile or corrupt record) are cut on the host, so
# they arrive as invalid JSON and are skipped; and no read returns more than MAX_READ_BYTES.
MAX_LINE_BYTES = 64 * 1024
MAX_READ_BYTES = 16 * 1024 * 1024
UNREADABLE = "@@record-unreadable@@"   # read(): the file exists, but is no regular file the SSH user may read


def new_release_id(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def line(release: str, event: str, **data) -> str:
    return json.dumps({"v": SCHEMA_VERSION, "release": release, "event": event, "at": utc_now(), **data},
                      sort_keys=True, separators=(",", ":"))


def append(path: str, text_line: str, *more: str) -> str:
    """Append one line (or several, in order), creating the directory; ``printf %s`` so the line
    is never interpreted.

    A crash mid-write can leave the file without a final newline; appending straight after it
    would glue this line to the torn one and lose both. So when the file's last byte is not a
    newline, a newline goes first. ``wc -l`` counts the newlines in that last byte (0 or 1); a
    plain ``[ -n "$(tail -c 1 FILE)" ]`` would not do: the shell drops a NUL byte, which is what a
    crash on some file systems leaves at the end of a file."""
    check_path(path, "record file")
    directory = path.rsplit("/", 1)[0]
    p = q(path)
    return (f"mkdir -p {q(directory)} && {{ if [ -s {p} ] && [ \"$(tail -c 1 {p} | wc -l)\" -eq 0 ]; "
            f"then echo; fi; printf '%s\\n' {' '.join(q(t) for t in (text_line, *more))}; }} >> {p}")


def read(path: str, last: int = READ_LINES) -> str:
    """The record's line count and whether its last byte is a newline (for line numbers in
    warnings), then its last ``last`` lines, each cut to MAX_LINE_BYTES, at most MAX_READ_BYTES
    in all (cut from the front: line numbers count from the end)."""
    check_path(path, "record file")
    p = q(path)
    return (f"if [ -e {p} ] && ! {{ [ -f {p} ] && [ -r {p} ]; }}; then echo {UNREADABLE}; "
            f"else {{ n=$(wc -l < {p}) && echo \"$n $(tail -c 1 {p} | wc -l)\" && tail -n {int(last)} {p} "
            f"| cut -b 1-{MAX_LINE_BYTES} | tail -c {MAX_READ_BYTES}; }} 2>/dev/null || true; fi")


def search(path: str, release: str) -> str:
    """Every line of the whole record whose release id starts with ``release``, numbered
    (``grep -n``), for an explicit ``rollback --to`` older than the lines :func:`read` returns.
    ``-a``: a record with a NUL byte in it (a crash) is still text; without it grep only says
    "binary file matches" and prints no line."""
    check_path(path, "record file")
    if not RELEASE_ID.match(release or ""):
        raise UnsafeValue(f"release id {release!r} may hold only letters, digits and . _ : - (not first)")
    needle = f'"release":"{release}'
    return (f"{{ grep -a -n -F -m {SEARCH_MAX_LINES} -e {q(needle)} -- {q(path)} | cut -b 1-{MAX_LINE_BYTES} "
            f"| head -c {MAX_READ_BYTES}; }} 2>/dev/null || true")



# ---- reading it back: the schema (commands/record_schema.py), line by line -----------------------

def parse(text: str) -> list[dict]:
    """Every line of ``text`` that matches the schema (a torn last line is skipped, not fatal)."""
    return check(enumerate(text.split("\n"), 1)).lines


def parse_read(stdout: str) -> RecordRead:
    """The output of :func:`read`: the newline count and the last byte's (1: the file ends with
    a newline), then the last lines. Line numbers follow from the count (a torn last line has no
    newline, so it is one more)."""
    head, _, body = stdout.partition("\n")
    if head.strip() == UNREADABLE:
        return RecordRead(unreadable=True)
    counts = head.split()
    if not counts or not all(c.isdigit() for c in counts):
        return check((0, raw) for raw in stdout.split("\n"))
    rows = body.split("\n")
    if rows and rows[-1] == "":
        rows.pop()                           # the newline that ends the last line
    if len(counts) > 1:
        torn = counts[1] == "0" and bool(rows)
    else:                                    # the count alone (an older form of read())
        torn = bool(body) and not body.endswith("\n")
    total = int(counts[0]) + (1 if torn else 0)
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
    # fab deploy --version: {variable, tag, previous ("" = unset), restored (set back to, if it was)}
    version: dict = field(default_factory=dict)
    # Why this release's events do not add up (then it is never evidence for a rollback target), or "".
    problem: str = ""


def _fold(r: Release, d: Mapping) -> None:
    ev = d.get("event")
    if ev == "start":
        r.kind = d.get("kind") or r.kind
        r.stage, r.host, r.who = d.get("stage", ""), d.get("host", ""), d.get("who", "")
        r.started = d.get("at", "")
        r.git_before = d.get("git_before") or r.git_before
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
    elif ev == "version":
        r.version = {**r.version, "variable": d["variable"], "tag": d["tag"], "previous": d.get("previous") or ""}
    elif ev == "version_restored":
        r.version = {**r.version, "variable": d["variable"], "restored": d["tag"]}
    elif ev == "lock_takeover":          # written by unlock --force under a release id of its own
        r.kind, r.outcome, r.started = "lock_takeover", "-", d.get("at", "")
        r.who = d["who"] if isinstance(d.get("who"), str) else ""
    elif ev == "end":
        r.outcome = d["outcome"]
        r.ended = d.get("at", "")
        r.seconds = float(d.get("seconds") or 0)
        r.bottleneck = d.get("bottleneck") or ""
        r.error = d.get("error") or {}
        r.serving = d.get("serving") or ""


def releases(lines: Iterable[dict]) -> list[Release]:
    """Fold the lines into releases, oldest first. A line that fails :func:`validate` is ignored
    here too, whoever passes it in. A release whose events do not add up gets a ``problem``."""
    by_id: dict[str, Release] = {}
    events: dict[str, list[dict]] = {}
    for d in lines:
        if validate(d) is not None:
            continue
        rid = d["release"]
        if rid not in by_id:
            by_id[rid], events[rid] = Release(id=rid), []
        _fold(by_id[rid], d)
        events[rid].append(d)
    for rid, r in by_id.items():
        r.problem = inconsistency(events[rid])
    return list(by_id.values())


def inconsistency(events: list[dict]) -> str:
    """Why one release's events, in file order, are not what a run of this tool writes, or "".

    A run writes one ``start`` first, at most one ``images_before`` and one ``images_after`` (in
    that order) and one ``end`` last; ``success`` comes only after every step of ``start.steps``
    finished ok, ``rolled_back`` only after an ok ``auto-rollback``. Anything else (an
    ``images_after`` appended after the end, two runs under one id, an end before the start) is
    a corrupt, merged or forged record: never evidence that an image set served healthily. A
    forgery that writes every event in order cannot be told apart (the record is not signed)."""
    names = [d["event"] for d in events]
    if names == ["lock_takeover"]:
        return ""
    if names[0] != "start":
        return "its first event is not start (older than the lines read, or forged)"
    repeated = [e for e in ("start", "images_before", "images_after", "end") if names.count(e) > 1]
    if repeated:
        return f"{repeated[0]} appears {names.count(repeated[0])} times (two runs under one id, or forged)"
    if "end" in names and names[-1] != "end":
        return f"{names[names.index('end') + 1]} comes after the end"
    if "images_after" in names and "images_before" in names and names.index("images_after") < names.index("images_before"):
        return "images_after comes before images_before"
    end = events[-1] if names[-1] == "end" else {}
    finished = {d["step"] for d in events if d["event"] == "step" and d.get("sub") is None and d.get("ok") is True}
    if end.get("outcome") == "success":
        missing = [step for step in events[0].get("steps") or [] if step not in finished]
        if missing:
            return f"outcome success, but step {missing[0]} never finished ok"
    if end.get("outcome") == "rolled_back" and "auto-rollback" not in finished:
        return "outcome rolled_back, but no auto-rollback step finished ok"
    return ""


def image_ids(images: Mapping[str, Mapping]) -> dict[str, str]:
    return {svc: (img or {}).get("id", "") for svc, img in images.items()}

