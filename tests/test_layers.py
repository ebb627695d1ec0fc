"""Dependency direction: fabfile -> tasks -> commands -> config. commands/ and config/ never
import fabric, invoke or paramiko, so they stay pure and testable without SSH."""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
FORBIDDEN = {"fabric", "invoke", "paramiko", "tasks"}


def imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module.split(".")[0]


def test_pure_layers_do_not_import_fabric_or_tasks():
    for pkg in ("commands", "config"):
        for path in (ROOT / pkg).glob("*.py"):
            bad = FORBIDDEN & set(imports(path))
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_only_the_session_calls_connection_run():
    offenders = []
    for path in (ROOT / "tasks").glob("*.py"):
        if path.name == "session.py":
            continue
        if ".cxn.run(" in path.read_text() or "c.run(" in path.read_text():
            offenders.append(path.name)
    assert not offenders
