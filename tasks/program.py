"""The project's `fab`: Fabric's own program and executor, with the checks stock Fabric skips.

Stock Fabric does three things here that break the README's promises:
- ``fab -H HOST -- CMD`` runs CMD over a connection that accepts ANY host key (fabric/executor.py
  adds the remainder as an anonymous task on a plain Connection, whose policy is AutoAddPolicy).
  In that form (no task named) fab does not even load the fabfile or the project's fabric.yaml
  (fabric/main.py ``Fab._remainder_only``), so only the entry point itself can refuse it.
- ``-H user@host:notaport`` and an ssh_config value such as ``Port abc`` raise a bare ValueError
  while fabric builds the task's Connection, before any task code runs: a traceback, exit 1.
- ``-H '[::1]:1'`` is taken as a host named ``[::1]:1`` on port 22.

Two ways in, because of that:
- ``fabric.yaml`` (project config, read whenever the fabfile is) names :class:`CheckedExecutor`
  as ``tasks.executor_class``. This covers every run that names a task, with any `fab`.
- ``make setup`` installs :func:`main` as the venv's ``fab`` (:func:`install_entry_point`). This
  also covers ``fab -H HOST -- CMD`` with no task, and an unreadable ssh_config given with -S or in
  ~/.ssh/config, which fab parses before any executor exists.
"""
from __future__ import annotations

import logging
import os
import sys
import tempfile

from fabric import Config, Executor, __version__
from fabric.main import Fab
from fabric.tasks import ConnectionCall
from invoke import Argument, Exit
from paramiko import ConfigParseError

from commands import ssh as ssh_cmd
from commands.shell import q
from tasks import messages, ui
from tasks.errors import EXIT_CODE_HELP, ExitCode

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def usage_error(title: str, problems: list[str], next_step: str) -> Exit:
    """Print the block for a usage error found before any task ran; the caller raises the Exit."""
    ui.block(f"✗ {title}", [
        ("Problems", problems),
        ("Host state", "nothing was run: no connection was made"),
        ("Next", next_step),
        ("Exit code", f"{int(ExitCode.CONFIG)}: {EXIT_CODE_HELP[ExitCode.CONFIG]}"),
    ])
    return Exit(code=int(ExitCode.CONFIG))


def ssh_command(host: str, command: str) -> str:
    """The OpenSSH command line for one host string (ssh takes the port as -p, not host:port)."""
    try:
        spec = ssh_cmd.parse_host(host)
    except ssh_cmd.BadHostString:
        return f"ssh HOST {q(command)}"
    port = f"-p {spec.port} " if spec.port else ""
    return f"ssh {port}{q(ssh_cmd.format_host(spec.host, spec.user))} {q(command)}"


def refuse_remainder(command: str, hosts: str | None) -> Exit:
    target = hosts.split(",")[0] if hosts else "HOST"
    return usage_error(
        "REFUSED: fab -H HOST -- COMMAND", [
            f"`-- {command}` would run on {target} over Fabric's plain connection, which accepts any "
            "host key without checking known_hosts (fabric#1804): this tool does not run it."],
        f"for a one-off command use OpenSSH, which checks known_hosts: {ssh_command(target, command)}; "
        f"for the service's state use the tool's tasks: {messages.status(target)}, {messages.diagnose(target)}")


def duplicate_hosts(hosts: list) -> list[str]:
    """A host given twice runs the task twice (a second bare rollback goes one release further
    back). The same sshd: user, case and a final dot do not count; another port does."""
    seen: dict[tuple, str] = {}
    problems = []
    for value in hosts:
        try:
            spec = ssh_cmd.parse_host(value) if isinstance(value, str) else ssh_cmd.HostSpec(**value)
        except (ssh_cmd.BadHostString, TypeError):
            continue
        key = (spec.host.lower().rstrip("."), spec.port)
        if key in seen:
            problems.append(f"{key[0]} is given twice ({seen[key]}, {value}): the task would run twice on it")
        seen.setdefault(key, str(value))
    return problems


class CheckedConnectionCall(ConnectionCall):
    """Fabric's per-host call, with the ssh_config checked before fabric int()s its values."""

    def make_context(self, config):
        host = self.init_kwargs.get("host", "")
        problems = ssh_cmd.ssh_config_problems(config.base_ssh_config.lookup(host))
        try:
            if not problems:
                cxn = super().make_context(config)
                # The host as -H gave it: Fabric keeps no record of which user and port were typed,
                # and one equal to a default (root@, :22) looked as if it had not been given.
                given = self.init_kwargs
                cxn._set(cli_host=ssh_cmd.format_host(given["host"], given.get("user"), given.get("port")))
                return cxn
        except (ValueError, KeyError) as exc:
            problems = [f"{exc.__class__.__name__}: {exc}"]
        raise usage_error("CONFIGURATION ERROR in the ssh config", [f"for host {host}: {p}" for p in problems],
                          "fix these options in your ssh config (~/.ssh/config, or the file given with -S), then re-run")


REMAINDER = ""             # `fab exec SERVICE -- COMMAND`: the COMMAND (set by CheckedExecutor.execute)
REMAINDER_TASKS = ("exec",)   # the only tasks that take `-- COMMAND`, run through their own hardened session
PROJECT_FAB = False        # set by main(): this process is the project's fab, not Fabric's own
STOCK_FAB_WARNING = ("this `fab` is Fabric's own, not the project's (tasks/program.py): `fab -H HOST -- COMMAND` "
                     "would run with no host-key check. Restore it: make setup "
                     "(or: .venv/bin/python -m tasks.program install .venv/bin/fab)")


class CheckedExecutor(Executor):
    """Fabric's executor: refuses ``-- COMMAND``, parses -H hosts itself (IPv6 in brackets, ports
    checked), and builds each host's Connection with its ssh_config checked. Run by Fabric's own
    fab (through fabric.yaml), it says so: a reinstall of fabric puts that fab back in the venv."""

    def execute(self, *tasks):
        if not PROJECT_FAB:
            print(ui.safe(f"! {STOCK_FAB_WARNING}"), file=sys.stderr, flush=True)
        if self.core is not None and self.core.remainder:
            if [getattr(t, "name", t) for t in tasks] != list(REMAINDER_TASKS):
                raise refuse_remainder(self.core.remainder, self.core[0].args.hosts.value)
            global REMAINDER
            # Taken from fabric, which would otherwise also run it on a plain Connection.
            REMAINDER, self.core.remainder = self.core.remainder, ""
        hosts = self.core[0].args.hosts.value if self.core is not None else None
        if hosts is not None and not hosts.strip():
            # `fab -H "$TARGET" deploy` with TARGET unset: stock fab reads it as no -H at all, and
            # the task then ran on every host of the stage's HOSTS.
            raise usage_error("USAGE ERROR in -H", ["-H was given an empty host list (an unset variable?)"],
                              "give -H a host ([user@]host[:port]), or leave -H out to use the stage's HOSTS")
        return super().execute(*tasks)

    def normalize_hosts(self, hosts):
        dicts, problems = [], []
        for value in hosts or []:
            if isinstance(value, dict):
                dicts.append(value)
                continue
            try:
                spec = ssh_cmd.parse_host(value)
            except ssh_cmd.BadHostString as exc:
                problems.append(str(exc))
                continue
            dicts.append({k: v for k, v in (("host", spec.host), ("user", spec.user), ("port", spec.port)) if v is not None})
        if problems:
            raise usage_error("USAGE ERROR in -H", problems,
                              "give each host as [user@]host[:port], an IPv6 address as [address]:port; "
                              "several hosts are separated by commas")
        twice = duplicate_hosts(hosts or [])
        if twice:
            raise usage_error("USAGE ERROR in -H", twice, "give each host once")
        return dicts

    def parameterize(self, call, connection_init_kwargs):
        return call.clone(into=CheckedConnectionCall, with_=dict(init_kwargs=connection_init_kwargs))


class Program(Fab):
    """`fab` itself, using :class:`CheckedExecutor` even when no fabfile is loaded, with -q/-v."""

    def core_args(self):
        return [*super().core_args(),
                Argument(names=("quiet", "q"), kind=bool, default=False,
                         help="print only the outcome line (and --json output) on stdout; errors still on stderr"),
                Argument(names=("verbose", "v"), kind=bool, default=False,
                         help="also print every remote command as it runs (secrets redacted)")]

    def parse_core(self, *args, **kwargs):
        # Fab's own options given before the task (`fab -t abc plan`): invoke int()s their values and
        # lets the ValueError escape as a traceback; task options are checked by tasks/cli.py.
        try:
            return super().parse_core(*args, **kwargs)
        except ValueError as exc:
            raise usage_error("USAGE ERROR in fab's own options", [str(exc)],
                              "fab --help (fab's own options and the values they take)") from None

    def update_config(self):
        ui.set_level(-1 if self.args.quiet.value else 1 if self.args.verbose.value else 0)
        try:
            super().update_config()
        except (ConfigParseError, OSError) as exc:
            raise usage_error("CONFIGURATION ERROR in the ssh config", [f"{exc.__class__.__name__}: {exc}"],
                              "fix that line in ~/.ssh/config or in the file given with -S "
                              "(every option needs a value: `HostName 10.0.0.5`), then re-run") from None


def make_program() -> Program:
    return Program(name="Fabric", version=__version__, executor_class=CheckedExecutor, config_class=Config)


def main() -> None:
    global PROJECT_FAB
    PROJECT_FAB = True
    try:
        make_program().run()
        code = 0
    except SystemExit as exc:
        code = exc.code
    leave(code)


def leave(code) -> None:
    """Exit once the task is done, without Python's teardown of every module and object (~0.07 s
    of each `fab`): by then the record's lines are on the host, the lock is released, the threads
    left are daemons with nothing to finish. What teardown would still do is done here: the run
    log's handlers and the terminal's streams are flushed. ``code`` as SystemExit takes it."""
    if code is None:
        code = 0
    elif not isinstance(code, int):
        try:
            print(code, file=sys.stderr)
        except (OSError, ValueError):       # stderr closed: the exit code still says it failed
            pass
        code = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):       # a closed pipe (`fab ... | head`): nothing more to say
            pass
    os._exit(code & 0xFF)               # as the OS takes SystemExit's number: -1 -> 255


ENTRY_POINT = """#!{python}
# The project's `fab` (written by `make setup` from tasks/program.py; `make setup` writes it again after
# a reinstall of fabric). Stock fab runs `fab -H HOST -- CMD` with no host-key check.
import os
import sys


def project_root():
    # The checkout fab would load: the nearest fabfile.py above the working directory (as fab
    # searches), so a second checkout sharing this venv runs its own code; else the one installed.
    d = os.getcwd()
    while True:
        if os.path.isfile(os.path.join(d, "fabfile.py")) and os.path.isfile(os.path.join(d, "tasks", "program.py")):
            return d
        if os.path.dirname(d) == d:
            return {root!r}
        d = os.path.dirname(d)


sys.path.insert(0, project_root())
from tasks.program import main
sys.exit(main())
"""


def install_entry_point(path: str, python: str | None = None, root: str = PROJECT_ROOT) -> None:
    """Write the venv's `fab` script (atomically: a half-written `fab` would break every command)."""
    text = ENTRY_POINT.format(python=python or sys.executable, root=root)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".fab.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)


if __name__ == "__main__":
    if sys.argv[1:2] == ["install"] and len(sys.argv) == 3:
        install_entry_point(sys.argv[2])
    else:
        sys.exit("usage: python -m tasks.program install PATH/TO/venv/bin/fab")
