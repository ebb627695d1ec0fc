"""Pre-Deployment Checklist, automated. Each runbook line becomes checks with evidence:

- Database migrations reviewed and tested -> migrations_pending (listed for review, current vs
  head) and, for production, migrations_untested (pending revisions the staging host has not applied)
- New environment variables documented -> env_keys_differ, env_undocumented, env_missing_for_release
- Rollback plan documented -> rollback_target (the images now running, recordable and healthy)
- Monitoring dashboards ready -> monitoring (HTTP GET of MONITORING_URL)
- On-call engineer notified -> oncall_notified (POST to WEBHOOK_URL; "not configured" otherwise)

Which failing items block a deploy is config (CHECKLIST_BLOCKING); the rest warn.
"""
from __future__ import annotations

from dataclasses import dataclass

from commands import alembic as alembic_cmd
from commands import envdiff, git as git_cmd
from config import ConfigError, load_settings
from tasks import ui, web
from tasks.base import open_session, operator_task
from tasks.errors import CommandFailed, DeployError, ExitCode
from tasks.notify import notify
from tasks.session import Session
from tasks.services import containers, describe_images, observe


@dataclass
class Item:
    name: str
    runbook: str
    ok: bool
    detail: str
    skipped: bool = False


def _current_db_revision(s: Session) -> tuple[list[str] | None, str]:
    """(revisions, why not) from ``alembic current`` in the backend container."""
    st = s.settings
    if not any(c.status == "running" for c in containers(s, [st.backend_service])):
        return None, f"{st.backend_service} is not running"
    r = s.run(s.compose.exec(st.backend_service, alembic_cmd.CURRENT), check=False)
    if not r.ok:
        last = [l for l in ui.lines(r.stdout + r.stderr, s.redactor) if l.strip() and "level=warning" not in l]
        return None, f"alembic current failed: {ui.excerpt(last[-1], 120, s.redactor) if last else 'exit code ' + str(r.exited)}"
    return alembic_cmd.parse_current(r.stdout), ""


def check_migrations(s: Session, remote: str) -> list[Item]:
    st = s.settings
    graph = git_cmd.parse_migration_headers(s.run(git_cmd.migration_headers(st.app_dir, remote, st.migrations_path)).stdout)
    heads = alembic_cmd.heads(graph)
    current, why = _current_db_revision(s)
    items = []
    if current is None:
        items.append(Item("migrations_pending", "Database migrations reviewed", False,
                          f"cannot read the database revision ({why}); head of {remote} is {', '.join(heads) or 'none'}"))
        return items
    todo = alembic_cmd.pending(graph, current)
    s.facts["pending_migrations"] = [m.revision for m in todo]
    if todo:
        listing = "; ".join(f"{m.revision} ({m.path})" for m in todo)
        items.append(Item("migrations_pending", "Database migrations reviewed", False,
                          f"current {', '.join(current) or 'base'} -> head {', '.join(heads)}: {len(todo)} pending, review them: {listing}"))
    else:
        items.append(Item("migrations_pending", "Database migrations reviewed", True,
                          f"current {', '.join(current) or 'base'} = head {', '.join(heads) or 'base'}: nothing pending"))
    if st.tested_on_stage:
        items.append(check_tested_on(s, graph, todo))
    return items


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
        t = open_session(s.ctx, other, other.hosts[0])
        t.redactor = s.redactor         # what it reads is shown through this run's output
        try:
            t.learn_secrets()
            staged, why = _current_db_revision(t)
        finally:
            t.close()
    except (DeployError, CommandFailed) as exc:
        return Item(name, runbook, False, f"cannot ask {st.tested_on_stage} ({other.hosts[0]}): {exc}")
    if staged is None:
        return Item(name, runbook, False, f"cannot read the database revision on {st.tested_on_stage}: {why}")
    applied = alembic_cmd.ancestors(graph, staged)
    untested = [m.revision for m in todo if m.revision not in applied]
    if untested:
        return Item(name, runbook, False, f"UNTESTED: {', '.join(untested)} not applied on {st.tested_on_stage} (at {', '.join(staged)}); deploy there first")
    return Item(name, runbook, True, f"all pending revisions are applied on {st.tested_on_stage} (at {', '.join(staged)})")


def check_env(s: Session, remote: str) -> list[Item]:
    st = s.settings
    items = []
    texts = {n: s.read_file(n) for n in st.env_files}
    parsed = {n: envdiff.parse_env(t) for n, t in texts.items() if t is not None}
    for v in parsed.values():
        s.redactor.add_env(v)
    live_name = st.env_files[0] if st.env_files else None
    live = parsed.get(live_name) if live_name else None
    runbook = "New environment variables documented"
    if len(st.env_files) >= 2 and all(n in parsed for n in st.env_files[:2]):
        d = envdiff.diff(parsed[st.env_files[0]], parsed[st.env_files[1]], st.env_files[0], st.env_files[1])
        parts = []
        if d.only_left:
            parts.append(f"only in {d.left_name}: {', '.join(d.only_left)}")
        if d.only_right:
            parts.append(f"only in {d.right_name}: {', '.join(d.only_right)}")
        items.append(Item("env_keys_differ", runbook, not parts, "; ".join(parts) or f"{d.left_name} and {d.right_name} have the same keys ({len(d.changed)} values differ, masked)"))
    else:
        missing = [n for n in st.env_files if n not in parsed]
        items.append(Item("env_keys_differ", runbook, False, f"missing on the host: {', '.join(missing)}"))
    if st.env_example:
        example_now = s.read_file(st.env_example)
        incoming = s.run(git_cmd.show_file(st.app_dir, remote, st.env_example)).stdout
        if live is None:
            items.append(Item("env_undocumented", runbook, False, f"{live_name} not found"))
            items.append(Item("env_missing_for_release", runbook, False, f"{live_name} not found"))
            return items
        if example_now is not None:
            documented = set(envdiff.parse_env(example_now))
            undocumented = sorted(set(live) - documented)
            items.append(Item("env_undocumented", runbook, not undocumented,
                              f"in {live_name} but not in {st.env_example}: {', '.join(undocumented)}" if undocumented
                              else f"every key of {live_name} is documented in {st.env_example}"))
        else:
            items.append(Item("env_undocumented", runbook, False, f"{st.env_example} not found in the checkout"))
        if incoming.strip():
            needed = sorted(set(envdiff.parse_env(incoming)) - set(live))
            items.append(Item("env_missing_for_release", runbook, not needed,
                              f"{remote}:{st.env_example} documents {', '.join(needed)}, missing from {live_name}: add them before deploying" if needed
                              else f"{live_name} has every key {remote}:{st.env_example} documents"))
        else:
            items.append(Item("env_missing_for_release", runbook, True, f"{remote} has no {st.env_example}", skipped=True))
    return items


def check_rollback_target(s: Session) -> Item:
    st = s.settings
    images, healthy, _ = observe(s)
    runbook = "Rollback plan documented"
    if not images:
        return Item("rollback_target", runbook, False, "nothing is running: a first deploy has nothing to roll back to")
    missing = [svc for svc in st.services if svc not in images]
    if missing or not healthy:
        return Item("rollback_target", runbook, False,
                    f"running now: {describe_images(images)}" + (f"; not running: {', '.join(missing)}" if missing else "") +
                    ("" if healthy else "; NOT healthy now, so it is not a valid rollback target"))
    return Item("rollback_target", runbook, True, f"will be recorded before pull: {describe_images(images)} (healthy)")


def check_monitoring(s: Session) -> Item:
    url = s.settings.monitoring_url
    runbook = "Monitoring dashboards ready"
    if not url:
        return Item("monitoring", runbook, False, "MONITORING_URL not configured")
    a = web.request("GET", url, deadline=s.settings.smoke_timeout)
    if a.error:
        return Item("monitoring", runbook, False, f"{url} unreachable: {a.error}")
    return Item("monitoring", runbook, a.ok, f"{url} answered HTTP {a.status} in {a.seconds:.2f} s")


def check_oncall(s: Session, message: str) -> Item:
    runbook = "On-call engineer notified"
    if not s.settings.webhook_url:
        return Item("oncall_notified", runbook, False, "not configured (WEBHOOK_URL is empty): notify on-call by hand")
    ok, detail = notify(s, "deploy_starting", {"message": message, "pending_migrations": s.facts.get("pending_migrations", [])})
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
    items: list[Item] = []
    items += check_migrations(s, remote)
    items += check_env(s, remote)
    items.append(check_rollback_target(s))
    items.append(check_monitoring(s))
    items.append(check_oncall(s, message))
    return items


def render(s: Session, items: list[Item]) -> list[Item]:
    """Print the table; return the blocking failures."""
    blocking = set(s.settings.checklist_blocking)
    rows, blockers = [], []
    for it in items:
        if it.ok:
            result = "skip" if it.skipped else "ok"
        elif it.name in blocking:
            result = "BLOCK"
            blockers.append(it)
        else:
            result = "warn"
        rows.append([it.runbook, it.name, result, it.detail])
    ui.table(rows, ["runbook item", "check", "result", "detail"])
    return blockers


def checklist_step(s: Session, message: str = "") -> None:
    items = run_checklist(s, message)
    blockers = render(s, items)
    if s.recorder:
        s.recorder.write("checklist", items=[{"check": i.name, "ok": i.ok, "detail": i.detail} for i in items])
    if blockers:
        raise DeployError(
            f"{len(blockers)} blocking checklist item(s) failed: " + "; ".join(f"{b.name}: {b.detail}" for b in blockers),
            step="checklist", code=ExitCode.CHECKLIST, state="nothing was changed (the checklist runs before any change)",
            next_step="fix the items above (CHECKLIST_BLOCKING in the stage config says which items block), then re-run fab deploy")


@operator_task(help={"message": "note sent with the on-call notification"})
def checklist(s: Session, message=""):
    """Pre-Deployment Checklist as a table: migrations, env keys, rollback target, monitoring, on-call."""
    items = run_checklist(s, message)
    blockers = render(s, items)
    if blockers:
        raise DeployError(f"{len(blockers)} blocking item(s): {', '.join(b.name for b in blockers)}",
                          step="checklist", code=ExitCode.CHECKLIST, state="nothing was changed",
                          next_step="fix the blocking items, then fab deploy")
    ui.say("checklist: no blocking item")
