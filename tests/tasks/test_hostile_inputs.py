"""Every task, fed a hostile value for every config key and for every command-line option, ends
cleanly: success or an error block, an exit code from the documented table, never a traceback
(issue 7, item 16).

No staging host is needed: config values are validated before SSH, and the hosts are a closed
port on 127.0.0.1 (nothing listens on port 1), so a value that passes validation ends at the
connection with exit 5. The offline tasks (plan, contacts) run to the end with the value."""
from __future__ import annotations

import contextlib
import functools
import io
import os

import pytest
from fabric.main import Fab
from invoke import Exit, MockContext

import config
import fabfile
from tasks import program
from tasks.conftest import hermetic_config
from tasks.errors import ExitCode
from tasks.program import make_program

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TASKS = sorted(set(fabfile.ns.task_names) - {"version"})     # version reads no configuration
# A task's required positional argument, and exec's `-- COMMAND`, as the command line would give them.
TASK_ARGS = {"exec": {"service": "backend"}, "restart": {"service": "backend"}}
KEYS = list(config.keys.PER_STAGE)
CANARY = "/tmp/ai-doc-qa-hostile-canary"
HOSTILE_CONFIG = [
    "", "   ", "x\ny", f"$(touch {CANARY})", f"a;touch {CANARY}", "'\"`\\", "-1", "nan", "1e999", "0",
    "9" * 30, "\x1b]0;pwned\x07\x1b[31mred", "../../../etc", "[::1]:1", "user@host:notaport",
    "http://x/ y", "a|b", "ü€", "*", "--help",
]
HOSTILE_OPTION = ["", "x\ny", f"$(touch {CANARY})", "-1", "nan", "inf", "abc", "0", "9" * 30,
                  "\x1b[31mred", "'", "--bogus", "-h"]
DOCUMENTED = {int(c) for c in ExitCode} - {int(ExitCode.BUG)}
# The hosts every run would connect to: nothing listens there, so a run that gets past the
# configuration ends at the connection (exit 5) without any SSH.
BASE_ENV = {"DEPLOY_PRODUCTION_HOSTS": "deploy@127.0.0.1:1", "DEPLOY_STAGING_HOSTS": "deploy@127.0.0.1:1",
            "DEPLOY_STAGING_SSH_CONFIG": "", "DEPLOY_CONNECT_TIMEOUT": "2"}


@pytest.fixture(autouse=True)
def closed_port_hosts(tmp_path, monkeypatch):
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    for k, v in {**BASE_ENV, "DEPLOY_PRODUCTION_KNOWN_HOSTS": str(kh), "DEPLOY_STAGING_KNOWN_HOSTS": str(kh)}.items():
        monkeypatch.setenv(k, v)
    # The stage files do not change during the test: parse them once (halves its run time).
    monkeypatch.setattr(config.load, "read_env_file", functools.lru_cache(maxsize=None)(config.load.read_env_file))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(CANARY)
    yield
    assert not os.path.exists(CANARY), "an injected command ran on this machine"


def verdict(code, out: str, err: str) -> str | None:
    """None if the run ended cleanly, else what was wrong."""
    text = out + err
    if "Traceback" in text:
        return "traceback"
    if code not in DOCUMENTED:
        return f"exit code {code} is not in the documented table"
    if code != 0 and "✗ " not in err:
        return f"exit {code} without an error block"
    return None


def call_task(name: str, env: dict) -> tuple[int, str, str]:
    """The task as fab calls it without -H, in-process."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                program.REMAINDER = "true" if name == "exec" else ""
                fabfile.ns[name](MockContext(config=hermetic_config()), stage="production", **TASK_ARGS.get(name, {}))
            except Exit as exc:
                code = exc.code
            except BaseException as exc:          # a bug: fab would print a traceback
                return -1, out.getvalue(), f"Traceback: {exc.__class__.__name__}: {exc}"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return code, out.getvalue(), err.getvalue()


def run_fab(argv: list[str]) -> tuple[int, str, str]:
    """The real fab command line, in-process (the collection is the already imported fabfile)."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            make_program().run(["fab", *argv])
        except SystemExit as exc:
            code = exc.code
        except BaseException as exc:
            return -1, out.getvalue(), f"Traceback: {exc.__class__.__name__}: {exc}"
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def loaded_collection(monkeypatch):
    def load_collection(self):
        self.collection = fabfile.ns
    monkeypatch.setattr(Fab, "load_collection", load_collection)


def values_for(task_index: int, key_index: int, per_pair: int = 2) -> list[str]:
    """``per_pair`` hostile values per (task, key), rotating: with two, across the connecting tasks
    every value meets every key (the offsets i*2 cover the even residues, +7 the odd ones); with
    all of them, every value meets every key; in between, distinct values (7 is prime to 20)."""
    n = len(HOSTILE_CONFIG)
    if per_pair >= n:
        return list(HOSTILE_CONFIG)
    return [HOSTILE_CONFIG[(task_index * per_pair + key_index + k * 7) % n] for k in range(per_pair)]


# Values per key: all of them for the offline tasks, except plan, whose every accepted value
# renders three whole flows (0.3 s; all 20 made it the suite's slowest unit test, 52 s): 8 there,
# rotating so that each value still meets about 25 keys. Two for the connecting tasks, which stop
# at the connection (exit 5) once a value is accepted.
PER_KEY = {"plan": 8, "contacts": len(HOSTILE_CONFIG), "config": len(HOSTILE_CONFIG)}


@pytest.mark.parametrize("task", TASKS)
def test_every_config_key_with_a_hostile_value_ends_cleanly(task):
    offline = task in ("plan", "contacts", "config")
    failures, codes = [], set()
    for j, key in enumerate(KEYS):
        for value in values_for(TASKS.index(task), j, PER_KEY.get(task, 2)):
            name = f"DEPLOY_PRODUCTION_{key}"          # the most specific source wins
            code, out, err = call_task(task, {name: value})
            codes.add(code)
            problem = verdict(code, out, err)
            if problem:
                failures.append(f"{name}={value!r}: {problem}\n{err[-600:]}")
    assert not failures, f"{len(failures)} unclean runs of {task}:\n" + "\n".join(failures[:5])
    # the values were both refused (2) and let through to the task: to the connection (5), or to the end
    assert codes == ({0, 2} if offline else {2, 5}), codes


def task_options(task: str):
    ctx = {c.name: c for c in fabfile.ns.to_contexts()}[task]
    return [(arg.names[0], arg.takes_value) for arg in ctx.args.values()]


@pytest.mark.parametrize("task", TASKS)
def test_every_option_with_a_hostile_value_ends_cleanly(task, loaded_collection):
    failures = []
    runs = [[task, "--no-such-option"], [task, "--stage"]]
    for option, takes_value in task_options(task):
        flag = "--" + option.replace("_", "-")
        if takes_value:
            runs += [[task, flag, value] for value in HOSTILE_OPTION] + [[task, flag]]
        else:
            runs += [[task, flag], [task, f"{flag}=x"], [task, flag, "--stage", "../x"]]
    for argv in runs:
        if "--stage" not in argv:
            argv = [*argv, "--stage", "production"]
        code, out, err = run_fab(argv)
        problem = verdict(code, out, err)
        if problem or (code == 1):
            failures.append(f"fab {' '.join(map(repr, argv))}: {problem}\n{err[-600:]}")
    assert not failures, f"{len(failures)} unclean runs:\n" + "\n".join(failures[:5])


# Hostile contents of the files that SSH_CONFIG and KNOWN_HOSTS name, and a hostile -H: parsed by
# the tool's own known_hosts/ssh_config/host parsers (tasks/hostkeys.py, tasks/sshconfig.py, tasks/program.py).
SSH_FILE_CASES = {
    "ssh_config Port abc": ("SSH_CONFIG", "Host *\n  Port abc\n"),
    "ssh_config bare HostName": ("SSH_CONFIG", "Host x\n  HostName\n"),
    "known_hosts @cert-authority": ("KNOWN_HOSTS", "@cert-authority * ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB\n"),
    "known_hosts not UTF-8": ("KNOWN_HOSTS", b"\xff\xfe not text\n"),
}


@pytest.mark.parametrize("case", sorted(SSH_FILE_CASES))
def test_hostile_ssh_files_end_cleanly(case, tmp_path):
    key, content = SSH_FILE_CASES[case]
    path = tmp_path / "file"
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    # no port in HOSTS, so the one from the ssh_config is used
    code, out, err = call_task("status", {f"DEPLOY_PRODUCTION_{key}": str(path), "DEPLOY_PRODUCTION_HOSTS": "deploy@127.0.0.1"})
    assert verdict(code, out, err) is None, err


def test_a_hostile_dash_h_port_ends_cleanly(loaded_collection):
    code, out, err = run_fab(["-H", "deploy@127.0.0.1:notaport", "status", "--stage", "production"])
    assert verdict(code, out, err) is None, err
