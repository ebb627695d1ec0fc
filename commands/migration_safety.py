"""Which pending alembic migrations break the code that is still serving (issue 9, target 5).

Migrations run while the old release serves (under ``blue-green``, while both releases serve). A
revision that drops or renames a table or column, changes a column's type, or makes a column NOT
NULL the old code does not fill makes the old code fail between ``alembic upgrade`` and the moment
the new code takes over (or, under blue/green, for as long as the old slot serves).

This module reads each pending migration's *source text* (the checklist gets it with ``git show
<remote>/<branch>:<path>``), parses it with :mod:`ast` (never imports or executes it) and reports
the operations of its ``upgrade()`` that break the old code. It is pure: no SSH, no Fabric.

What is recognised, inside ``upgrade()`` (and ``upgrade_<engine>()``, and module-level helper
functions they call by name), through ``op`` (or ``from alembic import op as X``) and through the
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
  concatenation, or a name bound to a string in the file): :func:`scan_sql`, a documented,
  heuristic keyword scan for PostgreSQL DDL (DROP TABLE; ALTER TABLE ... DROP [COLUMN], RENAME
  [COLUMN] ... TO, RENAME TO, ALTER [COLUMN] ... [SET DATA] TYPE, ALTER [COLUMN] ... SET NOT NULL,
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

import ast
import io
import re
import tokenize
from dataclasses import dataclass, replace
from typing import Iterable, Mapping, NamedTuple, Sequence

from commands.git import Migration

REVIEW_MARK = "deploy: reviewed-breaking-change"
CONFIG_KEY = "REVIEWED_MIGRATIONS"
STRATEGIES = ("recreate", "blue-green")
CANNOT_ANALYSE = "cannot analyse"

WHY_DROP_COLUMN = "the code still serving may read or write this column: its queries fail with 'column does not exist'"
WHY_DROP_TABLE = "the code still serving may query this table: its queries fail with 'relation does not exist'"
WHY_RENAME_TABLE = "the code still serving uses the old table name: its queries fail with 'relation does not exist'"
WHY_RENAME_COLUMN = "the code still serving uses the old column name: its queries fail with 'column does not exist'"
WHY_TYPE = "the code still serving reads and writes the old type: its values may no longer fit, compare or convert"
WHY_SET_NOT_NULL = ("rows the code still serving inserts without this column, or with NULL in it, are rejected "
                    "by the NOT NULL constraint")
WHY_ADD_NOT_NULL = ("the code still serving does not know this column: its INSERTs leave it NULL and are rejected "
                    "(give it a server_default, or add it nullable and tighten it in a later release)")
WHY_INDEX = ("builds index {} with a lock that blocks writes to the table until it is built "
             "(postgresql_concurrently=True inside op.get_context().autocommit_block() avoids it)")

# Operations that break the old code even on a column the pending revisions add themselves.
_BREAKS_NEW_COLUMNS = {"alter_column(nullable=False)", "add_column(nullable=False)",
                       "execute: SET NOT NULL", "execute: ADD COLUMN NOT NULL"}
_SUMMARY_LIMIT = 6          # operations named per revision in the one-line summary
_REVIEW_CHARS = 80          # of the reviewer's note quoted there


class _Fresh:
    """Tables and columns the pending revisions create before an operation: the old code cannot be
    using them, so dropping, renaming or retyping them does not break it. A NOT NULL column still
    does (the old code's INSERTs into an old table leave it NULL)."""

    def __init__(self, tables: Iterable[str] = (), columns: Iterable[tuple[str, str]] = ()):
        self.tables, self.columns = set(tables), set(columns)

    def hides(self, operation: str, table: str, column: str) -> bool:
        return table in self.tables or (operation not in _BREAKS_NEW_COLUMNS and (table, column) in self.columns)


@dataclass(frozen=True)
class Finding:
    operation: str      # e.g. "drop_column", "alter_column(type_)", "execute: DROP TABLE", "cannot analyse"
    table: str          # "schema.table" when the call names a schema; "" when not applicable
    column: str         # "" for table-level operations; "<expr>" when not a literal
    line: int           # line of the call in the migration file
    why: str            # how it breaks the code still serving
    reviewed: bool = False

    @property
    def target(self) -> str:
        return ".".join(p for p in (self.table, self.column) if p)


@dataclass(frozen=True)
class MigrationReport:
    path: str
    revision: str
    findings: tuple[Finding, ...]       # operations that break the code still serving
    notes: tuple[Finding, ...]          # worth knowing, never a break (e.g. a blocking index build)
    review: str                         # why the revision counts as reviewed; "" when it does not
    created_tables: frozenset[str] = frozenset()
    added_columns: frozenset[tuple[str, str]] = frozenset()

    @property
    def reviewed(self) -> bool:
        return bool(self.review)

    @property
    def breaking(self) -> bool:
        """Has findings and is not reviewed: what warns (recreate) or blocks (blue-green)."""
        return bool(self.findings) and not self.reviewed


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
    before = _Fresh((t for r in after for t in r.created_tables), (c for r in after for c in r.added_columns))
    tree, problem = _parse(source)
    visitor = None
    if tree is not None:
        revision = _module_string(tree, "revision") or revision
        visitor = _Upgrade(tree, _Fresh(before.tables, before.columns))
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


def _parse(source: str) -> tuple[ast.Module | None, tuple[int, str] | None]:
    if not source.strip():
        return None, (0, "the file is empty or missing at the deployed ref: review it by hand")
    try:
        return ast.parse(source), None
    except SyntaxError as exc:
        return None, (exc.lineno or 0, f"the file does not parse as Python ({exc.msg}, line {exc.lineno or '?'}): review it by hand")
    except (ValueError, RecursionError) as exc:
        return None, (0, f"the file does not parse as Python ({exc.__class__.__name__}): review it by hand")


def _module_string(tree: ast.Module, name: str) -> str:
    """Value of a top-level ``name = "..."`` (or ``name: str = "..."``)."""
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        value = getattr(node, "value", None)
        if any(isinstance(t, ast.Name) and t.id == name for t in targets) and _is_str(value):
            return value.value
    return ""


def _is_str(node) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _is_const(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _arg(node: ast.Call, pos: int | None, kw: str):
    """The argument at position ``pos`` or keyword ``kw`` of a call, or None."""
    for k in node.keywords:
        if k.arg == kw:
            return k.value
    if pos is not None and 0 <= pos < len(node.args) and not isinstance(node.args[pos], ast.Starred):
        return node.args[pos]
    return None


def _callee_name(func) -> str:
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else ""


def _aliases(tree: ast.Module, module: str, name: str) -> set[str]:
    """Names ``name`` is bound to by ``from <module>... import name [as alias]``, plus ``name`` itself."""
    out = {name}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == module:
            out.update(a.asname or a.name for a in node.names if a.name == name)
    return out


def _string_constants(tree: ast.Module) -> dict[str, str]:
    """``NAME = "text"`` anywhere in the file, so ``op.execute(SQL)`` and ``op.drop_table(TABLE)`` resolve."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _is_str(node.value):
            out.update((t.id, node.value.value) for t in node.targets if isinstance(t, ast.Name))
    return out


class _OpCall(NamedTuple):
    node: ast.Call
    batch: str | None       # the table of the enclosing batch_alter_table, None for op.<call>

    def arg(self, pos: int, kw: str):
        """Argument ``pos`` of the ``op.<call>`` signature; batch calls have no table argument."""
        if self.batch is None:
            return _arg(self.node, pos, kw)
        return _arg(self.node, pos - 1 if pos > 0 else None, kw)


class _Upgrade(ast.NodeVisitor):
    """Walks ``upgrade()`` in source order and collects findings."""

    def __init__(self, tree: ast.Module, fresh: _Fresh):
        self.ops = _aliases(tree, "alembic", "op")
        self.columns = _aliases(tree, "sqlalchemy", "Column")
        self.constants = _string_constants(tree)
        self.functions = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        self.followed: set[str] = set()
        self.batch: dict[str, str] = {}
        self.fresh = fresh
        self.findings: list[Finding] = []
        self.notes: list[Finding] = []

    def run(self) -> tuple[int, str] | None:
        entry = [name for name in self.functions if name == "upgrade" or name.startswith("upgrade_")]
        if not entry:
            return 0, "no upgrade() function found: review it by hand"
        try:
            for name in entry:
                self._follow(name)
        except RecursionError:
            return 0, "the file is nested too deeply to analyse: review it by hand"
        return None

    def _follow(self, name: str) -> None:
        if name in self.followed:
            return
        self.followed.add(name)
        for stmt in self.functions[name].body:
            self.visit(stmt)

    def visit_With(self, node: ast.With) -> None:
        saved = dict(self.batch)
        for item in node.items:
            self.visit(item.context_expr)
            table = self._batch_table(item.context_expr)
            if table is not None and isinstance(item.optional_vars, ast.Name):
                self.batch[item.optional_vars.id] = table
        for stmt in node.body:
            self.visit(stmt)
        self.batch = saved

    def visit_Call(self, node: ast.Call) -> None:
        name = _callee_name(node.func)
        receiver = self._receiver(node.func)
        if receiver is not False and name in _HANDLERS:
            _HANDLERS[name](self, _OpCall(node, receiver))
        elif name in ("execute", "exec_driver_sql") and isinstance(node.func, ast.Attribute):
            self._execute(node)
        elif isinstance(node.func, ast.Name) and name in self.functions:
            self._follow(name)
        self.generic_visit(node)

    def _receiver(self, func) -> str | None | bool:
        """None for ``op.<call>``, the batch's table for ``batch_op.<call>``, False otherwise."""
        if not isinstance(func, ast.Attribute):
            return False
        value = func.value
        if isinstance(value, ast.Name):
            if value.id in self.batch:
                return self.batch[value.id]
            return None if value.id in self.ops else False
        is_alembic_op = (isinstance(value, ast.Attribute) and value.attr == "op"
                         and isinstance(value.value, ast.Name) and value.value.id == "alembic")
        return None if is_alembic_op else False

    def _batch_table(self, expr) -> str | None:
        if not (isinstance(expr, ast.Call) and _callee_name(expr.func) == "batch_alter_table"
                and self._receiver(expr.func) is None):
            return None
        return self._qualified(expr, _arg(expr, 0, "table_name"))

    # --- values

    def _text(self, node) -> str:
        """A literal (or a name bound to one) as text; any other expression as ``<expr>``."""
        if node is None:
            return ""
        if _is_str(node):
            return node.value
        if isinstance(node, ast.Name) and node.id in self.constants:
            return self.constants[node.id]
        if isinstance(node, ast.Call) and _callee_name(node.func) == "f" and node.args:
            return self._text(node.args[0])     # op.f("ix_name"): a name exempt from naming conventions
        return f"<{ast.unparse(node)}>"

    def _qualified(self, call: ast.Call, table_node) -> str:
        schema = _arg(call, None, "schema")
        schema_text = "" if schema is None or _is_const(schema, None) else self._text(schema)
        return ".".join(p for p in (schema_text, self._text(table_node)) if p)

    def _table(self, c: _OpCall, kw: str = "table_name") -> str:
        return c.batch if c.batch is not None else self._qualified(c.node, _arg(c.node, 0, kw))

    def _sql_text(self, node) -> str | None:
        """The SQL of a literal argument, or None when it is built at run time."""
        if _is_str(node):
            return node.value
        if isinstance(node, ast.Name):
            return self.constants.get(node.id)
        if isinstance(node, ast.JoinedStr):
            return "".join(v.value if _is_str(v) else self._text(v.value) for v in node.values)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self._sql_text(node.left), self._sql_text(node.right)
            return None if left is None or right is None else left + right
        if isinstance(node, ast.Call) and _callee_name(node.func) in ("text", "DDL"):
            return self._sql_text(_arg(node, 0, "text"))
        return None

    # --- findings

    def _flag(self, operation: str, table: str, column: str, node: ast.AST, why: str) -> None:
        if not self.fresh.hides(operation, table, column):
            self.findings.append(Finding(operation, table, column, node.lineno, why))

    def _drop_column(self, c: _OpCall) -> None:
        self._flag("drop_column", self._table(c), self._text(c.arg(1, "column_name")), c.node, WHY_DROP_COLUMN)

    def _drop_table(self, c: _OpCall) -> None:
        self._flag("drop_table", self._table(c), "", c.node, WHY_DROP_TABLE)

    def _rename_table(self, c: _OpCall) -> None:
        old, new = self._table(c, "old_table_name"), self._text(c.arg(1, "new_table_name"))
        if old in self.fresh.tables:
            self.fresh.tables.add(new)
        self._flag("rename_table", old, "", c.node, f"renamed to {new}: {WHY_RENAME_TABLE}")

    def _alter_column(self, c: _OpCall) -> None:
        table, column = self._table(c), self._text(c.arg(1, "column_name"))
        new_name, type_ = _arg(c.node, None, "new_column_name"), _arg(c.node, None, "type_")
        if new_name is not None and not _is_const(new_name, None):
            if (table, column) in self.fresh.columns:
                self.fresh.columns.add((table, self._text(new_name)))
            self._flag("alter_column(new_column_name)", table, column, c.node,
                       f"renamed to {self._text(new_name)}: {WHY_RENAME_COLUMN}")
        if type_ is not None and not _is_const(type_, None):
            self._flag("alter_column(type_)", table, column, c.node, f"new type {ast.unparse(type_)}: {WHY_TYPE}")
        if _is_const(_arg(c.node, None, "nullable"), False):
            self._flag("alter_column(nullable=False)", table, column, c.node, WHY_SET_NOT_NULL)

    def _add_column(self, c: _OpCall) -> None:
        table, col = self._table(c), c.arg(1, "column")
        if not (isinstance(col, ast.Call) and self._is_column(col.func)):
            return
        name = self._text(_arg(col, 0, "name"))
        self.fresh.columns.add((table, name))
        if _not_null(col) and not _server_fills(col):
            self._flag("add_column(nullable=False)", table, name, c.node, WHY_ADD_NOT_NULL)

    def _is_column(self, func) -> bool:
        return (isinstance(func, ast.Name) and func.id in self.columns) or (
            isinstance(func, ast.Attribute) and func.attr == "Column")

    def _create_table(self, c: _OpCall) -> None:
        self.fresh.tables.add(self._table(c))

    def _create_index(self, c: _OpCall) -> None:
        if _is_const(_arg(c.node, None, "postgresql_concurrently"), True):
            return
        table = c.batch if c.batch is not None else self._qualified(c.node, _arg(c.node, 1, "table_name"))
        if table not in self.fresh.tables:
            name = self._text(_arg(c.node, 0, "index_name"))
            self.notes.append(Finding("create_index", table, "", c.node.lineno, WHY_INDEX.format(name)))

    def _execute(self, node: ast.Call) -> None:
        sql = self._sql_text(_arg(node, 0, "sqltext") or _arg(node, None, "statement"))
        for hit in _sql_events(sql or ""):
            if _breaks(hit, self.fresh):
                self.findings.append(Finding(hit.operation, hit.table, hit.column, node.lineno, hit.why))


def _not_null(col: ast.Call) -> bool:
    nullable = _arg(col, None, "nullable")
    if nullable is not None:
        return _is_const(nullable, False)
    return _is_const(_arg(col, None, "primary_key"), True)


def _server_fills(col: ast.Call) -> bool:
    """A server_default, or a Computed/Identity column: the database fills it for the old code."""
    default = _arg(col, None, "server_default")
    if default is not None and not _is_const(default, None):
        return True
    return any(isinstance(a, ast.Call) and _callee_name(a.func) in ("Computed", "Identity") for a in col.args)


_HANDLERS = {
    "drop_column": _Upgrade._drop_column,
    "drop_table": _Upgrade._drop_table,
    "rename_table": _Upgrade._rename_table,
    "alter_column": _Upgrade._alter_column,
    "add_column": _Upgrade._add_column,
    "create_table": _Upgrade._create_table,
    "create_index": _Upgrade._create_index,
}


# --- raw SQL (heuristic) --------------------------------------------------------------------

class SqlHit(NamedTuple):
    operation: str      # "execute: DROP TABLE"...; or CREATED_TABLE / ADDED_COLUMN, which break nothing
    table: str
    column: str
    why: str            # "" for CREATED_TABLE / ADDED_COLUMN


CREATED_TABLE, ADDED_COLUMN = "execute: CREATE TABLE", "execute: ADD COLUMN"

_IDENT = r'(?:"[^"]+"|`[^`]+`|<[^>]*>|[A-Za-z_][\w$]*)'
_NAME = rf"{_IDENT}(?:\.{_IDENT})?"
_NOISE = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'", re.S)
_DROP_TABLE = re.compile(rf"\bDROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?P<names>{_NAME}(?:\s*,\s*{_NAME})*)", re.I)
_CREATE_TABLE = re.compile(rf"\bCREATE\s+(?:(?:GLOBAL\s+|LOCAL\s+)?(?:TEMP|TEMPORARY|UNLOGGED)\s+)?TABLE\s+"
                           rf"(?:IF\s+NOT\s+EXISTS\s+)?(?P<table>{_NAME})", re.I)
_ALTER_TABLE = re.compile(rf"\bALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?(?P<table>{_NAME})\s*\*?\s+(?P<actions>.*)", re.I | re.S)
_RENAME_TABLE = re.compile(rf"\bRENAME\s+TABLE\s+(?P<table>{_NAME})\s+TO\s+(?P<new>{_NAME})", re.I)
_NOT_A_COLUMN = r"(?!(?:CONSTRAINT|PRIMARY|UNIQUE|FOREIGN|CHECK|EXCLUDE|INDEX|KEY|PARTITION)\b)"
_ACTIONS = (
    (re.compile(rf"^RENAME\s+TO\s+(?P<new>{_NAME})", re.I), "execute: RENAME TABLE", WHY_RENAME_TABLE),
    (re.compile(rf"^RENAME\s+(?:COLUMN\s+)?{_NOT_A_COLUMN}(?P<col>{_IDENT})\s+TO\s+(?P<new>{_IDENT})", re.I),
     "execute: RENAME COLUMN", WHY_RENAME_COLUMN),
    (re.compile(rf"^DROP\s+(?:COLUMN\s+)?(?:IF\s+EXISTS\s+)?{_NOT_A_COLUMN}(?P<col>{_IDENT})", re.I),
     "execute: DROP COLUMN", WHY_DROP_COLUMN),
    (re.compile(rf"^ALTER\s+(?:COLUMN\s+)?(?P<col>{_IDENT})\s+(?:SET\s+DATA\s+)?TYPE\b", re.I),
     "execute: ALTER COLUMN TYPE", WHY_TYPE),
    (re.compile(rf"^ALTER\s+(?:COLUMN\s+)?(?P<col>{_IDENT})\s+SET\s+NOT\s+NULL\b", re.I),
     "execute: SET NOT NULL", WHY_SET_NOT_NULL),
    (re.compile(rf"^ADD\s+(?:COLUMN\s+)?(?:IF\s+NOT\s+EXISTS\s+)?{_NOT_A_COLUMN}(?P<col>{_IDENT})\s+(?P<rest>.*)", re.I | re.S),
     "execute: ADD COLUMN NOT NULL", WHY_ADD_NOT_NULL),
)
_NOT_NULL = re.compile(r"\bNOT\s+NULL\b|\bPRIMARY\s+KEY\b", re.I)
_FILLED = re.compile(r"\bDEFAULT\b|\bGENERATED\b|\b(?:small|big)?serial\b", re.I)


def scan_sql(sql: str) -> list[SqlHit]:
    """Breaking DDL in raw SQL, by keywords. Heuristic by design: comments and quoted literals are
    skipped, each ``;``-separated statement is searched for DROP TABLE, ALTER TABLE (with its
    comma-separated actions) and RENAME TABLE; tables and columns the same SQL creates first do not
    count. Anything else, and SQL built at run time, is not seen."""
    fresh = _Fresh()
    return [hit for hit in _sql_events(sql) if _breaks(hit, fresh)]


def _breaks(hit: SqlHit, fresh: _Fresh) -> bool:
    """Whether ``hit`` breaks the old code; records the tables and columns it creates in ``fresh``."""
    breaks = bool(hit.why) and not fresh.hides(hit.operation, hit.table, hit.column)
    if hit.operation == CREATED_TABLE:
        fresh.tables.add(hit.table)
    elif hit.operation in (ADDED_COLUMN, "execute: ADD COLUMN NOT NULL"):
        fresh.columns.add((hit.table, hit.column))
    return breaks


def _sql_events(sql: str) -> list[SqlHit]:
    """Creations and breaking DDL, in statement order."""
    events: list[SqlHit] = []
    for statement in _NOISE.sub(lambda m: "''" if m.group().startswith("'") else " ", sql).split(";"):
        events += [SqlHit(CREATED_TABLE, _sql_name(m.group("table")), "", "") for m in _CREATE_TABLE.finditer(statement)]
        for m in _DROP_TABLE.finditer(statement):
            events += [SqlHit("execute: DROP TABLE", _sql_name(n), "", WHY_DROP_TABLE) for n in m.group("names").split(",")]
        for m in _RENAME_TABLE.finditer(statement):
            events.append(SqlHit("execute: RENAME TABLE", _sql_name(m.group("table")), "",
                                 f"renamed to {_sql_name(m.group('new'))}: {WHY_RENAME_TABLE}"))
        m = _ALTER_TABLE.search(statement)
        if m:
            events += _alter_actions(_sql_name(m.group("table")), m.group("actions"))
    return events


def _alter_actions(table: str, actions: str) -> list[SqlHit]:
    events = []
    for action in _split_top_level(actions):
        for pattern, operation, why in _ACTIONS:
            m = pattern.match(action)
            if not m:
                continue
            groups = m.groupdict()
            column = _sql_name(groups["col"]) if "col" in groups else ""
            if "rest" in groups and (not _NOT_NULL.search(groups["rest"]) or _FILLED.search(groups["rest"])):
                operation, why = ADDED_COLUMN, ""
            elif "new" in groups:
                why = f"renamed to {_sql_name(groups['new'])}: {why}"
            events.append(SqlHit(operation, table, column, why))
            break
    return events


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses (``numeric(10, 2)`` stays whole); parts are stripped."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [" ".join(p.split()) for p in parts if p.strip()]


def _sql_name(name: str) -> str:
    """Identifier as the database sees it: quotes removed, unquoted parts folded to lower case."""
    parts = re.findall(_IDENT, name.strip())
    return ".".join(p[1:-1] if p[0] in '"`' else p if p.startswith("<") else p.lower() for p in parts)


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
    how = f"review, then mark with '# {REVIEW_MARK} <who/why>' in the file or {CONFIG_KEY}={','.join(open_revisions)}"
    return Verdict("block" if strategy == "blue-green" else "warn",
                   f"breaks the code still serving ({window}): {summary_line(reports)}; {how}")


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
