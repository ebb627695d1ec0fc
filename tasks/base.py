"""The task wrapper: stage and host resolution, connection, error blocks and exit codes.

Every operator task is declared with :func:`operator_task`. It adds two options to the task
(``--stage`` and ``--accept-new-host-key``), validates the stage config before any SSH, refuses to
run remote steps on the local machine, opens one hardened connection per host, and turns every
expected failure into the error block and a documented exit code (no traceback).

While a task runs: Ctrl-C, SIGTERM and SIGHUP raise KeyboardInterrupt (tasks/interrupts.py), output
that cannot be written is dropped instead of failing the run (tasks/terminal.py), and library
logging goes to the run's log file, not the terminal (tasks/runlog.py).
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import time
from dataclasses import dataclass
from typing import Callable

from fabric import Connection, task
from invoke import Exit

from commands.secrets import Redactor
from config import ConfigError, Settings, choose_stage, lists_host, load_settings
from tasks import interrupts, messages, runlog, terminal, ui
from tasks.cli import OperatorTask
from tasks.errors import EXIT_CODE_HELP, CommandFailed, DeployError, ExitCode
from tasks.hostsecrets import learn_secrets
from tasks.session import Session
from tasks.ssh import connect
from tasks.sshconfig import host_strings, stages_of_host

COMMON_HELP = {
    "stage": "stage to use (config/<stage>.env); default: the stage whose HOSTS list the -H host (a -H host in no stage is refused), else DEFAULT_STAGE",
    "accept_new_host_key": "record an unknown host key on first connection (a changed key is still refused)",
}


@dataclass
class Offline:
    """What a task that does not connect receives."""
    c: object
    settings: Settings
    dry: bool = False


def render_error(err: DeployError, settings: Settings | None, host: str | None, session: Session | None = None) -> None:
    where = f" on {host}" if host else ""
    stage = f" (stage {settings.stage})" if settings else ""
    title = f"✗ FAILED{(' at ' + err.step) if err.step else ''}{where}{stage}"
    output = ui.tail(err.output if isinstance(err.output, str) else "\n".join(err.output or []))
    fields = [("What", err.what), ("Command", err.command), ("Output (last lines)", output),
              ("Details", err.details)]
    state = err.state or (session.describe_state() if session else None)
    fields.append(("Host state", state))
    fields.append(("Next", err.next_step))
    if settings:
        fields.append(("Escalate", messages.escalation(err.kind, settings)))
    fields.append(("Exit code", f"{int(err.code)}: {EXIT_CODE_HELP[err.code]}"))
    ui.block(title, [*fields, *log_field()])


def log_field() -> list[tuple[str, str]]:
    """The error block's last line: the run's full log (everything printed, and the SSH library's
    own messages), on the operator's machine."""
    log = runlog.CURRENT
    if log is None or not log.usable:
        return []
    return [("Log", f"{log.path}" + (" (with the SSH library's own messages)" if log.has_warnings else ""))]


PROBLEM_CHARS = 300        # a problem echoes the raw value: a 100 kB value must not flood the terminal


def render_config_error(exc: ConfigError) -> None:
    stage = f" for stage {exc.stage}" if exc.stage else ""
    ui.block(f"✗ CONFIGURATION ERROR{stage}", [
        ("Problems", [ui.excerpt(p, PROBLEM_CHARS) for p in exc.problems]),     # redacted, then cut
        ("Host state", "nothing was run: configuration is checked before any SSH connection"),
        ("Next", exc.next_step or "fix the key(s) above in config/<stage>.env or the named environment variable, then re-run"),
        ("Exit code", f"{int(ExitCode.CONFIG)}: {EXIT_CODE_HELP[ExitCode.CONFIG]}"),
    ])


def render_usage_error(problems: list[str]) -> None:
    ui.block("✗ USAGE ERROR", [
        ("Problems", problems),
        ("Host state", "nothing was run: options are checked before any SSH connection"),
        ("Next", "correct the option and re-run (fab --help <task> describes each option)"),
        ("Exit code", f"{int(ExitCode.CONFIG)}: {EXIT_CODE_HELP[ExitCode.CONFIG]}"),
    ])


def operator_task(*, help: dict | None = None, connects: bool = True, check: Callable[..., list[str]] | None = None,
                  fleet: Callable | None = None, **task_kwargs) -> Callable:
    """Declare a task. The body receives a :class:`Session` (or :class:`Offline` when
    ``connects=False``) instead of the Fabric context. ``check(**options)`` returns the problems
    with the task's own options; any problem is a usage error (exit 2) before any connection."""

    def deco(fn: Callable) -> Callable:
        sig = inspect.signature(fn)
        params = list(sig.parameters.values())
        extra = [
            inspect.Parameter("stage", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None),
        ]
        if connects:
            extra.append(inspect.Parameter("accept_new_host_key", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=False))

        name = task_kwargs.get("name") or fn.__name__.replace("_", "-")
        # A fleet form that needs the task's own body (tasks/fleetread.py Across) is bound to it here.
        run_fleet = fleet.bind(fn) if hasattr(fleet, "bind") else fleet

        @functools.wraps(fn)
        def wrapper(c, *args, **kwargs):
            stage_arg = kwargs.pop("stage", None)
            accept_new = bool(kwargs.pop("accept_new_host_key", False))
            ui.set_json_mode(bool(kwargs.get("json")))
            ui.set_redactor(Redactor())
            ui.install_excepthook()     # a traceback (exit 1) is redacted too
            if check:
                options = sig.bind_partial(c, *args, **kwargs)
                options.apply_defaults()
                problems = check(**dict(list(options.arguments.items())[1:]))
                if problems:
                    render_usage_error(problems)
                    raise Exit(code=int(ExitCode.CONFIG))
            with interrupts.handled(), terminal.guarded(), runlog.opened(name):
                try:
                    return run_task(fn, c, stage_arg, accept_new, connects, args, kwargs, run_fleet)
                except KeyboardInterrupt as exc:        # before any host (e.g. while reading the config)
                    raise _interrupted(exc, None, None) from None

        wrapper.__signature__ = sig.replace(parameters=[params[0], *params[1:], *extra])
        merged_help = {**COMMON_HELP, **(help or {})}
        merged_help = {k: v for k, v in merged_help.items() if k in wrapper.__signature__.parameters}
        return task(wrapper, help=merged_help, klass=OperatorTask, **task_kwargs)

    return deco


def _settings_for(c, stage_arg: str | None) -> tuple[Settings, str]:
    if not isinstance(c, Connection):
        stage, why = choose_stage(stage_arg, None)
        return load_settings(stage), why
    host = host_strings(c, None)[0]
    try:
        stage, why = choose_stage(stage_arg, c.original_host)
    except ConfigError as exc:
        raise _with_where_it_connects(exc, c, host) from None
    settings = load_settings(stage)
    _refuse_another_stages_host(c, host, settings, explicit=stage_arg is not None)
    return settings, why


def _refuse_another_stages_host(c, host: str, settings: Settings, explicit: bool) -> None:
    """A -H host that another stage lists, by name or by where it connects (an alias of the
    production server, the address behind the staging alias), never runs with this stage's
    settings: with --stage this stage must list it too; without, no other stage may."""
    target, owners = stages_of_host(c, host, settings)
    others = {stage: entry for stage, entry in owners.items() if stage != settings.stage}
    if not others or (explicit and settings.stage in owners):
        return
    where = f" (it connects to {target[0]}:{target[1]})" if target else ""
    other, entry = next(iter(others.items()))
    problems = [f"-H {host} is a host of stage {s}: config/{s}.env has {e} in HOSTS{where}" for s, e in others.items()]
    if explicit:
        problems.append(f"--stage {settings.stage} would run {settings.stage}'s settings (app dir, branch, URLs, ssh config) on it")
        next_step = (f"fab -H {entry} <task> --stage {other}; if that machine really serves {settings.stage} too, "
                     f"add it to HOSTS in config/{settings.stage}.env")
    else:
        problems.append(f"it is also listed in config/{settings.stage}.env, so the stage is ambiguous")
        next_step = f"pass --stage {settings.stage} or --stage {other}"
    raise ConfigError(problems, stage=settings.stage, next_step=next_step)


def _with_where_it_connects(exc: ConfigError, c, host: str) -> ConfigError:
    """`-H alias` listed in no stage: say which stage lists the host the alias stands for."""
    target, owners = stages_of_host(c, host)
    if not target or not owners or any(lists_host([entry], host) for entry in owners.values()):
        return exc                      # listed by name (in several stages): choose_stage said it all
    problems = [*exc.problems, *[f"{host} is {target[0]}:{target[1]}, which HOSTS of config/{s}.env lists (as {e})"
                                 for s, e in owners.items()]]
    stage, entry = next(iter(owners.items()))
    return ConfigError(problems, exc.stage, exc.secrets, next_step=f"fab -H {entry} <task>, or pass --stage {stage}")


def _settings_for_host(settings: Settings, host: str, from_cli: bool) -> tuple[Settings, str]:
    """The settings for one host, and where the host came from (for the first line). A stage's
    SSH_CONFIG describes that stage's hosts: for a -H host it does not list (allowed with
    --stage), the operator's own ssh config (alias, user, ProxyJump) applies instead."""
    if not from_cli:
        return settings, f"from HOSTS of stage {settings.stage}; -H HOST picks another"
    if lists_host(settings.hosts, host) or not settings.ssh_config:
        return settings, "-H"
    return (dataclasses.replace(settings, ssh_config=None),
            f"-H; not in HOSTS of stage {settings.stage}, so your own ssh config applies, not its SSH_CONFIG")


def begin(session: Session, t0: float) -> None:
    """What every connected task does before its body (and ``fab plan`` before the deploy it
    previews): hide this session's secrets, learn those of the env files, time the connect."""
    ui.set_redactor(session.redactor)
    learn_secrets(session)
    session.connect_seconds = time.monotonic() - t0


def run_task(fn, c, stage_arg, accept_new, connects, args, kwargs, fleet=None):
    try:
        settings, why = _settings_for(c, stage_arg)
    except ConfigError as exc:
        ui.set_redactor(Redactor(secrets=exc.secrets))      # problems echo raw values
        render_config_error(exc)
        raise Exit(code=int(ExitCode.CONFIG))
    ui.set_redactor(Redactor(settings.secret_key_pattern, settings.secrets))
    if not connects:
        return _run_offline(fn, c, settings, args, kwargs)
    hosts = host_strings(c, settings)
    if fleet and len(hosts) > 1 and not isinstance(c, Connection):
        # The stage's HOSTS as one fleet (tasks/fleet.py); -H hosts still run one after another.
        return fleet(c, settings, why, hosts, accept_new, *args, **kwargs)
    for host in hosts:
        _run_on_host(fn, c, settings, why, host, accept_new, args, kwargs)


def _run_offline(fn, c, settings: Settings, args, kwargs):
    try:
        return fn(Offline(c, settings, bool(c.config.run.dry)), *args, **kwargs)
    except DeployError as err:
        render_error(err, settings, None)
        raise Exit(code=int(err.code))


def _run_on_host(fn, c, settings: Settings, why: str, host: str, accept_new: bool, args, kwargs) -> None:
    settings, host_why = _settings_for_host(settings, host, isinstance(c, Connection))
    dry = bool(c.config.run.dry)
    ui.say(f"stage: {settings.stage} ({why})   host: {host} ({host_why})"
           + ("   [dry run: nothing will be changed]" if dry else ""))
    session = None
    try:
        t0 = time.monotonic()
        cxn = connect(c, host, settings, accept_new)
        session = Session(settings, host, cxn, dry=dry, echo=bool(c.config.run.echo) or ui.OUT.level > 0,
                          redactor=Redactor(settings.secret_key_pattern), ctx=c)
        begin(session, t0)
        fn(session, *args, **kwargs)
    except DeployError as err:
        render_error(err, settings, host, session)
        raise Exit(code=int(err.code))
    except CommandFailed as failed:
        render_error(DeployError.from_command(failed, "a remote command failed"), settings, host, session)
        raise Exit(code=int(ExitCode.STEP_FAILED))
    except KeyboardInterrupt as exc:
        raise _interrupted(exc, host, session) from None
    finally:
        if session:
            session.close()


def _interrupted(exc: KeyboardInterrupt, host: str | None, session: Session | None) -> Exit:
    """The INTERRUPTED block for Ctrl-C, SIGTERM or SIGHUP; the exit code says which (130/143/129)."""
    code = interrupts.exit_code(exc)
    with interrupts.ignored():          # a second signal must not cut the block short
        ui.block(f"✗ INTERRUPTED ({interrupts.describe(exc)})" + (f" on {host}" if host else ""), [
            ("Host state", (session.describe_state() if session else "not connected yet") if host else "nothing was run on any host"),
            ("Next", messages.status(host) if host else "re-run the command"),
            ("Exit code", f"{int(code)}: {EXIT_CODE_HELP[code]}"), *log_field()])
    return Exit(code=int(code))
