"""What state is production in? ``fab status`` (services, images, health, current release, lock)
and ``fab history`` (recent deploys and rollbacks with their timings, from the host's record)."""
from __future__ import annotations

from commands import git as git_cmd
from commands import lock as lock_cmd
from commands import rollback_plan
from commands import slots as slots_cmd
from commands.docker import short_image_id
from commands.health import evaluate
from tasks import slotstate, ui
from tasks.base import operator_task
from tasks.errors import CommandFailed, DeployError
from tasks.hoststate import containers, http_check, images_of
from tasks.locking import read_state
from tasks.rollback import candidate_rows, load_releases
from tasks.session import Session


@operator_task()
def status(s: Session):
    """Services (state, health, restarts, image), the version served, the current release and the lock."""
    st = s.settings
    states = containers(s)
    rows = [[c.service, c.status, c.health or "-", c.restart_count, c.image_ref, short_image_id(c.image_id)]
            for c in sorted(states, key=lambda c: c.service)]
    ui.table(rows, ["service", "state", "health", "restarts", "image", "image id"])
    serving = slots_cmd.fold(states, slots_cmd.pair(st), st.backend_service) if slotstate.enabled(s) else states
    verdict = evaluate([*st.dependency_services, *st.services], serving, redact=s.redactor)
    slot, url = slotstate.serving(s)
    check = http_check(s, url)
    ui.say(f"health: {'all services running and healthy' if verdict.ready else '; '.join(verdict.problems + verdict.waiting)}")
    if slotstate.enabled(s):
        ui.say("backend slots (STRATEGY=blue-green): " + slots_cmd.describe(slotstate.slot_states(s), slots_cmd.pair(st)))
    ui.say(f"{url}: " + (f"HTTP {check.status}" + (f", version {check.version}" if check.version else "") if check.ok else f"FAILING ({check.error})"))
    head = git_cmd.parse_state(s.run(git_cmd.state(st.app_dir)).stdout)
    ui.say(f"code: {head.head[:10]} on {head.branch}" + (f", {len(head.dirty)} locally modified file(s)" if head.dirty else ""))
    rels = load_releases(s)
    if rels:
        r = rels[-1]
        ui.say(f"last release: {r.id} {r.kind} by {r.who} at {r.started}: {r.outcome.upper()}"
               + (f" in {r.seconds:.1f} s" if r.seconds else "") + (f"; {r.serving}" if r.serving else ""))
    else:
        ui.say("last release: none recorded")
    lk = read_state(s)
    ui.say("deploy lock: " + (lock_cmd.describe(lk) + (" (STALE)" if lk.is_stale(st.lock_stale_after) else "") if lk.held else "free"))


def running_images(s: Session) -> dict | None:
    """What runs now, to mark it among the rollback candidates; None when it cannot be read."""
    try:
        return images_of(s, containers(s, s.settings.services), s.settings.services)
    except (DeployError, CommandFailed):
        return None


def check_history_options(limit="10", **_) -> list[str]:
    problem = rollback_plan.check_limit(limit)
    return [problem] if problem else []


@operator_task(help={"limit": "how many releases to show, newest last (a whole number, default 10)"}, check=check_history_options)
def history(s: Session, limit="10"):
    """Recent deploys and rollbacks from the host's release record: who, when, outcome, git, timings, bottleneck."""
    all_rels = load_releases(s)
    rels = all_rels[-int(str(limit).strip()):]
    if not rels:
        ui.say(f"no releases recorded in {s.settings.releases_file}")
        return
    rows = []
    for r in rels:
        git = f"{r.git_before[:7]}->{r.git_after[:7]}" if r.git_after and r.git_after != r.git_before else (r.git_before[:7] or "-")
        images = ", ".join(f"{k} {short_image_id(v.get('id', ''))}" for k, v in sorted((r.images_after or r.images_before).items()))
        rows.append([r.id, r.kind, r.who, r.started.replace("+00:00", "Z"), r.outcome, git,
                     f"{r.seconds:.1f}" if r.seconds else "-", r.bottleneck or "-", images])
    ui.table(rows, ["release", "kind", "who", "started", "outcome", "git", "seconds", "bottleneck", "images after"])
    cands = candidate_rows(all_rels, s.settings.services, running_images(s))
    if cands:
        ui.say("rollback candidates (healthy image sets, newest first; --to takes the release shown, - when none left it running):")
        ui.table([[r[0], r[1], r[2], r[4] or "-"] for r in cands[:8]],
                 ["release (--to)", "when", "images", "note"])
