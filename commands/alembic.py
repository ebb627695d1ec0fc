"""Alembic through the backend container, and the revision arithmetic behind "pending migrations"."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from commands.git import Migration

CURRENT = ["alembic", "current"]

# Runbook step 2 in one round trip to the container: revision before, upgrade, revision after,
# history. Sections are marked so the output can be split; the upgrade's exit status is the command's.
# Each alembic start costs ~0.35 s (Python, SQLAlchemy, the migration scripts), so the four
# commands run in ONE Python process through alembic's own CLI entry point (``alembic.config.main``,
# what the ``alembic`` script calls): the same output, the same exit codes (a CommandError exits
# 255, any other exception prints its traceback and exits 1), one start instead of four.
# A container whose ``python3``/``python`` cannot import alembic (the CLI lives in a venv that is
# not on PATH) exits 97 before printing anything (127: no python on PATH at all), and the four CLI
# calls run as before.
_MIGRATE_PY = """\
import sys
try:
    from alembic.config import main
except ImportError:
    sys.exit(97)
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
section("before")
alembic("current")
section("upgrade")
rc = alembic("upgrade", "head")
if rc:
    sys.exit(rc % 256)
section("after")
alembic("current")
section("history")
alembic("history")
"""
_MIGRATE_CLI = (
    "echo @@before; alembic current 2>&1; "
    "echo @@upgrade; alembic upgrade head 2>&1; rc=$?; "
    "if [ $rc -ne 0 ]; then exit $rc; fi; "
    "echo @@after; alembic current 2>&1; "
    "echo @@history; alembic history 2>&1"
)
MIGRATE_SCRIPT = (
    "py=$(command -v python3 || command -v python || echo python3); "
    # One line (the plan and the echo show commands line by line): the source as an exec() literal.
    f"\"$py\" -c 'exec({json.dumps(_MIGRATE_PY)})' 2>&1; rc=$?; "
    "if [ $rc -ne 97 ] && [ $rc -ne 127 ]; then exit $rc; fi; " + _MIGRATE_CLI
)


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
        if line.startswith("@@") and line[2:].strip() in ("before", "upgrade", "after", "history"):
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
