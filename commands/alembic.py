"""Alembic through the backend container, and the revision arithmetic behind "pending migrations"."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from commands.git import Migration
from commands.shell import q

CURRENT = ["alembic", "current"]

# The checklist's read of the database revision. ``alembic current`` is a Python start that imports
# SQLAlchemy, alembic and the migration environment (~0.3 s alone, 0.5-1 s beside the run's other
# early reads on a 2-core host), and it bounded the whole front of a deploy. The revision is one
# table: the backend's own Python reads ``alembic_version`` through the app's DATABASE_URL with
# its Postgres driver (psycopg2, else psycopg; ~0.1 s; 2 s to connect, 2 s for a lock, 5 s a query). Anything unexpected (no driver, no URL or
# not a Postgres one, no such table, no connection) prints nothing and exits 97, and ``alembic
# current`` answers as before. Nothing of the URL leaves the container: only the revisions print.
# The read is proved where it matters: the migration runs only if alembic's own ``current``, in
# the process that upgrades, names the revisions the checklist read (MIGRATE_SCRIPT, --expect).
_REVISION_PY = """\
import os, re, sys
try:
    import psycopg2 as driver
except ImportError:
    try:
        import psycopg as driver
    except ImportError:
        sys.exit(97)
url = os.environ.get("DATABASE_URL") or ""
scheme = re.match(r"postgres(?:ql)?(?:\\+\\w+)?://", url)
if not scheme:
    sys.exit(97)
try:
    conn = driver.connect("postgresql://" + url[scheme.end():], connect_timeout=2,
                          options="-c lock_timeout=2000 -c statement_timeout=5000")
    try:
        cur = conn.cursor()
        cur.execute("SELECT version_num FROM alembic_version")
        rows = cur.fetchall()
    finally:
        conn.close()
except Exception:
    sys.exit(97)
print("@@alembic_version")
for row in rows:
    if row[0] is not None:
        print(row[0])
"""
TABLE_MARK = "@@alembic_version"


def python_one_line(source: str) -> str:
    """``"$py" -c 'exec("...")'``: a Python source as one shell word (the plan and the echo show
    commands line by line), run by the container's python3 (else python)."""
    return f'"$py" -c {q("exec(" + json.dumps(source) + ")")}'


PY = "py=$(command -v python3 || command -v python || echo python3); "
REVISION_SCRIPT = PY + python_one_line(_REVISION_PY) + " 2>/dev/null || alembic current"
REVISION = ["sh", "-c", REVISION_SCRIPT]


def parse_revision(stdout: str) -> tuple[list[str], str]:
    """(revisions, how they were read: "alembic_version table" or "alembic current")."""
    source = "alembic_version table" if TABLE_MARK in stdout.splitlines() else "alembic current"
    return parse_current(stdout), source


# Runbook step 2 in one round trip to the container: revision before, upgrade, revision after,
# history. Sections are marked so the output can be split; the upgrade's exit status is the command's.
# Each alembic start costs ~0.35 s (Python, SQLAlchemy, the migration scripts), so the four
# commands run in ONE Python process through alembic's own CLI entry point (``alembic.config.main``,
# what the ``alembic`` script calls): the same output, the same exit codes (a CommandError exits
# 255, any other exception prints its traceback and exits 1), one start instead of four.
# A container whose ``python3``/``python`` cannot import alembic (the CLI lives in a venv that is
# not on PATH) exits 97 before printing anything (127: no python on PATH at all), and the four CLI
# calls run as before.
# ``--expect REV...`` (the revisions the checklist read; none = an empty database): when alembic's
# ``current`` answers other revisions, nothing is upgraded: "@@moved" and exit 98. The database
# moved since the checklist (someone migrated by hand), or the checklist's table read is not what
# alembic sees: either way the pending migrations it checked are not the ones that would run.
# stdout is wrapped before alembic is imported, so alembic's Config (whose default stdout is the
# sys.stdout of import time) prints through the wrapper, which keeps what ``current`` printed.
MIGRATE_PY_HEAD = """\
import re, sys
class Tee:
    def __init__(self, out):
        self.out, self.seen = out, None
    def write(self, text):
        if self.seen is not None:
            self.seen.append(text)
        return self.out.write(text)
    def writelines(self, lines):
        for line in lines:
            self.write(line)
    def __getattr__(self, name):
        return getattr(self.out, name)
sys.stdout = tee = Tee(sys.stdout)
try:
    from alembic.config import main
except ImportError:
    sys.exit(97)
"""
# (commands/prestart.py runs the part above early and waits for its turn before the part below.)
MIGRATE_PY_RUN = """\
def alembic(*argv):
    try:
        main(argv=list(argv), prog="alembic")
        return 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except Exception:
        import traceback
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
def section(name):
    print("@@" + name, flush=True)
def revisions(text):
    found = []
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"([0-9A-Za-z_]+)(\\s+\\([^)]*\\))*$", line)
        if m and not line.startswith(("INFO", "WARNING", "DEBUG")):
            found.append(m.group(1))
    return sorted(found)
expect = sorted(sys.argv[2:]) if sys.argv[1:2] == ["--expect"] else None
section("before")
tee.seen = []
rc = alembic("current")
seen, tee.seen = "".join(tee.seen), None
if expect is not None and rc == 0 and revisions(seen) != expect:
    section("moved")
    sys.exit(98)
section("upgrade")
rc = alembic("upgrade", "head")
if rc:
    sys.exit(rc % 256)
section("after")
alembic("current")
section("history")
alembic("history")
"""
_MIGRATE_PY = MIGRATE_PY_HEAD + MIGRATE_PY_RUN
# The same without Python: the revisions of ``current`` as awk reads them, compared as sorted lists.
_MIGRATE_CLI = (
    "echo @@before; cur=$(alembic current 2>&1); rc=$?; printf '%s\\n' \"$cur\"; "
    "if [ $rc -eq 0 ] && [ \"$1\" = --expect ]; then shift; "
    "want=$(for r in \"$@\"; do echo \"$r\"; done | sort | tr '\\n' ' '); "
    "got=$(printf '%s\\n' \"$cur\" | awk '/^(INFO|WARNING|DEBUG)/ { next } "
    "$1 ~ /^[0-9A-Za-z_]+$/ && (NF == 1 || $2 ~ /^[(]/) { print $1 }' | sort | tr '\\n' ' '); "
    "if [ \"$got\" != \"$want\" ]; then echo @@moved; exit 98; fi; fi; "
    "echo @@upgrade; alembic upgrade head 2>&1; rc=$?; "
    "if [ $rc -ne 0 ]; then exit $rc; fi; "
    "echo @@after; alembic current 2>&1; "
    "echo @@history; alembic history 2>&1"
)
MIGRATE_SCRIPT = (
    PY + python_one_line(_MIGRATE_PY) + ' "$@" 2>&1; rc=$?; '
    "if [ $rc -ne 97 ] && [ $rc -ne 127 ]; then exit $rc; fi; " + _MIGRATE_CLI
)
MOVED = 98      # MIGRATE_SCRIPT's exit status when the database is not at the expected revisions


def migrate_argv(expect: Sequence[str] | None = None) -> list[str]:
    """``sh -c MIGRATE_SCRIPT``; with ``expect`` (the revisions the checklist read; [] = an empty
    database) nothing is upgraded unless alembic's ``current`` names the same."""
    tail = [] if expect is None else ["--expect", *expect]
    return ["sh", "-c", MIGRATE_SCRIPT, "sh", *tail] if tail else ["sh", "-c", MIGRATE_SCRIPT]


@dataclass(frozen=True)
class MigrateOutput:
    before: list[str]
    upgrade: str
    after: list[str] | None        # None when the upgrade failed
    history: list["HistoryEntry"]


def parse_migrate(stdout: str) -> MigrateOutput:
    sections: dict[str, list[str]] = {}
    current = None
    for line in stdout.splitlines():
        if line.startswith("@@") and line[2:].strip() in ("before", "moved", "upgrade", "after", "history"):
            current = line[2:].strip()
            sections[current] = []
        elif current:
            sections[current].append(line)
    text = {k: "\n".join(v) for k, v in sections.items()}
    return MigrateOutput(
        before=parse_current(text.get("before", "")),
        upgrade=text.get("upgrade", ""),
        after=parse_current(text["after"]) if "after" in text else None,
        history=parse_history(text.get("history", "")),
    )


# alembic prints each flag in its own parentheses: "c3 (head) (mergepoint)".
_FLAGS = r"(?P<flags>(?:\s+\([^)]*\))*)"
_REV_LINE = re.compile(r"^(?P<rev>[0-9A-Za-z_]+)" + _FLAGS + r"\s*$")


def parse_current(stdout: str) -> list[str]:
    """Revision IDs from ``alembic current`` (ignores the INFO log lines alembic prints)."""
    revs = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line or line.startswith(("INFO", "WARNING", "DEBUG")):
            continue
        m = _REV_LINE.match(line)
        if m:
            revs.append(m.group("rev"))
    return revs


@dataclass(frozen=True)
class HistoryEntry:
    down: str
    up: str
    flags: str
    message: str


_HIST = re.compile(r"^(?P<down>\S.*?) -> (?P<up>[0-9A-Za-z_]+)" + _FLAGS + r", ?(?P<msg>.*)$")


def _flags(text: str) -> str:
    """The flags of a line: `` (head) (mergepoint)`` -> ``head, mergepoint``."""
    return ", ".join(re.findall(r"\(([^)]*)\)", text or ""))


def parse_history(stdout: str) -> list[HistoryEntry]:
    out = []
    for line in stdout.splitlines():
        m = _HIST.match(line.strip())
        if m:
            out.append(HistoryEntry(m.group("down"), m.group("up"), _flags(m.group("flags")), m.group("msg").strip()))
    return out


def ancestors(graph: Sequence[Migration], revisions: Iterable[str]) -> set[str]:
    """The given revisions and every revision they descend from."""
    down = {m.revision: m.down_revisions for m in graph}
    seen: set[str] = set()
    stack = list(revisions)
    while stack:
        r = stack.pop()
        if r in seen:
            continue
        seen.add(r)
        stack.extend(down.get(r, ()))
    return seen


def pending(graph: Sequence[Migration], current: Sequence[str]) -> list[Migration]:
    """Migrations in ``graph`` not applied by a database at ``current``, oldest first."""
    applied = ancestors(graph, current)
    todo = [m for m in graph if m.revision not in applied]
    return topo_order(todo)


def topo_order(migs: Sequence[Migration]) -> list[Migration]:
    by_rev = {m.revision: m for m in migs}
    ordered: list[Migration] = []
    done: set[str] = set()

    def visit(m: Migration, depth: int = 0):
        if m.revision in done or depth > len(migs):
            return
        for d in m.down_revisions:
            if d in by_rev:
                visit(by_rev[d], depth + 1)
        done.add(m.revision)
        ordered.append(m)

    for m in sorted(migs, key=lambda m: m.path):
        visit(m)
    return ordered


def heads(graph: Sequence[Migration]) -> list[str]:
    downs = {d for m in graph for d in m.down_revisions}
    return sorted(m.revision for m in graph if m.revision not in downs)
