"""The task wrapper: stage and host resolution, connection, error blocks and exit codes.

Every operator task is declared with :func:`operator_task`. It adds two options to the task
(``--stage`` and ``--accept-new-host-key``), validates the stage config before any SSH, refuses to
run remote steps on the local machine, opens one hardened connection per host, and turns every
expected failure into the error block and a documented exit code (no traceback).
"""
from __future__ import annotations

import functools
import inspect
import time
from dataclasses import dataclass
from typing import Callable

from fabric import Connection, task
from invoke import Exit

from commands.secrets import Redactor
from config import ConfigError, Settings, choose_stage, load_settings
from tasks import ui
from tasks.errors import EXIT_CODE_HELP, CommandFailed, DeployError, ExitCode
from tasks.session import Session, connect, host_strings

COMMON_HELP = {
    "stage": "stage to use (config/<stage>.env); default: the stage whose HOSTS list the -H host, else DEFAULT_STAGE",
    "accept_new_host_key": "record an unknown host key on first connection (a changed key is still refused)",
}

ESCALATION_LABEL = {
    "database": "Database corruption / database failure",
    "infrastructure": "Infrastructure down",
    "security": "Security incident",
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
        c = settings.contact(err.kind)
        fields.append(("Escalate", f"{ESCALATION_LABEL.get(err.kind, err.kind)} -> {c.team}, response {c.response}"
                                   + (f" ({c.reach})" if c.reach else "")))
    fields.append(("Exit code", f"{int(err.code)}: {EXIT_CODE_HELP[err.code]}"))
    ui.block(title, fields)


def render_config_error(exc: ConfigError) -> None:
    stage = f" for stage {exc.stage}" if exc.stage else ""
    ui.block(f"✗ CONFIGURATION ERROR{stage}", [
        ("Problems", exc.problems),
        ("Host state", "nothing was run: configuration is checked before any SSH connection"),
        ("Next", "fix the key(s) above in config/<stage>.env or the named environment variable, then re-run"),
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
                  **task_kwargs) -> Callable:
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
            return run_task(fn, c, stage_arg, accept_new, connects, args, kwargs)

        wrapper.__signature__ = sig.replace(parameters=[params[0], *params[1:], *extra])
        merged_help = {**COMMON_HELP, **(help or {})}
        merged_help = {k: v for k, v in merged_help.items() if k in wrapper.__signature__.parameters}
        return task(wrapper, help=merged_help, **task_kwargs)

    return deco


def _settings_for(c, stage_arg: str | None) -> tuple[Settings, str]:
    host_hint = c.original_host if isinstance(c, Connection) else None
    stage, why = choose_stage(stage_arg, host_hint)
    return load_settings(stage), why


def open_session(c, settings: Settings, host: str, accept_new: bool = False) -> Session:
    """A second session from inside a task (e.g. the production checklist asking staging)."""
    cxn = connect(c, host, settings, accept_new)
    s = Session(settings, host, cxn, dry=bool(c.config.run.dry), redactor=Redactor(settings.secret_key_pattern), ctx=c)
    return s


def run_task(fn, c, stage_arg, accept_new, connects, args, kwargs):
    try:
        settings, why = _settings_for(c, stage_arg)
    except ConfigError as exc:
        ui.set_redactor(Redactor(secrets=exc.secrets))      # problems echo raw values
        render_config_error(exc)
        raise Exit(code=int(ExitCode.CONFIG))
    ui.set_redactor(Redactor(settings.secret_key_pattern, settings.secrets))
    dry = bool(c.config.run.dry)
    if not connects:
        try:
            return fn(Offline(c, settings, dry), *args, **kwargs)
        except DeployError as err:
            render_error(err, settings, None)
            raise Exit(code=int(err.code))
    hosts = host_strings(c, settings)
    for host in hosts:
        ui.say(f"stage: {settings.stage} ({why})   host: {host}" + ("   [dry run: nothing will be changed]" if dry else ""))
        session = None
        try:
            t0 = time.monotonic()
            cxn = connect(c, host, settings, accept_new)
            session = Session(settings, host, cxn, dry=dry, echo=bool(c.config.run.echo),
                              redactor=Redactor(settings.secret_key_pattern), ctx=c)
            ui.set_redactor(session.redactor)
            session.learn_secrets()
            session.connect_seconds = time.monotonic() - t0
            fn(session, *args, **kwargs)
        except DeployError as err:
            render_error(err, settings, host, session)
            raise Exit(code=int(err.code))
        except CommandFailed as failed:
            render_error(DeployError.from_command(failed, "a remote command failed"), settings, host, session)
            raise Exit(code=int(ExitCode.STEP_FAILED))
        except KeyboardInterrupt:
            ui.block(f"✗ INTERRUPTED on {host}", [
                ("Host state", session.describe_state() if session else "not connected yet"),
                ("Next", f"fab -H {host} status"),
                ("Exit code", f"{int(ExitCode.INTERRUPTED)}: {EXIT_CODE_HELP[ExitCode.INTERRUPTED]}")])
            raise Exit(code=int(ExitCode.INTERRUPTED))
        finally:
            if session:
                session.close()
