"""What a finding of :mod:`commands.migration_safety` is: the operation, where, and why it breaks the
code still serving; and the tables and columns the pending revisions create, which nothing old can
be using."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

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
BREAKS_NEW_COLUMNS = {"alter_column(nullable=False)", "add_column(nullable=False)",
                      "execute: SET NOT NULL", "execute: ADD COLUMN NOT NULL"}


class Fresh:
    """Tables and columns the pending revisions create before an operation: the old code cannot be
    using them, so dropping, renaming or retyping them does not break it. A NOT NULL column still
    does (the old code's INSERTs into an old table leave it NULL)."""

    def __init__(self, tables: Iterable[str] = (), columns: Iterable[tuple[str, str]] = ()):
        self.tables, self.columns = set(tables), set(columns)

    def hides(self, operation: str, table: str, column: str) -> bool:
        return table in self.tables or (operation not in BREAKS_NEW_COLUMNS and (table, column) in self.columns)


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
