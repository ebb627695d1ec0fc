"""Runbook 2. Run database migrations: start postgres and redis, wait until postgres accepts
connections, ``alembic upgrade head`` in the backend container, then show current and history."""
from __future__ import annotations

import time

from commands import alembic as alembic_cmd
from commands import prestart as prestart_cmd
from commands.shell import whole_seconds
from tasks import interrupts, messages, slotstate, ui
from tasks.base import operator_task
from tasks.errors import CommandFailed, DeployError, ExitCode
from tasks.flow import run_flow
from tasks.hoststate import backend_running, containers, exec_command, exec_sh, inspect_ids, last_inspected
from tasks.session import Session
from tasks.steps import RunOptions, Step


def deps_up(s: Session) -> None:
    st = s.settings
    if not st.dependency_services:
        return
    try:
        s.run(s.compose.up(st.dependency_services), timeout=st.up_timeout, mutating=True)
    except CommandFailed as failed:
        raise DeployError.from_command(failed, f"starting {', '.join(st.dependency_services)} failed",
                                       step="migrate › deps up", kind="database", state=s.describe_state(),
                                       next_step=messages.check_db(s.host)) from None


def wait_db(s: Session) -> None:
    st = s.settings
    cmd = exec_sh(s, st.postgres_service, st.db_ready_command)
    if s.dry:
        ui.say(f"[dry] would poll until postgres accepts connections: {cmd}")
        return
    deadline = time.monotonic() + st.db_ready_timeout
    while True:
        r = s.run(cmd, check=False)
        if r.ok:
            return
        if time.monotonic() > deadline:
            raise DeployError(f"postgres did not accept connections within {st.db_ready_timeout:g} s",
                              command=cmd, output=r.stdout + r.stderr, step="migrate › db ready", kind="database",
                              state=s.describe_state(), next_step=f"{messages.check_db(s.host)}   (add --fix to restart postgres)")
        time.sleep(st.health_interval)


def alembic(s: Session, argv: list[str], *, exec_: bool, timeout: float | None = None, mutating: bool = False):
    st = s.settings
    cmd = exec_command(s, slotstate.exec_service(s), argv) if exec_ else s.compose.run_rm(st.backend_service, argv)
    return s.run(cmd, timeout=timeout, mutating=mutating)


def current_revision(s: Session, exec_: bool) -> list[str]:
    return alembic_cmd.parse_current(alembic(s, alembic_cmd.CURRENT, exec_=exec_).stdout)


def upgrade(s: Session) -> None:
    """alembic upgrade head in the backend (``run --rm`` on a first deploy; the Python a deploy started early, when it
    waits there) with the revision before, after and the history, in one round trip. Until it answers, the state says
    the database may be at the new revision (a lost connection: it is let finish on the host)."""
    st = s.settings
    slots = slotstate.enabled(s)
    # running? and where to exec: as the database-ready poll's inspect read it just now, else one inspect
    known = None if slots else (last_inspected(s, [st.backend_service]) or containers(s, [st.backend_service]))
    exec_ = backend_running(s) if slots else any(c.status == "running" for c in known)
    if not exec_:
        ui.say(f"      no running {st.backend_service} container: using `run --rm` (first deploy)")
    if s.dry:
        before = current_revision(s, exec_)
        ui.say(f"[dry] database at {', '.join(before) or 'base'}; would run alembic upgrade head")
        return
    expect = s.state.checked_revision if exec_ else None
    argv = alembic_cmd.migrate_argv(expect)
    ordinary = exec_command(s, slotstate.exec_service(s), argv, known) if exec_ else s.compose.run_rm(st.backend_service, argv)
    cmd = _with_prestarted(s, ordinary, argv)
    s.state.migrations = f"alembic upgrade head was started: the database may be at the new revision ({messages.check_db(s.host)})"
    try:
        r = s.run(cmd, timeout=st.migrate_timeout, mutating=True)
    except KeyboardInterrupt:
        with interrupts.ignored():      # bounded: the migration's timeout, then one alembic start
            s.settle_after_interrupt()
            s.state.migrations = _revision_after(s, exec_, expect, "the interrupt")[0]
        raise
    except DeployError as lost:
        # The connection went during the migration: once it is back, the migration is let finish
        # on the host (kill_running) and the database's revision read, instead of "may have moved".
        # A read cut off too leaves the flow to stop this run's commands (it may still run).
        if lost.code == ExitCode.CONNECTION and s.kill_running(let_finish=True):
            s.state.migrations, lost.reconnected = _revision_after(s, exec_, expect, "the SSH connection was lost and came back")
            lost.state = s.describe_state()
        raise
    except CommandFailed as failed:
        failed.command = ordinary       # what ran, in effect (the prestarted Python's hand-over is in the run log)
        out, marks = alembic_cmd.parse_migrate(failed.stdout), failed.stdout.splitlines()
        if failed.exit_code == alembic_cmd.MOVED and expect is not None and "@@moved" in marks and "@@upgrade" not in marks:
            raise moved(s, failed, expect, out.before) from None
        try:
            now = current_revision(s, exec_)
        except (CommandFailed, DeployError):
            now = ["unknown"]
        was = ", ".join(out.before or expect or []) or "base"      # (alembic said nothing: the checklist's read)
        s.state.migrations = f"migration failed: database at revision {', '.join(now) or 'base'} (was {was}); services not changed"
        failed.stdout = out.upgrade or failed.stdout
        raise DeployError.from_command(
            failed, "alembic upgrade head failed", step="migrate › alembic", kind="database",
            state=s.describe_state(),
            next_step=f"read the migration error above; fix the migration and re-run fab deploy (the services were not changed). "
                      f"Check the database with {messages.check_db(s.host)}",
        ) from None
    out = alembic_cmd.parse_migrate(r.stdout)
    before, after = out.before, out.after or []
    s.state.migrations = (f"migrations applied: database at revision {', '.join(after)} (was {', '.join(before) or 'base'})"
                             if after != before else f"database at revision {', '.join(after) or 'base'} (no pending migrations)")
    s.recorder.write("migrations", before=before, after=after, early=r.stdout.startswith(prestart_cmd.GO + "\n"))
    ui.say(f"      {s.state.migrations}")
    show_history(out.history)


PRESTART = "migrate: the migration's Python, started early"


def migrate_prefetch(s: Session) -> None:
    """A deploy starts the migration's Python in the backend container once the checklist's reads
    are done (commands/prestart.py): it imports alembic while the checklist ends and prepare, the
    pull and the database's start run, then waits for its turn (begun with the checklist's reads,
    on 2 cores it slowed them by as much as it saved later). Never in a dry run; a run that ends
    before the migration tells it to stop (Session.settle_prefetches)."""
    if not s.dry:
        s.state.after_reads.append(lambda: s.prefetch(PRESTART, lambda: prestart(s), unused=lambda d: d and _stop(s, d[0])))


def prestart(s: Session) -> tuple[str, str] | None:
    """(the prestart's directory, its container ID), or None where it cannot start: the backend's
    one running container by ID (as ``exec_command`` would pick it), Compose project known."""
    service = slotstate.exec_service(s)
    if not (s.settings.compose_project or s.state.compose_project):
        return None
    running = [c for c in inspect_ids(s, [service]) if c.service == service and c.status == "running"]   # (not folded: slots)
    if len(running) != 1:
        return None
    limit = whole_seconds(prestart_cmd.WAIT + s.settings.migrate_timeout) + 10
    r = s.run(prestart_cmd.start(running[0].id, limit), check=False)
    directory = prestart_cmd.parse_start(r.stdout) if r.ok else None
    return (directory, running[0].id) if directory else None


def _with_prestarted(s: Session, cmd: str, argv: list[str]) -> str:
    """``cmd`` handed to the prestarted Python when it waits in the very container ``cmd`` execs
    into (else it is told to stop, and ``cmd`` runs as it is)."""
    found = s.fetched(PRESTART, lambda: None)
    if not found:
        return cmd
    directory, container = found
    if not cmd.startswith(f"docker exec {container} "):
        _stop(s, directory)
        return cmd
    return prestart_cmd.migrate(directory, argv[4:], cmd)


def _stop(s: Session, directory: str) -> None:
    s.run(prestart_cmd.stop(directory), check=False)


def _revision_after(s: Session, exec_: bool, expect: list[str] | None, what: str) -> tuple[str, bool]:
    """Ctrl-C or a lost connection during the migration: it was let finish (settle_after_interrupt,
    kill_running); what did it leave? (Before, the outcome named the code and the images but not
    the database.) The text for the host state, and whether the revision could be read."""
    was = "" if expect is None else f" (was {', '.join(expect) or 'base'})"
    try:
        now = ", ".join(current_revision(s, exec_)) or "base"
    except (CommandFailed, DeployError):
        return f"alembic upgrade head was let finish after {what}; database revision unknown: {messages.check_db(s.host)}", False
    return f"alembic upgrade head was let finish after {what}: database at revision {now}{was}; services not changed", True


def moved(s: Session, failed: CommandFailed, expect: list[str], now: list[str]) -> DeployError:
    """The database is not at the revisions the checklist read: nothing was upgraded."""
    checked, found = ", ".join(expect) or "base", ", ".join(now) or "base"
    s.state.migrations = f"database at revision {found}; nothing migrated (the checklist checked from {checked})"
    failed.stdout = "\n".join(line for line in failed.stdout.splitlines() if not line.startswith("@@"))
    source = s.state.checked_revision_source or "alembic current"
    return DeployError.from_command(
        failed, f"the database is at revision {found} (alembic current, in the migrating process), but the checklist "
                f"checked the pending migrations from {checked} (read by {source}): nothing was migrated",
        step="migrate › alembic", kind="database", state=s.describe_state(),
        # the whole script is in the run log; the block shows what ran, not 3 KB of Python
        command=failed.command.split(" sh -c ", 1)[0] + " sh -c <MIGRATE_SCRIPT of commands/alembic.py> sh --expect " + " ".join(expect),
        next_step="someone or something changed the database since the checklist read it: find out who "
                  f"({messages.check_db(s.host)}), then re-run fab deploy (its checklist reads the database again). "
                  "If it happens again with nobody migrating, the checklist's read and alembic disagree for good: the "
                  "app's env.py uses another database or version table than DATABASE_URL's alembic_version: "
                  "set DB_REVISION_READ=alembic (docs/runbook-differences.md 16)")


def show_history(hist) -> None:
    if hist:
        ui.say("      alembic history (newest first):")
        for h in hist[:10]:
            ui.say(f"        {h.down} -> {h.up}{' (' + h.flags + ')' if h.flags else ''}  {h.message}")


def migrate_step(s: Session, opts: RunOptions) -> None:
    with s.timed("migrate", "deps up"):
        deps_up(s)
    with s.timed("migrate", "db ready"):
        wait_db(s)
    with s.timed("migrate", "alembic"):
        upgrade(s)


@operator_task()
def migrate(s: Session):
    """Runbook 2: start postgres/redis, wait for postgres, alembic upgrade head, show current/history."""
    run_flow(s, (Step("migrate", migrate_step),), RunOptions("migrate"))
