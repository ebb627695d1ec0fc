"""The command line of the tasks: short flags, option values, and the exit code of a usage error.

Short flags are chosen here, not by invoke. Invoke gives each option the first free letter of its
name, in signature order, so one letter meant different options on different tasks: ``-s`` was
``--show`` on deploy, prepare and env-diff and ``--stage`` everywhere else, and ``fab deploy -s
production`` deployed the default stage. Here each letter means one option on every task that has
it, ``-s`` is always ``--stage``, and an option with no entry in :data:`SHORT_FLAGS` has only its
long form. Letters of fab's own options are not reused (after the task name a task's flag would
silently win over them), except ``-t`` for rollback's ``--to`` and ``-f`` for logs' ``--follow``, which
operators already type (fab's own ``-t``/``-f`` still work before the task name).
"""
from __future__ import annotations

import functools
import math

from fabric.main import Fab
from fabric.tasks import Task
from invoke.exceptions import Exit, ParseError
from invoke.parser import Argument

from config.types import MAX_SECONDS
from tasks import terminal, ui
from tasks.errors import EXIT_CODE_HELP, ExitCode

MAX_OPTION_CHARS = 1000          # a --message is a note, not a file

SHORT_FLAGS = {
    "stage": "s",
    "accept_new_host_key": "a",
    "json": "j",
    "message": "m",
    "to": "t",
    "limit": "n",
    "follow": "f",
}


class CheckedArgument(Argument):
    """A task option whose value is checked while the command line is parsed: a bad number is a
    usage error (exit 2), never a traceback, and never a value that breaks the task later
    (``--lock-wait nan`` would wait forever, ``--limit 0`` would show everything)."""

    def __repr__(self) -> str:           # invoke's "Flag {!r} needed value" reads "Flag --message ..."
        return "--" + self.names[0]

    def set_value(self, value, cast: bool = True) -> None:
        if cast and self.kind in (int, float) and isinstance(value, str):
            value = self._number(value)
            cast = False
        elif isinstance(value, str) and len(value) > MAX_OPTION_CHARS:
            # A value goes into one remote command (the lock holder, the record line); a host
            # refuses an argument over 128 kB, which ended a run with "connection reset".
            raise ParseError(f"--{self.names[0]} is {len(value)} characters long; at most {MAX_OPTION_CHARS}")
        super().set_value(value, cast=cast)

    def _number(self, text: str):
        flag = "--" + self.names[0]
        if self.kind is int:
            try:
                n = int(text)
            except ValueError:
                raise ParseError(f"{flag} must be a whole number, got {text!r}") from None
            if n < 1:
                raise ParseError(f"{flag} must be 1 or more, got {text!r}")
            return n
        try:
            x = float(text)
        except ValueError:
            raise ParseError(f"{flag} must be a number of seconds, got {text!r}") from None
        if not math.isfinite(x) or x < 0:
            raise ParseError(f"{flag} must be zero or a positive number of seconds, got {text!r}")
        if x > MAX_SECONDS:                  # the config's own limit: 1e300 was finite, and waited forever
            raise ParseError(f"{flag} must be at most {MAX_SECONDS:g} seconds, got {text!r}")
        return x


class OperatorTask(Task):
    """A fabric Task with this tool's short flags and checked option values."""

    def __init__(self, *args, **kwargs):
        kwargs["auto_shortflags"] = False
        super().__init__(*args, **kwargs)

    def arg_opts(self, name, default, taken_names):
        opts = super().arg_opts(name, default, taken_names)
        if name in SHORT_FLAGS:
            opts["names"].append(SHORT_FLAGS[name])
        return opts

    def get_arguments(self, ignore_unknown_help=None):
        return [CheckedArgument(names=a.names, kind=a.kind, default=a.default, help=a.help,
                                positional=a.positional, optional=a.optional,
                                incrementable=a.incrementable, attr_name=a.attr_name)
                for a in super().get_arguments(ignore_unknown_help)]


def render_usage_error(exc: Exception) -> None:
    context = getattr(exc, "context", None)
    task = getattr(context, "name", None)
    ui.block("✗ USAGE ERROR", [
        ("Problem", str(exc) if isinstance(exc, ParseError) else f"a value on the command line is not valid: {exc}"),
        ("Host state", "nothing was run: the command line is checked before anything else"),
        ("Next", (f"fab --help {task} (its options), " if task else "") + "fab --list (the tasks), fab --help (fab's own options)"),
        ("Exit code", f"{int(ExitCode.CONFIG)}: {EXIT_CODE_HELP[ExitCode.CONFIG]}"),
    ])


def _usage_errors_exit_2(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            with terminal.guarded():                 # `fab --list | head`, `fab --help deploy | head`
                return method(self, *args, **kwargs)
        except (ParseError, ValueError) as exc:      # ValueError: a fab option's value after the task name
            render_usage_error(exc)
            raise Exit(code=int(ExitCode.CONFIG)) from None
    wrapper.exits_2 = True
    return wrapper


def exit_2_on_usage_errors(program_class=Fab) -> None:
    """invoke's Program.run exits 1 on a ParseError (hard-coded), the code this tool keeps for
    bugs; usage errors are documented as 2. (The same two methods print ``--list`` and ``--help``,
    so they also get the closed-pipe guard of tasks/terminal.py.) ``fab`` imports the fabfile after parsing its own
    options and before parsing the tasks' part of the command line (``parse_tasks``) and the
    ``--help TASK`` lookup (``parse_cleanup``), so the fabfile wraps those two methods of fab's
    Program class. An error in fab's own options (``fab --bogus``) comes before the fabfile is
    loaded and still exits 1."""
    for name in ("parse_tasks", "parse_cleanup"):
        method = getattr(program_class, name)
        if not getattr(method, "exits_2", False):
            setattr(program_class, name, _usage_errors_exit_2(method))


def parse_show(show: str) -> frozenset[str]:
    """``--show LOG_LEVEL,WORKERS``: the non-secret env keys whose values the env diff may print."""
    return frozenset(k.strip() for k in (show or "").split(",") if k.strip())
