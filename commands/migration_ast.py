"""The walk through a migration's ``upgrade()`` (its syntax tree: never imported nor run) that
finds the operations breaking the code still serving, for :mod:`commands.migration_safety`."""
from __future__ import annotations

import ast
from typing import NamedTuple

from commands.migration_findings import (
    WHY_ADD_NOT_NULL,
    WHY_DROP_COLUMN,
    WHY_DROP_TABLE,
    WHY_INDEX,
    WHY_RENAME_COLUMN,
    WHY_RENAME_TABLE,
    WHY_SET_NOT_NULL,
    WHY_TYPE,
    Finding,
    Fresh,
)
from commands.migration_sql import breaks, sql_events


def parse_source(source: str) -> tuple[ast.Module | None, tuple[int, str] | None]:
    if not source.strip():
        return None, (0, "the file is empty or missing at the deployed ref: review it by hand")
    try:
        return ast.parse(source), None
    except SyntaxError as exc:
        return None, (exc.lineno or 0, f"the file does not parse as Python ({exc.msg}, line {exc.lineno or '?'}): review it by hand")
    except (ValueError, RecursionError) as exc:
        return None, (0, f"the file does not parse as Python ({exc.__class__.__name__}): review it by hand")


def module_string(tree: ast.Module, name: str) -> str:
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
    """Names ``name`` is bound to by ``from <module>... import name [as alias]`` and ``import
    <module>.name as alias``, plus ``name`` itself."""
    out = {name}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == module:
            out.update(a.asname or a.name for a in node.names if a.name == name)
        elif isinstance(node, ast.Import):
            out.update(a.asname for a in node.names if a.name == f"{module}.{name}" and a.asname)
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


class Upgrade(ast.NodeVisitor):
    """Walks ``upgrade()`` in source order and collects findings."""

    def __init__(self, tree: ast.Module, fresh: Fresh):
        self.ops = _aliases(tree, "alembic", "op")
        self.op_functions = {a.asname or a.name: a.name for node in ast.walk(tree)    # from alembic.op import drop_column
                             if isinstance(node, ast.ImportFrom) and node.module == "alembic.op" for a in node.names}
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
        if isinstance(node.func, ast.Name) and name in self.op_functions:
            name, receiver = self.op_functions[name], None
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
        for hit in sql_events(sql or ""):
            if breaks(hit, self.fresh):
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
    "drop_column": Upgrade._drop_column,
    "drop_table": Upgrade._drop_table,
    "rename_table": Upgrade._rename_table,
    "alter_column": Upgrade._alter_column,
    "add_column": Upgrade._add_column,
    "create_table": Upgrade._create_table,
    "create_index": Upgrade._create_index,
}
