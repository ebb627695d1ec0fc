"""Which pending alembic migrations break the code that is still serving (issue 9, target 5).

Migrations run while the old release serves (under ``blue-green``, while both releases serve). A
revision that drops or renames a table or column, changes a column's type, or makes a column NOT
NULL the old code does not fill makes the old code fail between ``alembic upgrade`` and the moment
the new code takes over (or, under blue/green, for as long as the old slot serves).

This module reads each pending migration's *source text* (the checklist gets it with ``git show
<remote>/<branch>:<path>``), parses it with :mod:`ast` (never imports or executes it) and reports
the operations of its ``upgrade()`` that break the old code. It is pure: no SSH, no Fabric. The
walk through ``upgrade()`` is :mod:`commands.migration_ast`, the raw-SQL scan
:mod:`commands.migration_sql`, what a finding is :mod:`commands.migration_findings`; this module
puts them together, reads the reviewed marks and gives the verdict.

What is recognised, inside ``upgrade()`` (and ``upgrade_<engine>()``, and module-level helper
functions they call by name), through ``op`` (or ``from alembic import op as X``, ``import
alembic.op as X``, ``from alembic.op import drop_column [as X]``) and through the
``batch_op`` of ``with op.batch_alter_table(t) as batch_op:``:

- ``drop_column``, ``drop_table``, ``rename_table``: always a break.
- ``alter_column(new_column_name=...)`` (a rename) and ``alter_column(type_=...)``: a break. A
  widening type change is flagged too: only a person can tell it is harmless, so review it.
- ``alter_column(nullable=False)``: a break. Tightening NOT NULL rejects every row the old code
  inserts without that column or with NULL in it, and nothing in the migration says the old code
  never does; this is the usual "add nullable, backfill, tighten" pattern, which is only safe
  once no old code writes the table. Decided here: flag it, and let a reviewer mark it.
- ``add_column(t, Column(name, type, nullable=False))`` (or ``primary_key=True``) without a
  ``server_default`` (nor ``Computed``/``Identity``): a break, the old code's INSERTs leave the new
  column NULL. A Python-side ``default=`` does not help the old code, so it is still a break.
  ``Column`` may be spelled ``sa.Column``, ``sqlalchemy.Column`` or ``Column`` (any alias).
- Raw SQL in ``op.execute(...)`` or any ``<x>.execute(...)`` / ``exec_driver_sql(...)`` inside
  ``upgrade()``, when the SQL is a literal (a string, ``sa.text("...")``, an f-string, a
  concatenation, or a name bound to a string in the file): ``migration_sql.scan_sql``, a
  documented, heuristic keyword scan for PostgreSQL DDL (DROP TABLE; ALTER TABLE ... DROP
  [COLUMN], RENAME [COLUMN] ... TO, RENAME TO, ALTER [COLUMN] ... [SET DATA] TYPE, ALTER [COLUMN] ... SET NOT NULL,
  ADD [COLUMN] ... NOT NULL without DEFAULT; MySQL's RENAME TABLE). SQL built at run time is not
  seen. SQLAlchemy expressions passed to ``op.execute`` (``table.update()``...) are data changes
  and are ignored.
- ``create_index`` without ``postgresql_concurrently=True`` is a *note*, not a break: it locks
  writes while the index builds, which slows the old code but does not break it.

Operations on a table created earlier in the pending revisions (or in the same ``upgrade()``, by
``op.create_table`` or by a literal CREATE TABLE) are never a break: the old code cannot use a table
that did not exist. The same holds for dropping, renaming or retyping a column added earlier in the
pending revisions; a NOT NULL column is still a break there (the old code's INSERTs into the old
table leave it NULL).

Everything else (unknown calls, ``downgrade()``) is ignored. A file that does not parse, or has no
``upgrade()``, gives one finding ``cannot analyse``: :func:`verdict` treats it as needing review.

A revision is *reviewed* when its file has the comment ``# deploy: reviewed-breaking-change
<who/why>`` (anywhere, as a real comment, with a non-empty who/why), or its revision id is in the
list the caller passes (the stage config's ``REVIEWED_MIGRATIONS``). Reviewed findings are still
reported, marked reviewed. :func:`verdict`: unreviewed breaks warn under ``recreate`` and block
under ``blue-green``.
"""
from __future__ import annotations

import io
import re
import tokenize
from dataclasses import dataclass, replace
from typing import Iterable, Mapping, Sequence

from commands.git import Migration
from commands.migration_findings import Finding, Fresh, MigrationReport

REVIEW_MARK = "deploy: reviewed-breaking-change"
CONFIG_KEY = "REVIEWED_MIGRATIONS"
STRATEGIES = ("recreate", "blue-green")
CANNOT_ANALYSE = "cannot analyse"
_ID = re.compile(r"[0-9A-Za-z_]{1,64}")     # what REVIEWED_MIGRATIONS accepts (config/types.py revision_id)
_SUMMARY_LIMIT = 6          # operations named per revision in the one-line summary
_REVIEW_CHARS = 80          # of the reviewer's note quoted there


@dataclass(frozen=True)
class Verdict:
    level: str          # "ok", "warn" or "block"
    detail: str         # one line for the checklist table

    @property
    def ok(self) -> bool:
        return self.level == "ok"

    @property
    def blocks(self) -> bool:
        return self.level == "block"


# --- analysis -------------------------------------------------------------------------------

def analyse(path: str, source: str, reviewed: Iterable[str] = (), revision: str = "",
            after: Sequence[MigrationReport] = ()) -> MigrationReport:
    """Report on one migration file's ``upgrade()``.

    ``reviewed``: revision ids the caller's config marks reviewed. ``revision``: the id the caller
    knows (used when the file's own ``revision = ...`` cannot be read). ``after``: reports of the
    pending revisions that run before this one (tables and columns they add are new to the old code).
    """
    # The syntax-tree walk and its SQL regexes cost ~13 ms to import: only a pending migration needs them.
    from commands.migration_ast import Upgrade, module_string, parse_source

    before = Fresh((t for r in after for t in r.created_tables), (c for r in after for c in r.added_columns))
    tree, problem = parse_source(source)
    visitor = None
    if tree is not None:
        revision = module_string(tree, "revision") or revision
        visitor = Upgrade(tree, Fresh(before.tables, before.columns))
        problem = visitor.run()
    rev = revision or path.rsplit("/", 1)[-1].removesuffix(".py")
    marks = review_marks(source)
    review = _review(rev, marks, reviewed)
    bare = [Finding("reviewed mark", "", "", line, "has no who/why after it, so it does not count")
            for line, note in marks if not note]
    if problem:
        line, why = problem
        return MigrationReport(path, rev, (Finding(CANNOT_ANALYSE, "", "", line, why, bool(review)),), tuple(bare), review)
    return MigrationReport(path, rev, tuple(replace(f, reviewed=bool(review)) for f in visitor.findings),
                           tuple(visitor.notes + bare), review,
                           frozenset(visitor.fresh.tables - before.tables), frozenset(visitor.fresh.columns - before.columns))


def analyse_pending(migrations: Sequence[Migration], sources: Mapping[str, str],
                    reviewed: Iterable[str] = ()) -> list[MigrationReport]:
    """Reports for ``alembic.pending(...)``'s migrations (oldest first); ``sources`` maps path -> text."""
    reviewed = tuple(reviewed)
    reports: list[MigrationReport] = []
    for m in migrations:
        reports.append(analyse(m.path, sources.get(m.path, ""), reviewed, m.revision, after=reports))
    return reports


# --- the reviewed mark ----------------------------------------------------------------------

_MARK = re.compile(r"^#\s*" + re.escape(REVIEW_MARK) + r"(?![\w-])(?P<note>.*)$")


def review_marks(source: str) -> list[tuple[int, str]]:
    """(line, who/why) of each ``# deploy: reviewed-breaking-change <who/why>`` comment.

    Only real comments count (not text inside strings); a file that cannot be tokenized has none."""
    marks = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            m = _MARK.match(tok.string) if tok.type == tokenize.COMMENT else None
            if m:
                marks.append((tok.start[0], m.group("note").strip(" :-\t")))
    except (tokenize.TokenError, SyntaxError):
        pass
    return marks


def _review(revision: str, marks: list[tuple[int, str]], reviewed: Iterable[str]) -> str:
    noted = [f"line {line}: {note}" for line, note in marks if note]
    if noted:
        return "; ".join(noted)
    if revision in {r.strip() for r in reviewed}:
        return f"listed in {CONFIG_KEY}"
    return ""


# --- output for the checklist ---------------------------------------------------------------

def summary_line(reports: Sequence[MigrationReport]) -> str:
    """One short line naming each revision, operation and table.column (then the notes, if any)."""
    if not reports:
        return "no pending revision"
    if not any(r.findings for r in reports):
        line = f"{len(reports)} pending revision(s) checked ({', '.join(r.revision for r in reports)}): none breaks the code still serving"
    else:
        line = "; ".join(_revision_summary(r) for r in reports if r.findings)
    notes = [f"{r.revision} {n.operation} {n.target}".rstrip() for r in reports for n in r.notes]
    return line + (f"; notes: {', '.join(notes)}" if notes else "")


def _revision_summary(r: MigrationReport) -> str:
    ops = [f"{f.operation} {f.target}".rstrip() for f in r.findings]
    if len(ops) > _SUMMARY_LIMIT:
        ops = ops[:_SUMMARY_LIMIT] + [f"+{len(ops) - _SUMMARY_LIMIT} more"]
    review = r.review if len(r.review) <= _REVIEW_CHARS else r.review[:_REVIEW_CHARS - 3] + "..."
    label = f"{r.revision} (reviewed, {review})" if r.reviewed else r.revision
    return f"{label}: {', '.join(ops)}"


def verdict(reports: Sequence[MigrationReport], strategy: str) -> Verdict:
    """ok when nothing unreviewed breaks the old code; else warn (recreate) or block (blue-green)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    open_revisions = [r.revision for r in reports if r.breaking]
    if not open_revisions:
        return Verdict("ok", summary_line(reports))
    window = ("the old release serves during the migration" if strategy == "recreate"
              else "the old slot serves during and after the migration")
    how = f"review, then mark with '# {REVIEW_MARK} <who/why>' in the file" + config_mark(open_revisions)
    return Verdict("block" if strategy == "blue-green" else "warn",
                   f"breaks the code still serving ({window}): {summary_line(reports)}; {how}")


def config_mark(revisions: Sequence[str], reviewed: Sequence[str] = (), where: str = "") -> str:
    """`` or REVIEWED_MIGRATIONS=a,b``: the config line that marks ``revisions`` reviewed, for the ids
    the key can hold (config/types.py revision_id). Another id (a file's ``revision = "1.2"``) can
    only take the comment: suggesting it would make the stage's config fail to load."""
    listed = [r for r in dict.fromkeys([*reviewed, *revisions]) if _ID.fullmatch(r)]
    other = [r for r in revisions if not _ID.fullmatch(r)]
    return ((f" or {CONFIG_KEY}={','.join(listed)}{where}" if any(r in listed for r in revisions) else "")
            + (f" ({', '.join(other)}: the comment only, {CONFIG_KEY} holds letters, digits and _)" if other else ""))


def explain(reports: Sequence[MigrationReport]) -> list[str]:
    """One line per finding and note, with file:line and the reason: for the error block or a log."""
    lines = []
    for r in reports:
        mark = f" [reviewed: {r.review}]" if r.reviewed else ""
        for f in r.findings:
            lines.append(f"{r.revision} {r.path}:{f.line} {f.operation} {f.target}: {f.why}{mark}")
        for n in r.notes:
            lines.append(f"note: {r.revision} {r.path}:{n.line} {n.operation} {n.target}: {n.why}")
    return lines


def as_records(reports: Sequence[MigrationReport]) -> list[dict]:
    """JSON-ready form for the release record."""
    def finding(f: Finding) -> dict:
        return {"operation": f.operation, "table": f.table, "column": f.column, "line": f.line, "why": f.why}
    return [{"revision": r.revision, "path": r.path, "reviewed": r.reviewed, "review": r.review,
             "findings": [finding(f) for f in r.findings], "notes": [finding(n) for n in r.notes]}
            for r in reports]
