"""What state is production in? ``fab status`` (services, images, health, current release, lock)
and ``fab history`` (recent deploys and rollbacks with their timings, from the host's record)."""
from __future__ import annotations

from commands import git as git_cmd
from commands import lock as lock_cmd
from commands import rollback_plan
from commands import slots as slots_cmd
from commands.docker import short_image_id
from commands.health import evaluate
from tasks import fleetviews, maintenance, slotstate, ui
from tasks.base import operator_task
from tasks.errors import CommandFailed, DeployError
from tasks.hoststate import containers, http_check, images_of
from tasks.locking import read_state
from tasks.rollback import candidate_rows, load_releases
from tasks.session import Session


def cut(text: str, limit: int = 60) -> str:
    """A record field for a table cell: the record is host text, and a valid line may hold 60 kB."""
    return ui.excerpt(text, limit)


def status_data(s: Session, states) -> dict:
    """What ``fab status`` shows, as data (``--json`` prints it as is)."""
    st = s.settings
    blue_green = slotstate.enabled(s)
    serving = slots_cmd.fold(states, slots_cmd.pair(st), st.backend_service) if blue_green else states
    verdict = evaluate([*st.dependency_services, *st.services], serving, redact=s.redactor)
    slot, url = slotstate.serving(s)
    check = http_check(s, url)
    slots = slots_cmd.describe(slotstate.slot_states(s), slots_cmd.pair(st)) if blue_green else None
    head = git_cmd.parse_state(s.run(git_cmd.state(st.app_dir)).stdout)
    rels = load_releases(s)
    lk = read_state(s)
    return {
        "host": s.host, "stage": st.stage,
        "services": [{"service": c.service, "state": c.status, "health": c.health, "restarts": c.restart_count,
                      "image": c.image_ref, "image_id": c.image_id} for c in sorted(states, key=lambda c: c.service)],
        "healthy": verdict.ready, "problems": verdict.problems + verdict.waiting,
        "slots": slots,
        "health_url": {"url": url, "ok": check.ok, "status": check.status, "version": check.version,
                       "error": None if check.ok else check.error},
        "code": {"head": head.head, "branch": head.branch, "modified_files": len(head.dirty)},
        "last_release": release_dict(rels[-1]) if rels else None,
        "lock": maintenance.as_dict(lk, st.lock_stale_after) | {"described": lock_cmd.describe(lk) if lk.held else "free"},
    }


def release_dict(r) -> dict:
    return {"id": r.id, "kind": r.kind, "who": r.who, "started": r.started, "ended": r.ended, "outcome": r.outcome,
            "seconds": r.seconds or None, "serving": r.serving or None, "git_before": r.git_before,
            "git_after": r.git_after, "bottleneck": r.bottleneck or None,
            "images_after": r.images_after or r.images_before}


def show_status(s: Session, json=False) -> dict:
    """What ``fab status`` finds, printed unless ``json`` (the caller emits it then)."""
    d = status_data(s, containers(s))
    if not json:
        say_status(d)
    return d


@operator_task(fleet=fleetviews.STATUS.with_body(show_status),
               help={"json": "print the state as one JSON object on stdout (several HOSTS: one object for the fleet)"})
def status(s: Session, json=False):
    """Services (state, health, restarts, image), the version served, the current release and the lock."""
    d = show_status(s, json)
    if json:
        ui.emit_json(d)


def say_status(d: dict) -> None:
    ui.table([[c["service"], c["state"], c["health"] or "-", c["restarts"], c["image"], short_image_id(c["image_id"])]
              for c in d["services"]], ["service", "state", "health", "restarts", "image", "image id"])
    ui.say(f"health: {'all services running and healthy' if d['healthy'] else '; '.join(d['problems'])}")
    if d["slots"]:
        ui.say(f"backend slots (STRATEGY=blue-green): {d['slots']}")
    h = d["health_url"]
    ui.say(f"{h['url']}: " + (f"HTTP {h['status']}" + (f", version {h['version']}" if h["version"] else "") if h["ok"] else f"FAILING ({h['error']})"))
    code = d["code"]
    ui.say(f"code: {code['head'][:10]} on {code['branch']}" + (f", {code['modified_files']} locally modified file(s)" if code["modified_files"] else ""))
    r = d["last_release"]
    if r:
        ui.say(f"last release: {r['id']} {cut(r['kind'])} by {cut(r['who'])} at {cut(r['started'])}: {r['outcome'].upper()}"
               + (f" in {r['seconds']:.1f} s" if r["seconds"] else "") + (f"; {cut(r['serving'], 400)}" if r["serving"] else ""))
    else:
        ui.say("last release: none recorded")
    lk = d["lock"]
    ui.say("deploy lock: " + lk["described"] + (" (STALE)" if lk["stale"] else ""))


def running_images(s: Session) -> dict | None:
    """What runs now, to mark it among the rollback candidates; None when it cannot be read."""
    try:
        return images_of(s, containers(s, s.settings.services), s.settings.services)
    except (DeployError, CommandFailed):
        return None


def check_history_options(limit="10", **_) -> list[str]:
    problem = rollback_plan.check_limit(limit)
    return [problem] if problem else []


def history_data(rels, cands) -> dict:
    return {"releases": [release_dict(r) | {"steps": r.steps} for r in rels],
            "rollback_candidates": [dict(zip(("release", "when", "images", "source", "note"), c)) for c in cands]}


def show_history(s: Session, limit="10", json=False) -> dict:
    """What ``fab history`` finds, printed unless ``json`` (the caller emits it then)."""
    all_rels = load_releases(s)
    rels = all_rels[-int(str(limit).strip()):]
    if json:
        return history_data(rels, candidate_rows(all_rels, s.settings.services, running_images(s)))
    if not rels:
        ui.say(f"no releases recorded in {s.settings.releases_file}")
        return history_data([], [])
    return history_data(rels, say_history(s, rels, all_rels))


@operator_task(fleet=fleetviews.HISTORY.with_body(show_history),
               help={"limit": "how many releases to show, newest last (a whole number, default 10)",
                     "json": "print the releases and the rollback candidates as one JSON object on stdout "
                             "(several HOSTS: one object for the fleet)"},
               check=check_history_options)
def history(s: Session, limit="10", json=False):
    """Recent deploys and rollbacks from the host's release record: who, when, outcome, git, timings, bottleneck."""
    d = show_history(s, limit, json)
    if json:
        ui.emit_json(d)


def say_history(s: Session, rels, all_rels) -> list:
    rows = []
    for r in rels:
        git = f"{r.git_before[:7]}->{r.git_after[:7]}" if r.git_after and r.git_after != r.git_before else (r.git_before[:7] or "-")
        images = ", ".join(f"{k} {short_image_id(v.get('id', ''))}" for k, v in sorted((r.images_after or r.images_before).items()))
        rows.append([r.id, cut(r.kind), cut(r.who), cut(r.started.replace("+00:00", "Z")),
                     r.outcome + (" (inconsistent)" if r.problem else ""), git,
                     f"{r.seconds:.1f}" if r.seconds else "-", cut(r.bottleneck) or "-", images])
    ui.table(rows, ["release", "kind", "who", "started", "outcome", "git", "seconds", "bottleneck", "images after"])
    cands = candidate_rows(all_rels, s.settings.services, running_images(s))
    if cands:
        ui.say("rollback candidates (healthy image sets, newest first; --to takes the release shown, - when none left it running):")
        ui.table([[r[0], r[1], r[2], r[4] or "-"] for r in cands[:8]],
                 ["release (--to)", "when", "images", "note"])
    return cands
