"""The dependency direction, checked on the import graph built from the syntax trees of fabfile.py,
tasks/, commands/ and config/ (tests/codebase.py), imports inside functions included:

    fabfile -> tasks -> commands -> config

- no import cycle between modules, whether the imports stand at the top or inside functions;
- no arrow upwards: commands/ and config/ never import tasks/ (nor fabfile), config/ never imports
  commands/;
- commands/ and config/ import no fabric, invoke or paramiko: they stay pure, testable without SSH;
- an import inside a function has a comment on its line or the line above saying why;
- only tasks/session.py calls ``run``, ``sudo``, ``put`` or ``get`` on an SSH connection (it times
  the command, applies dry-run and redaction, and always passes ``warn``).

The first tests below run the checks on small made-up modules, so a check that could never fail
shows up here."""
import ast

from tests.codebase import (
    connection_attributes,
    connection_calls,
    connection_factories,
    cycles,
    import_graph,
    imports_of,
    parse,
    project_modules,
)

LAYERS = {"fabfile": 3, "tasks": 2, "commands": 1, "config": 0}
IMPURE = {"fabric", "invoke", "paramiko"}
SESSION = "tasks.session"


def layer(module: str) -> int | None:
    return LAYERS.get(module.split(".")[0])


def upward(imports):
    """Arrows to a higher layer (or from config/ to commands/, the next one up)."""
    return [i for i in imports if layer(i.target) is not None and layer(i.target) > layer(i.source)]


def graph(imports):
    edges = {}
    for i in imports:
        if layer(i.target) is not None:
            edges.setdefault(i.source, set()).add(i.target)
    return edges


def calls_in(sources: dict[str, str]):
    trees = {name: ast.parse(text) for name, text in sources.items()}
    factories, attributes = connection_factories(list(trees.values())), connection_attributes(list(trees.values()))
    return [c.where for name, tree in trees.items() for c in connection_calls(name, tree, factories, attributes)]


# ---- the checks, on made-up modules ----------------------------------------------------------------

KNOWN = {"tasks.flow", "tasks.ui", "commands.shell", "config", "config.validators"}


def test_imports_are_found_at_the_top_inside_functions_and_relative():
    source = (
        "import os\n"
        "from tasks import ui\n"
        "from config import Settings\n"
        "def f():\n"
        "    from commands.shell import q\n"
        "    # fabric is slow to import and only this task needs it\n"
        "    import fabric\n"
        "from . import validators\n"
    )
    got = [(i.target, i.line, i.in_function, i.commented) for i in imports_of("config.x", source, KNOWN)]
    assert got == [("os", 1, False, False), ("tasks.ui", 2, False, False), ("config", 3, False, False),
                   ("commands.shell", 5, True, False), ("fabric", 7, True, True), ("config.validators", 8, False, False)]


def test_an_upward_arrow_and_a_cycle_are_seen_even_through_a_function_level_import():
    flow = imports_of("tasks.flow", "from tasks import ui\n", KNOWN)
    ui = imports_of("tasks.ui", "def later():\n    from tasks import flow  # cycle\n", KNOWN)
    shell = imports_of("commands.shell", "from tasks.ui import say\n", KNOWN)
    config = imports_of("config", "from commands.shell import q\n", KNOWN)
    assert [i.where for i in upward(flow + ui + shell + config)] == ["commands.shell:1", "config:1"]
    assert cycles(graph(flow + ui)) == [["tasks.flow", "tasks.ui"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert cycles({"a": {"a"}}) == [["a"]]


def test_connection_calls_are_found_by_type_not_by_spelling():
    sources = {
        "tasks.ssh": "from fabric import Connection\ndef connect(host) -> Connection:\n    return Connection(host)\n",
        "tasks.bad": (
            "from fabric import Connection\n"
            "from dataclasses import dataclass\n"
            "@dataclass\n"
            "class Holder:\n"
            "    link: Connection\n"
            "def a(c: Connection):\n"
            "    c.sudo('reboot')\n"                       # 7: annotated parameter
            "def b(s):\n"
            "    s.cxn.put('local', 'remote')\n"           # 9: the session's connection
            "    s.ctx.run('x')\n"                          # 10: the task's context
            "    h = Holder(None)\n"
            "    h.link.get('remote')\n"                    # 12: a field annotated as a connection
            "def c_(host):\n"
            "    conn = connect(host)\n"
            "    go = lambda: conn.run('x')\n"             # 15: from a factory, inside a lambda
            "def d(c):\n"
            "    if isinstance(c, Connection):\n"
            "        c.run('x')\n"                          # 18: narrowed by isinstance
        ),
        "tasks.good": (
            "def e(s, d, c):\n"
            "    s.run('x')\n"                              # the session: fine
            "    d.get('key')\n"                            # a dict
            "    c.env.get('KEY')\n"                        # a container's env
            "    requests.get('http://x')\n"
        ),
    }
    assert calls_in(sources) == ["tasks.bad:7 c.sudo(...)", "tasks.bad:9 s.cxn.put(...)", "tasks.bad:10 s.ctx.run(...)",
                                 "tasks.bad:12 h.link.get(...)", "tasks.bad:15 conn.run(...)", "tasks.bad:18 c.run(...)"]


# ---- the checks, on the project ------------------------------------------------------------------

def test_the_graph_covers_every_module():
    modules = project_modules()
    assert {"fabfile", "tasks.flow", "tasks.session", "commands.shell", "config"} <= set(modules)
    assert sum(1 for i in import_graph() if layer(i.target) is not None) > 100


def test_no_import_cycle_between_modules():
    assert cycles(graph(import_graph())) == []


def test_no_arrow_from_commands_or_config_to_tasks_nor_from_config_to_commands():
    assert [f"{i.where} imports {i.target}" for i in upward(import_graph())] == []


def test_commands_and_config_import_no_fabric_invoke_or_paramiko():
    bad = [f"{i.where} imports {i.target}" for i in import_graph()
           if layer(i.source) in (LAYERS["commands"], LAYERS["config"]) and i.target.split(".")[0] in IMPURE]
    assert bad == []


def test_every_import_inside_a_function_says_why_in_a_comment():
    bad = [f"{i.where} imports {i.target}" for i in import_graph() if i.in_function and not i.commented]
    assert bad == []


def test_only_the_session_calls_run_sudo_put_or_get_on_a_connection():
    modules = project_modules()
    trees = {name: parse(path) for name, path in modules.items()}
    factories, attributes = connection_factories(list(trees.values())), connection_attributes(list(trees.values()))
    calls = {name: connection_calls(name, tree, factories, attributes) for name, tree in trees.items()}
    assert [c.where for name, found in calls.items() if name != SESSION for c in found] == []
    assert calls[SESSION], "the check no longer sees the session's own calls: it would see no one else's either"
