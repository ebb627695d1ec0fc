"""`fab rollback` on a stage with several HOSTS: one SSH session per host (tasks/fleetdeploy.py),
every host's lock taken before anything changes (one refused: none kept, nothing changed), every
host's target chosen before any host changes (a bare rollback: one image set for the whole fleet,
commands/fleetrollback.py; ``--to``: each host resolves it as a single-host run does); a host with
no target refuses the whole rollback. Then every host that does not already serve its target runs
the ordinary rollback flow at once (tasks/fleet.py), all under one fleet release id; every host
tries (a rollback goes to images the record shows healthy: stopping half-way would leave more hosts
on the release being left). The end: every failed host's error block, the fleet table, one exit
code; ``--json``: one document. docs/fleets.md describes it."""
from __future__ import annotations

import contextlib
import dataclasses
from concurrent import futures
from typing import Sequence

from invoke import Exit

from commands import fleet as fleet_plan
from commands import fleetrollback as plan
from commands import record as record_cmd
from commands import rollback_plan
from config import Settings
from tasks import interrupts, ui
from tasks.base import render_error
from tasks.errors import CommandFailed, DeployError, ExitCode
from tasks.fleet import Fleet, HostResult, _run_parallel, document
from tasks.fleetdeploy import close, open_sessions, raise_exit, report, serving_versions, take_locks
from tasks.hoststate import describe_images
from tasks.rollbackflow import current_images, load_releases, planned_steps, resolve_target
from tasks.session import Session
from tasks.steps import RunOptions


def rollback_fleet(c, settings: Settings, why: str, hosts: Sequence[str], accept_new: bool, to="", json=False) -> None:
    hosts = list(hosts)
    opts = RunOptions("rollback", to=to, message="fleet rollback" + (f" --to {to}" if to else ""))
    fleet = Fleet(open_sessions(c, settings, hosts, accept_new), record_cmd.new_release_id(), hosts[0], kind="rollback")
    fleet.migration_ok = True       # a rollback migrates nothing: no host waits for a migration
    fleet.migrated.set()
    ui.say(f"stage: {settings.stage} ({why})   fleet rollback {fleet.rid}: {len(hosts)} hosts, every host at once"
           + (f", --to {to}" if to else ", one step back for the whole fleet"))
    try:
        with contextlib.ExitStack() as stack:
            locks, targets = before_any_change(stack, fleet, opts, to, json)
            say_plan(targets, settings.services)
            jobs = {h: (planned_steps(t.images, t.source), opts, locks[h], fleet.rid)
                    for h, t in targets.items() if t.action == plan.ROLL}
            fleet.results.update({h: HostResult(h, fleet_plan.UNCHANGED) for h, t in targets.items() if t.action == plan.UNCHANGED})
            if jobs:
                _run_parallel(fleet, jobs)
            with interrupts.ignored():              # a second signal must not cut the table short
                code = report(fleet, settings, hosts, fleet.results, serving_versions(fleet))
                if json:
                    ui.emit_json(document(fleet, hosts, code))
    finally:
        close(fleet.sessions)
    raise_exit(code)


def before_any_change(stack: contextlib.ExitStack, fleet: Fleet, opts: RunOptions, to: str, json: bool) -> tuple[dict, dict]:
    """Every host's lock, then every host's target. A refusal or a signal here changes nothing; under
    --json it still prints the one document (every host not started, a refused host's error on it)."""
    try:
        locks = take_locks(stack, fleet, opts)
        return locks, choose_targets(fleet, to)
    except (Exit, KeyboardInterrupt) as stopped:
        if json:
            code = int(stopped.code) if isinstance(stopped, Exit) else int(interrupts.exit_code(stopped))
            ui.emit_json(document(fleet, list(fleet.sessions), code))
        raise


def choose_targets(fleet: Fleet, to: str) -> dict[str, plan.HostTarget]:
    """Every host's target, read at once under the locks; any host without one: an error block per
    such host and exit 8, with nothing changed on any host (the locks are released by the caller)."""
    sessions = fleet.sessions
    with futures.ThreadPoolExecutor(max_workers=len(sessions)) as pool:
        read = dict(zip(sessions, pool.map(lambda s: read_host(s, to), sessions.values())))
    errors = {h: r for h, r in read.items() if isinstance(r, DeployError)}
    if not errors and not to:
        try:
            return {t.host: t for t in plan.plan(read, first(sessions).settings.services)}
        except rollback_plan.NoTarget as problem:
            errors = {"the fleet": DeployError(
                f"no valid rollback target for the fleet: {problem.why}", step="rollback", code=ExitCode.ROLLBACK_FAILED,
                output=["what each host runs now:", *(f"{h}: {describe_images(r.current_images)}" for h, r in read.items())],
                next_step="name one target for every host: fab rollback --to <release id | image tag | image id> "
                          "(fab history lists each host's releases and rollback candidates)")}
    if errors:
        refuse(fleet, errors)
    return read


def say_plan(targets: dict[str, plan.HostTarget], services) -> None:
    for h, t in targets.items():
        ui.say(f"fleet: {h}: " + ("already serves the target, nothing to do" if t.action == plan.UNCHANGED else
               f"back to {describe_images({k: v for k, v in t.images.items() if k in services})} ({t.source})"))


def first(sessions: dict[str, Session]) -> Session:
    return next(iter(sessions.values()))


@dataclasses.dataclass(frozen=True)
class Read(plan.HostRecord):
    current_images: dict = dataclasses.field(default_factory=dict)


def read_host(s: Session, to: str):
    """One host's part, in a pool thread: with --to its own target (as `fab -H HOST rollback --to`
    would choose it), else its record and what it runs. A DeployError is returned, not raised."""
    ui.set_prefix(f"[{s.host}] ")
    try:
        current = current_images(s)
        if to:
            images, source = resolve_target(s, to, current)
            same = not rollback_plan.differs(images, record_cmd.image_ids(current), s.settings.services)
            return plan.HostTarget(s.host, plan.UNCHANGED if same else plan.ROLL, images, source)
        return Read(load_releases(s), record_cmd.image_ids(current), current)
    except DeployError as err:
        return err
    except CommandFailed as failed:
        return DeployError.from_command(failed, "reading the host failed", step="rollback", code=ExitCode.ROLLBACK_FAILED)
    except Exception as exc:        # a bug (a record the parser chokes on...): this host refuses, not a traceback
        return DeployError(f"unexpected error reading the host: {exc!r}", step="rollback", code=ExitCode.BUG)
    finally:
        ui.set_prefix("")


def refuse(fleet: Fleet, errors: dict[str, DeployError]) -> None:
    for host, err in errors.items():
        err.state = "nothing was changed on any host (every host's lock is released)"
        err.next_step = (err.next_step or "") + "; or roll hosts back one by one: fab -H HOST rollback"
        s = fleet.sessions.get(host) or first(fleet.sessions)
        render_error(err, s.settings, host, s)
    whole = errors.get("the fleet")         # for the --json document: each error on the host it concerns
    fleet.results.update({h: HostResult(h, fleet_plan.NOT_STARTED, int((errors.get(h) or whole).code), errors.get(h) or whole)
                          for h in fleet.sessions if h in errors or whole})
    raise Exit(code=int(next(iter(errors.values())).code))
