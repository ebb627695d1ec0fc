"""Breaking DDL in the raw SQL of a migration (``op.execute("...")``): a documented, heuristic
keyword scan for PostgreSQL (and MySQL's RENAME TABLE), part of :mod:`commands.migration_safety`."""
from __future__ import annotations

import re
from typing import NamedTuple

from commands.migration_findings import (
    WHY_ADD_NOT_NULL,
    WHY_DROP_COLUMN,
    WHY_DROP_TABLE,
    WHY_RENAME_COLUMN,
    WHY_RENAME_TABLE,
    WHY_SET_NOT_NULL,
    WHY_TYPE,
    Fresh,
)


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
    fresh = Fresh()
    return [hit for hit in sql_events(sql) if breaks(hit, fresh)]


def breaks(hit: SqlHit, fresh: Fresh) -> bool:
    """Whether ``hit`` breaks the old code; records the tables and columns it creates in ``fresh``."""
    broken = bool(hit.why) and not fresh.hides(hit.operation, hit.table, hit.column)
    if hit.operation == CREATED_TABLE:
        fresh.tables.add(hit.table)
    elif hit.operation in (ADDED_COLUMN, "execute: ADD COLUMN NOT NULL"):
        fresh.columns.add((hit.table, hit.column))
    return broken


def sql_events(sql: str) -> list[SqlHit]:
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
