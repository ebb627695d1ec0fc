"""Pre-Deployment Checklist, automated. Each runbook line becomes checks with evidence:

- Database migrations reviewed and tested -> migrations_pending (listed for review, current vs
  head), migrations_breaking (pending revisions whose operations break the code still serving:
  a warning under STRATEGY=recreate, a block under blue-green unless marked reviewed) and, for
  production, migrations_untested (pending revisions the staging host has not applied)
- New environment variables documented -> env_keys_differ, env_undocumented, env_missing_for_release
- Rollback plan documented -> rollback_target (the images now running, recordable and healthy)
- Monitoring dashboards ready -> monitoring (HTTP GET of MONITORING_URL)
- On-call engineer notified -> oncall_notified (POST to WEBHOOK_URL; "not configured" otherwise)

Which failing items block a deploy is config (CHECKLIST_BLOCKING); the rest warn.
"""
from __future__ import annotations

from commands import alembic as alembic_cmd
from commands import checklist as items_cmd
from commands import envdiff
from commands import git as git_cmd
from commands import migration_safety as safety
from commands.checklist import Item
from config import ConfigError, load_settings
from tasks import slotstate, ui
from tasks.base import operator_task
from tasks.errors import CommandFailed, DeployError, ExitCode
from tasks.hostsecrets import env_file, learn_secrets
from tasks.hoststate import describe_images, exec_command, inspect_ids, last_inspected, observe
from tasks.notify import notify
from tasks.session import Session
from tasks.steps import RunOptions


def current_db_revision(s: Session) -> tuple[list[str] | None, str]:
    """(revisions, why not) from the backend's running container, by ``docker exec`` once the
    Compose project is known: its ``alembic_version`` table, else ``alembic current``
    (commands/alembic.py, REVISION). The container as the run's last inspect read it when that was
    just now and read it (hoststate.last_inspected: the start's, for the read begun after it); a
    read through it that fails is made once more on a fresh inspect (a container replaced by hand)."""
    service = slotstate.exec_service(s)
    recent = last_inspected(s, [service])
    if recent:
        revisions, why = _read_revision(s, service, recent)
        if revisions is not None:
            return revisions, why
    return _read_revision(s, service, inspect_ids(s, [service]))


def _read_revision(s: Session, service: str, known) -> tuple[list[str] | None, str]:
    if not any(c.service == service and c.status == "running" for c in known):
        return None, f"{s.settings.backend_service} is not running"
    r = s.run(exec_command(s, service, revision_argv(s), known), check=False)
    if not r.ok:
        last = [line for line in ui.lines(r.stdout + r.stderr, s.redactor) if line.strip() and "level=warning" not in line]
        return None, f"alembic current failed: {ui.excerpt(last[-1], 120, s.redactor) if last else 'exit code ' + str(r.exited)}"
    return _revision(s, r.stdout)


def revision_argv(s: Session) -> list[str]:
    """DB_REVISION_READ: the alembic_version table (alembic current when it cannot be read), or alembic current."""
    return alembic_cmd.REVISION if s.settings.db_revision_read == "table" else alembic_cmd.CURRENT


def _revision(s: Session, stdout: str) -> tuple[list[str], str]:
    revisions, s.state.checked_revision_source = alembic_cmd.parse_revision(stdout)
    return revisions, ""


DB_REVISION = "checklist: database revision"


def checklist_prefetch(s: Session) -> None:
    """The database revision (a Python start in the backend, the checklist's slowest read)
    begins once the start has recorded the images, beside the record's own lines: the backend's
    container is known then (``docker exec`` by the start's inspect, no Compose start: ~0.1 s of
    CPU less on 2 shared cores than ``compose exec``). Begun earlier, beside the start's own reads,
    it only slowed them down (2 cores). Nothing it reads changes before the checklist: the run
    holds the deploy lock."""
    s.prefetch(DB_REVISION, lambda: current_db_revision(s))
    # No Compose probe here: the run's reads ask no Compose when they can (hoststate), and a
    # deploy's early pull tells which Compose the host has by pulling (tasks/services.py).


def check_migrations(s: Session, remote: str) -> list[Item]:
    st = s.settings
    graph = git_cmd.parse_migration_headers(s.run(git_cmd.migration_headers(st.app_dir, remote, st.migrations_path)).stdout)
    current, why = s.fetched(DB_REVISION, lambda: current_db_revision(s))
    items = [items_cmd.migrations_pending(graph, current, why, remote)]
    if current is None:
        return [*items, items_cmd.migrations_breaking_unknown(why)]
    s.state.checked_revision = list(current)       # the migration runs only from these (tasks/migrate.py)
    todo = alembic_cmd.pending(graph, current)
    s.state.pending_migrations = [m.revision for m in todo]
    items.append(check_breaking(s, remote, todo))
    if st.tested_on_stage:
        items.append(check_tested_on(s, graph, todo))
    return items


def check_breaking(s: Session, remote: str, todo) -> Item:
    """Pending revisions that break the code still serving, from their source at ``remote`` (the
    release about to be pulled), read in one command; nothing is read when nothing is pending."""
    st = s.settings
    sources = {}
    paths = git_cmd.quotable_paths([m.path for m in todo])
    if paths:
        sources = git_cmd.parse_show_files(s.run(git_cmd.show_files(st.app_dir, remote, paths)).stdout, paths)
    reports = safety.analyse_pending(todo, sources, st.reviewed_migrations)
    return items_cmd.migrations_breaking(reports, st.strategy, st.reviewed_migrations, st.stage)


def check_tested_on(s: Session, graph, todo) -> Item:
    """Production: every pending revision must already be applied on the test stage's database."""
    st = s.settings
    name, runbook = "migrations_untested", f"Database migrations tested (on {st.tested_on_stage})"
    if not todo:
        return Item(name, runbook, True, "nothing pending")
    try:
        other = load_settings(st.tested_on_stage, apply_generic_env=False)
    except ConfigError as exc:
        s.redactor.add_many(exc.secrets)
        return Item(name, runbook, False, f"cannot load stage {st.tested_on_stage}: {exc.problems[0]}")
    s.redactor.add_many(other.secrets)
    try:
        t = s.open_session(other, other.hosts[0])
        t.redactor = s.redactor         # what it reads is shown through this run's output
        try:
            learn_secrets(t)
            staged, why = current_db_revision(t)
        finally:
            t.close()
    except (DeployError, CommandFailed) as exc:
        return Item(name, runbook, False, f"cannot ask {st.tested_on_stage} ({other.hosts[0]}): {exc}")
    if staged is None:
        return Item(name, runbook, False, f"cannot read the database revision on {st.tested_on_stage}: {why}")
    return items_cmd.migrations_untested(graph, todo, st.tested_on_stage, staged)


def check_env(s: Session, remote: str) -> list[Item]:
    st = s.settings
    parsed = {n: env_file(s, n) for n in st.env_files}
    items = [items_cmd.env_keys_differ(st.env_files, parsed)]
    if st.env_example:
        # Placeholders, not secrets: not taught to the redactor.
        text, incoming = s.concurrently(lambda: s.read_file(st.env_example),
                                        lambda: s.run(git_cmd.show_file(st.app_dir, remote, st.env_example)).stdout)
        example_now = envdiff.parse_env(text) if text is not None else None
        live_name = st.env_files[0] if st.env_files else ""
        items += items_cmd.env_documented(live_name, parsed.get(live_name), st.env_example, example_now,
                                          envdiff.parse_env(incoming) if incoming.strip() else None, remote)
    return items


def check_rollback_target(s: Session) -> Item:
    now = observe(s)
    return items_cmd.rollback_target(s.settings.services, now.images, now.healthy, describe_images)


def check_monitoring(s: Session) -> Item:
    url = s.settings.monitoring_url
    runbook = "Monitoring dashboards ready"
    if not url:
        return Item("monitoring", runbook, False, "MONITORING_URL not configured")
    a = s.request("GET", url, deadline=s.settings.smoke_timeout)
    if a.error:
        return Item("monitoring", runbook, False, f"{url} unreachable: {a.error}")
    return Item("monitoring", runbook, a.ok, f"{url} answered HTTP {a.status} in {a.seconds:.2f} s")


def check_oncall(s: Session, message: str) -> Item:
    runbook = "On-call engineer notified"
    if not s.settings.webhook_url:
        return Item("oncall_notified", runbook, False, "not configured (WEBHOOK_URL is empty): notify on-call by hand")
    ok, detail = notify(s, "deploy_starting", {"message": message, "pending_migrations": s.state.pending_migrations})
    return Item("oncall_notified", runbook, ok, detail)


def run_checklist(s: Session, message: str = "") -> list[Item]:
    st = s.settings
    remote = git_cmd.remote_ref(st.git_remote, st.git_branch)
    try:
        s.run(git_cmd.fetch(st.app_dir, st.git_remote, st.git_branch))
    except CommandFailed as failed:
        raise DeployError.from_command(failed, "git fetch failed, so the incoming release cannot be checked",
                                       step="checklist", state="nothing changed",
                                       next_step=f"check the git remote from the host: git -C {st.app_dir} fetch {st.git_remote}") from None
    s.state.fetched = remote
    for hook in s.state.after_fetch:        # a deploy's pull may start now (tasks/services.py, early_pull)
        hook(remote)
    # Independent reads at once (each its own SSH channel); on-call last: it reports what is pending.
    migrations, env, rollback, monitoring = s.concurrently(
        lambda: check_migrations(s, remote), lambda: check_env(s, remote),
        lambda: check_rollback_target(s), lambda: check_monitoring(s))
    for hook in s.state.after_reads:        # the migration's Python may start now (tasks/migrate.py)
        hook()
    return [*migrations, *env, rollback, monitoring, check_oncall(s, message)]


def checked(s: Session, message: str) -> list[Item]:
    """Run the checklist, print its table; a blocking failure stops with exit 9, nothing changed."""
    items = run_checklist(s, message)
    rows, blockers = items_cmd.results(items, s.settings.checklist_blocking)
    ui.table(rows, ["runbook item", "check", "result", "detail"])
    for line in (n for i in items if not i.ok and i not in blockers for n in i.notes):
        ui.warn(line)
    s.recorder.write("checklist", items=[{"check": i.name, "ok": i.ok, "detail": i.detail, **({"notes": list(i.notes)} if i.notes else {})}
                                         for i in items])
    if blockers:
        raise DeployError(
            f"{len(blockers)} blocking checklist item(s) failed: " + "; ".join(f"{b.name}: {b.detail}" for b in blockers),
            step="checklist", code=ExitCode.CHECKLIST,
            state="nothing was changed (the checklist runs before any change)" + (
                "; the new images may have been pulled (nothing that runs uses them)" if s.state.pulled_early else ""),
            details=[n for b in blockers for n in b.notes], next_step=blocked_next_step(blockers))
    return items


def blocked_next_step(blockers: list[Item]) -> str:
    """What to do about the blocking items: each item's own fix (how to mark a breaking migration
    reviewed), else the generic one."""
    generic = "fix the items above (CHECKLIST_BLOCKING in the stage config says which items block), then re-run fab deploy"
    fixes = [b.fix for b in blockers if b.fix]
    if not fixes:
        return generic
    return "; ".join(fixes) + ("" if len(fixes) == len(blockers) else f". Other blocking items: {generic}")


def checklist_step(s: Session, opts: RunOptions) -> None:
    checked(s, opts.message)


@operator_task(help={"message": "note sent with the on-call notification"})
def checklist(s: Session, message=""):
    """Pre-Deployment Checklist as a table: migrations, env keys, rollback target, monitoring, on-call."""
    checked(s, message)
    ui.say("checklist: no blocking item")
