"""The project's own code read as syntax trees, for the tests that hold its shape (test_layers.py,
test_sizes.py): which modules there are, what each imports (at module level and inside functions),
which comments stand where, and which calls go to an SSH connection. Pure: nothing is imported or
run."""
from __future__ import annotations

import ast
import io
import pathlib
import re
import tokenize
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("tasks", "commands", "config")


def project_modules(root: pathlib.Path = ROOT) -> dict[str, pathlib.Path]:
    """Dotted module name -> file, for fabfile.py and every module of tasks/, commands/, config/."""
    found = {"fabfile": root / "fabfile.py"}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def parse(path: pathlib.Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def with_parents(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            child.parent = node
    return tree


def enclosing_function(node: ast.AST) -> ast.AST | None:
    """The innermost function (or lambda) around ``node``; needs :func:`with_parents`."""
    node = getattr(node, "parent", None)
    while node is not None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return node
        node = getattr(node, "parent", None)
    return None


def comment_lines(source: str) -> tuple[set[int], set[int]]:
    """(lines holding a comment, lines holding nothing but a comment)."""
    anywhere, alone = set(), set()
    lines = source.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            row = tok.start[0]
            anywhere.add(row)
            if lines[row - 1].lstrip().startswith("#"):
                alone.add(row)
    return anywhere, alone


# ---- imports -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Import:
    source: str             # the importing module, dotted ("tasks.flow", "fabfile", "config")
    target: str             # the imported module: a project module's dotted name, or the external one as written
    line: int
    in_function: bool       # inside a function body (runs when it is called, not on import)
    commented: bool         # a comment on the import's own line(s) or alone on the line before it

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


def _package_of(module: str, is_package: bool) -> str:
    return module if is_package else module.rpartition(".")[0]


def imports_of(module: str, source: str, known: set[str], is_package: bool = False) -> list[Import]:
    """Every import statement of one module, wherever it stands. ``from pkg import name`` counts as
    an import of ``pkg.name`` when that is a project module (``from tasks import ui``), else of
    ``pkg`` (``from config import Settings``)."""
    tree = with_parents(ast.parse(source))
    anywhere, alone = comment_lines(source)
    out = []
    for node in sorted(ast.walk(tree), key=lambda n: (getattr(n, "lineno", 0), getattr(n, "col_offset", 0))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _package_of(module, is_package).split(".")
                package = package[:len(package) - (node.level - 1)]
                base = ".".join(p for p in [*package, base] if p)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        commented = bool(anywhere & set(range(node.lineno, node.end_lineno + 1))) or node.lineno - 1 in alone
        inside = enclosing_function(node) is not None
        out += [Import(module, t, node.lineno, inside, commented) for t in dict.fromkeys(targets)]
    return out


def import_graph(root: pathlib.Path = ROOT) -> list[Import]:
    modules = project_modules(root)
    known = set(modules)
    found = []
    for name, path in modules.items():
        found += imports_of(name, path.read_text(encoding="utf-8"), known, path.name == "__init__.py")
    return found


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a module importing itself),
    each as a sorted list (Tarjan's algorithm, iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    nodes = sorted(set(edges) | {t for ts in edges.values() for t in ts})
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges.get(node, ()):
                    found.append(sorted(component))
    return found


# ---- calls on an SSH connection -------------------------------------------------------------------

CONNECTION_METHODS = {"run", "sudo", "put", "get"}
_CONNECTION_TYPE = re.compile(r"\b(?:Connection|Context)\b")
# Names the code gives connections by convention, even where nothing says their type (Session.ctx
# is annotated ``object``). Bare names only where they cannot mean anything else.
CONNECTION_ATTRS = {"cxn", "ctx", "connection", "conn"}
CONNECTION_NAMES = {"cxn", "connection", "conn"}


def _names(target: ast.AST) -> list[str]:
    return [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]


def _callee(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def connection_factories(trees: list[ast.Module]) -> set[str]:
    """Functions (and the classes themselves) that return a connection, or a list of them."""
    found = {"Connection", "Context"}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None \
                    and _CONNECTION_TYPE.search(ast.unparse(node.returns)):
                found.add(node.name)
    return found


def connection_attributes(trees: list[ast.Module]) -> set[str]:
    """Class fields annotated as a connection (``cxn: Connection | None``), plus the conventional names."""
    found = set(CONNECTION_ATTRS)
    for tree in trees:
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            for stmt in cls.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) \
                        and _CONNECTION_TYPE.search(ast.unparse(stmt.annotation)):
                    found.add(stmt.target.id)
    return found


def _connection_names(scope: ast.AST, factories: set[str]) -> set[str]:
    """Names bound to a connection in one function (or module): by annotation, by assignment from a
    factory, by a ``for`` over a factory's list, or narrowed by ``isinstance(x, Connection)``."""
    found = set(CONNECTION_NAMES)
    if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
        args = scope.args
        for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if a is not None and a.annotation is not None and _CONNECTION_TYPE.search(ast.unparse(a.annotation)):
                found.add(a.arg)
    for node in ast.walk(scope):
        if isinstance(node, ast.AnnAssign) and _CONNECTION_TYPE.search(ast.unparse(node.annotation)):
            found.update(_names(node.target))
        elif isinstance(node, (ast.Assign, ast.For)) and isinstance(getattr(node, "value", getattr(node, "iter", None)), ast.Call):
            call = node.value if isinstance(node, ast.Assign) else node.iter
            if _callee(call) in factories:
                found.update(n for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) for n in _names(t))
        elif isinstance(node, ast.Call) and _callee(node) == "isinstance" and len(node.args) == 2 \
                and isinstance(node.args[0], ast.Name) and _CONNECTION_TYPE.search(ast.unparse(node.args[1])):
            found.add(node.args[0].id)
    return found


@dataclass(frozen=True)
class ConnectionCall:
    module: str
    line: int
    call: str               # e.g. "s.cxn.sudo"

    @property
    def where(self) -> str:
        return f"{self.module}:{self.line} {self.call}(...)"


def connection_calls(module: str, tree: ast.Module, factories: set[str], attributes: set[str]) -> list[ConnectionCall]:
    """``<connection>.run/.sudo/.put/.get(...)`` calls in one module."""
    with_parents(tree)
    names_by_scope: dict[ast.AST, set[str]] = {}
    module_names = _connection_names(tree, factories)
    out = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CONNECTION_METHODS):
            continue
        receiver = node.func.value
        if isinstance(receiver, ast.Name):
            names = set(module_names)
            scope = enclosing_function(node)
            while scope is not None:           # a lambda or inner function sees its outer functions' names
                if scope not in names_by_scope:
                    names_by_scope[scope] = _connection_names(scope, factories)
                names |= names_by_scope[scope]
                scope = enclosing_function(scope)
            hit = receiver.id in names
        else:
            hit = isinstance(receiver, ast.Attribute) and receiver.attr in attributes
        if hit:
            out.append(ConnectionCall(module, node.lineno, ast.unparse(node.func)))
    return out


# ---- sizes -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Function:
    module: str
    name: str               # qualified: Class.method, outer.inner
    line: int
    lines: int              # from the def line to the last line of the body
    why_whole: str          # the comment right above it (above its decorators) that says why it stays whole

    @property
    def where(self) -> str:
        return f"{self.module}:{self.line} {self.name} ({self.lines} lines)"


def functions(module: str, source: str) -> list[Function]:
    tree = ast.parse(source)
    lines = source.splitlines()
    out = []

    def comment_above(node) -> str:
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        text, row = [], first - 1
        while row >= 1 and lines[row - 1].lstrip().startswith("#"):
            text.insert(0, lines[row - 1].strip().lstrip("#").strip())
            row -= 1
        return " ".join(text)

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                out.append(Function(module, name, child.lineno, child.end_lineno - child.lineno + 1, comment_above(child)))
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return out
