import re

import pytest
from fabric import Config
from invoke import Result

from config import load_settings
from tasks.session import Session


def hermetic_config(**run):
    return Config(overrides={"load_ssh_configs": False, "run": {"in_stream": False, **run}})


class Remote:
    """A scripted remote: the first (regex, result) whose regex is found in the command answers it.
    Every command seen is kept in ``commands`` (unwrapped from the timeout wrapper)."""

    def __init__(self, script=()):
        self.script = [(re.compile(p), r) for p, r in script]
        self.commands = []

    def __call__(self, command, **kwargs):
        m = re.match(r"^timeout -k 5 \d+ sh -c (.*) ai-doc-qa-[0-9a-f]+(?:-keep)? </dev/null$", command, re.S)
        inner = command
        if m:
            import shlex
            inner = shlex.split(m.group(1))[0]
            kept = re.match(r"^k=; o=\$\(mktemp\) && e=\$\(mktemp\) \|\| exit 125; trap .* EXIT; trap \"exit 143\" TERM; c\(\) \{ (.*)\n\}; if \(echo .*; fi$", inner, re.S)
            inner = kept.group(1) if kept else inner       # a must-finish command's output kept on the host
        self.commands.append(inner)
        for rx, res in self.script:
            if rx.search(inner):
                r = res(inner) if callable(res) else res
                if isinstance(r, str):
                    r = Result(stdout=r, exited=0)
                return r
        return Result(stdout="", exited=0)


@pytest.fixture
def settings():
    return load_settings("production", {})


@pytest.fixture
def make_session(settings, mocker):
    def make(script=(), **kw):
        remote = Remote(script)
        cxn = mocker.Mock()
        cxn.run.side_effect = remote
        s = Session(kw.pop("settings", settings), "deploy@prod", cxn, **kw)
        s._compose = None
        s.settings_remote = remote
        return s, remote
    return make


@pytest.fixture(autouse=True)
def _no_global_known_hosts(monkeypatch):
    """/etc/ssh/ssh_known_hosts is read like ssh reads it; the operator machine's own copy must not
    change what these tests see."""
    monkeypatch.setattr("tasks.hostkeys.GLOBAL_KNOWN_HOSTS", (), raising=False)
