"""The Pre-Deployment Checklist's items, built from parsed data (no SSH): which runbook line each
check answers, whether it passed, and the detail shown. tasks/checklist.py reads the host and
calls these."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from commands import alembic as alembic_cmd
from commands import envdiff
from commands import migration_safety as safety
from commands.git import Migration
from commands.migration_findings import MigrationReport

MIGRATIONS = "Database migrations reviewed"
ENV = "New environment variables documented"
ROLLBACK = "Rollback plan documented"


@dataclass
class Item:
    name: str
    runbook: str
    ok: bool
    detail: str
    skipped: bool = False
    blocks: bool = False        # blocks whatever CHECKLIST_BLOCKING says (migrations_breaking under blue-green)
    notes: tuple[str, ...] = ()  # one line per finding (file:line, operation, why), shown below the table
    fix: str = ""               # the next step when this item blocks ("" = the generic one)


def migrations_pending(graph: Sequence[Migration], current: list[str] | None, why: str, remote: str) -> Item:
    heads = alembic_cmd.heads(graph)
    if current is None:
        return Item("migrations_pending", MIGRATIONS, False,
                    f"cannot read the database revision ({why}); head of {remote} is {', '.join(heads) or 'none'}")
    todo = alembic_cmd.pending(graph, current)
    if todo:
        listing = "; ".join(f"{m.revision} ({m.path})" for m in todo)
        return Item("migrations_pending", MIGRATIONS, False,
                    f"current {', '.join(current) or 'base'} -> head {', '.join(heads)}: {len(todo)} pending, review them: {listing}")
    return Item("migrations_pending", MIGRATIONS, True,
                f"current {', '.join(current) or 'base'} = head {', '.join(heads) or 'base'}: nothing pending")


def migrations_untested(graph: Sequence[Migration], todo: Sequence[Migration], stage: str, staged: list[str]) -> Item:
    """Every pending revision must already be applied on the test stage's database (at ``staged``)."""
    name, runbook = "migrations_untested", f"Database migrations tested (on {stage})"
    applied = alembic_cmd.ancestors(graph, staged)
    untested = [m.revision for m in todo if m.revision not in applied]
    if untested:
        return Item(name, runbook, False, f"UNTESTED: {', '.join(untested)} not applied on {stage} (at {', '.join(staged)}); deploy there first")
    return Item(name, runbook, True, f"all pending revisions are applied on {stage} (at {', '.join(staged)})")


def migrations_breaking(reports: Sequence[MigrationReport], strategy: str, reviewed: Sequence[str] = (),
                        stage: str = "") -> Item:
    """Pending revisions whose operations break the code still serving: a warning under
    ``recreate``, a block under ``blue-green`` (both releases serve), unless marked reviewed."""
    v = safety.verdict(reports, strategy)
    return Item("migrations_breaking", MIGRATIONS, v.ok, v.detail, blocks=v.blocks, notes=tuple(safety.explain(reports)),
                fix=review_fix([r.revision for r in reports if r.breaking], reviewed, stage))


def review_fix(revisions: Sequence[str], reviewed: Sequence[str], stage: str) -> str:
    """How to let a deploy run breaking revisions once a person has reviewed them."""
    if not revisions:
        return ""
    mark = safety.config_mark(revisions, reviewed, f" in config/{stage}.env")
    return (f"review {', '.join(revisions)} (the lines above say what breaks the code still serving), then mark each "
            f"reviewed: the comment '# {safety.REVIEW_MARK} <who/why>' in its revision file (committed and pushed)"
            f"{',' if mark.startswith(' or') else ''}{mark}; then run: fab deploy --stage {stage}")


def migrations_breaking_unknown(why: str) -> Item:
    """The database revision is unknown, so which revisions will run is too: warn, never block
    (migrations_pending says the same; a backend that does not run has no old code to break)."""
    return Item("migrations_breaking", MIGRATIONS, False, f"cannot tell which revisions are pending ({why})")


def env_keys_differ(names: Sequence[str], parsed: Mapping[str, dict | None]) -> Item:
    """The first two env files compared by key (values never shown)."""
    if len(names) < 2:
        return Item("env_keys_differ", ENV, True, "ENV_FILES names fewer than two files; nothing to compare", skipped=True)
    if all(parsed.get(n) is not None for n in names[:2]):
        d = envdiff.diff(parsed[names[0]], parsed[names[1]], names[0], names[1])
        parts = []
        if d.only_left:
            parts.append(f"only in {d.left_name}: {', '.join(d.only_left)}")
        if d.only_right:
            parts.append(f"only in {d.right_name}: {', '.join(d.only_right)}")
        return Item("env_keys_differ", ENV, not parts, "; ".join(parts) or
                    f"{d.left_name} and {d.right_name} have the same keys ({len(d.changed)} values differ, masked)")
    missing = [n for n in names if parsed.get(n) is None]
    return Item("env_keys_differ", ENV, False, f"missing on the host: {', '.join(missing)}")


def env_documented(live_name: str, live: dict | None, example: str, example_now: dict | None,
                   incoming: dict | None, remote: str) -> list[Item]:
    """Keys of the live file missing from the example, and keys the incoming release's example
    documents that the live file lacks (what a deploy would start without)."""
    if live is None:
        return [Item("env_undocumented", ENV, False, f"{live_name} not found"),
                Item("env_missing_for_release", ENV, False, f"{live_name} not found")]
    if example_now is not None:
        undocumented = sorted(set(live) - set(example_now))
        first = Item("env_undocumented", ENV, not undocumented,
                     f"in {live_name} but not in {example}: {', '.join(undocumented)}" if undocumented
                     else f"every key of {live_name} is documented in {example}")
    else:
        first = Item("env_undocumented", ENV, False, f"{example} not found in the checkout")
    if incoming is None:
        return [first, Item("env_missing_for_release", ENV, True, f"{remote} has no {example}", skipped=True)]
    needed = sorted(set(incoming) - set(live))
    return [first, Item("env_missing_for_release", ENV, not needed,
                        f"{remote}:{example} documents {', '.join(needed)}, missing from {live_name}: add them before deploying" if needed
                        else f"{live_name} has every key {remote}:{example} documents")]


def rollback_target(services: Sequence[str], images: dict, healthy: bool, describe) -> Item:
    """The images running now are a valid rollback target only if every deployed service runs and is healthy."""
    if not images:
        return Item("rollback_target", ROLLBACK, False, "nothing is running: a first deploy has nothing to roll back to")
    missing = [svc for svc in services if svc not in images]
    if missing or not healthy:
        return Item("rollback_target", ROLLBACK, False,
                    f"running now: {describe(images)}" + (f"; not running: {', '.join(missing)}" if missing else "") +
                    ("" if healthy else "; NOT healthy now, so it is not a valid rollback target"))
    return Item("rollback_target", ROLLBACK, True, f"will be recorded before pull: {describe(images)} (healthy)")


def results(items: Sequence[Item], blocking: Sequence[str]) -> tuple[list[list[str]], list[Item]]:
    """Table rows (runbook item, check, result, detail) and the failed items that block."""
    rows, blockers = [], []
    for it in items:
        if it.ok:
            result = "skip" if it.skipped else "ok"
        elif it.blocks or it.name in blocking:
            result = "BLOCK"
            blockers.append(it)
        else:
            result = "warn"
        rows.append([it.runbook, it.name, result, it.detail])
    return rows, blockers
