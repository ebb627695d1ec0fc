"""The whole runbook in order, under the deploy lock, timed step by step and recorded on the host:

    checklist -> prepare -> pull -> migrate -> services -> verify

Every run of a changing task (deploy, prepare, migrate, services, rollback) goes through
:func:`run_flow`: lock, release record (written as it goes), per-step timing, the timing table with
the bottleneck, auto-rollback when health or smoke fails after ``up``, the end notification.
"""
from __future__ import annotations

import dataclasses
import json as jsonlib
import os
import threading
import time

from commands import record as record_cmd
from commands import timing as timing_cmd
from tasks import interrupts, ui
from tasks.base import operator_task
from tasks.checklist import checklist_step
from tasks.errors import CommandFailed, DeployError, ExitCode
from tasks.locking import DeployLock
from tasks.migrate import migrate_step
from tasks.notify import notify
from tasks.prepare import prepare_step
from tasks.rollback import restore, rollback_step
from tasks.services import deploy_services, describe_images, observe, pull
from tasks.session import Recorder, Session, operator
from tasks.verify import verify_step

# The runbook's order, with one change: images are pulled before migrating (see README, "Where the
# tool differs from the runbook"), so a missing image or an unreachable registry stops the deploy
# before the database changes. Pulling changes nothing that runs.
DEPLOY_STEPS = ("checklist", "prepare", "pull", "migrate", "services", "verify")


def _run_step(s: Session, name: str, opts: dict):
    if name == "checklist":
        return checklist_step(s, opts.get("message", ""))
    if name == "prepare":
        return prepare_step(s, opts.get("show", frozenset()))
    if name == "pull":
        return pull(s, step="pull")
    if name == "migrate":
        return migrate_step(s)
    if name == "services":
        s.facts["services_touched"] = True
        return deploy_services(s, pulled="pull" in opts.get("steps", ()))
    if name == "verify":
        return verify_step(s)
    if name == "rollback":
        s.facts["services_touched"] = True
        return rollback_step(s, opts.get("to", ""))
    raise ValueError(f"unknown step {name}")


def _add(s: Session, step: str, sub: str | None, seconds: float) -> tuple:
    t = s.timer.add(step, sub, seconds)
    return t.step, t.sub, t.seconds, t.ok


def _label(images: dict, version: str | None) -> str:
    return (f"{version} " if version else "") + f"({describe_images(images)})"


def auto_rollback(s: Session, err: DeployError, before: dict) -> tuple[str, DeployError]:
    """Put the recorded previous images back after a failed health or smoke check."""
    refused = _lock_refusal(s, "auto-rollback")
    if refused:
        return "failed", _not_rolled_back(s, err, refused)
    ui.say(f"      auto-rollback: {err.what}")
    ui.say(f"      auto-rollback: restoring {describe_images(before)} (AUTO_ROLLBACK=true)")
    details = list(err.details)
    try:
        with s.timed("auto-rollback"):
            after = restore(s, before, step="auto-rollback")      # includes waiting until healthy
    except DeployError as rb_err:
        s.facts["serving"] = "NEITHER VERSION IS HEALTHY: the new version failed and the rollback failed too"
        return "failed", DeployError(
            f"{err.what}; then the automatic rollback failed: {rb_err.what}",
            command=rb_err.command, output=rb_err.output, step=err.step, code=ExitCode.ROLLBACK_FAILED,
            kind="infrastructure", state=s.describe_state(),
            next_step=f"escalate now; then fab -H {s.host} diagnose and fab -H {s.host} rollback --to <release> (fab history)")
    # Smoke again, for information: if the previous version fails too, the fault is not the release.
    from tasks.verify import smoke_checks
    try:
        smoke_checks(s, step="auto-rollback › smoke")
        details.append("after the rollback the smoke tests pass on the previous version")
    except DeployError as smoke_err:
        details.append(f"the smoke tests FAIL on the previous version too ({smoke_err.what}): the fault is probably outside the release")
    s.facts["images_after"] = after
    s.facts["after_healthy"] = True
    s.facts["serving"] = f"serving the PREVIOUS version again: {_label(after, s.facts.get('version'))}, after the automatic rollback"
    return "rolled_back", DeployError(
        f"{err.what}; the previous images were restored automatically and are healthy",
        command=err.command, output=err.output, step=err.step, code=ExitCode.ROLLED_BACK, kind=err.kind,
        details=details, state=s.describe_state(),
        next_step=f"find out why the new version failed: fab -H {s.host} diagnose ; fix it, then fab deploy again")


def _lock_refusal(s: Session, before: str) -> DeployError | None:
    """Ask the run's lock right before the services are touched again (auto-rollback, the restore
    after an abort): a run that lost its lock must not touch them, another run may own the host."""
    if s.lock is None:
        return None
    try:
        s.lock.ensure_held(before)
    except DeployError as refused:
        return refused
    return None


def _not_rolled_back(s: Session, err: DeployError, refused: DeployError) -> DeployError:
    s.facts["serving"] = ("running the NEW images, which failed their checks; NOT rolled back, because this run "
                          "no longer holds the deploy lock")
    return DeployError(
        f"{err.what}; the automatic rollback was NOT run: {refused.what}",
        command=err.command, output=err.output, step=err.step, code=ExitCode.LOCKED, kind=err.kind,
        details=err.details, state=s.describe_state(),
        next_step=(f"see who holds the lock now: fab -H {s.host} lock. Agree with them, then fab -H {s.host} rollback "
                   f"(it takes the lock) or fix forward"))


def _wants_auto_rollback(s: Session, err: DeployError, before: dict, before_healthy: bool) -> bool:
    return (s.settings.auto_rollback and not s.dry and s.facts.get("services_touched")
            and err.code in (ExitCode.UNHEALTHY, ExitCode.CONNECTION) and bool(before) and before_healthy
            and (err.step or "").split(" ")[0] in ("services", "verify")
            and not (err.step or "").startswith("services › pull"))


def run_flow(s: Session, *, steps: tuple[str, ...], kind: str, json_out: bool = False,
             lock_wait: float | None = None, message: str = "", **opts) -> None:
    st = s.settings
    rid = record_cmd.new_release_id()
    outcome, error = "failed", None
    before, before_healthy = {}, False
    t0 = time.monotonic()
    lock = DeployLock(s, kind, message, lock_wait)
    lock.__enter__()             # refused -> DeployError(LOCKED): nothing recorded, nothing changed
    s.lock = lock                # asked again before every step and before any restore of the services
    lock_seconds = time.monotonic() - t0
    s.recorder = Recorder(s, rid)
    try:
        try:
            s.recorder.write("start", kind=kind, stage=st.stage, host=s.host, who=operator(), steps=list(steps),
                             message=message, dry=s.dry)
            if s.connect_seconds:
                s.recorder.step(*_add(s, "connect", None, s.connect_seconds))
            s.recorder.step(*_add(s, "start", "lock", lock_seconds))
            with s.timed("start", "record images"):
                before, before_healthy, version = observe(s)
            s.recorder.step(*_add(s, "start", None, time.monotonic() - t0))
            s.facts["images_before"] = before
            s.facts["serving"] = (f"still serving the old version: {_label(before, version)}" if before_healthy else
                                  f"before this run: {describe_images(before)}, NOT healthy")
            s.recorder.write("images_before", images=before, healthy=before_healthy, version=version)
            ui.say(f"release {rid}: {kind} of {st.stage} on {s.host}; running now: {_label(before, version)}"
                   + ("" if before_healthy else " (not healthy)"))
            total = len(steps)
            for i, name in enumerate(steps, 1):
                lock.ensure_held(name)       # lost, or unproven too long: stop before the step runs
                ui.say(f"[{i}/{total}] {name} ...")
                t1 = time.monotonic()
                try:
                    try:
                        with s.timed(name):
                            _run_step(s, name, {**opts, "steps": steps})
                    except CommandFailed as failed:
                        raise DeployError.from_command(failed, f"a command of step {name} failed", step=name,
                                                       state=s.describe_state(), next_step=f"fab -H {s.host} status") from None
                except DeployError as err:
                    err.step = err.step or name
                    ui.say(f"[{i}/{total}] {name} FAILED after {time.monotonic() - t1:.1f} s")
                    raise
                ui.say(f"[{i}/{total}] {name} ... {time.monotonic() - t1:.1f} s")
            lock.ensure_held("recording the end")     # a run that lost its lock mid-way does not claim success
            outcome = "success"
        except DeployError as err:
            error = err
            if err.code == ExitCode.CONNECTION and not s.dry:
                if s.kill_running():
                    err.details.append("the SSH connection was re-established; this run's commands still running on the host were stopped")
                else:
                    err.details.append("the host is unreachable: the deploy lock stays until its heartbeat is "
                                       f"{st.lock_stale_after:g} s old, then fab unlock --force takes it over")
            if not s.dead and _wants_auto_rollback(s, err, before, before_healthy):
                outcome, error = auto_rollback(s, err, before)
            elif kind == "rollback" and err.code == ExitCode.UNHEALTHY:
                err.code = ExitCode.ROLLBACK_FAILED       # the rollback target itself is not healthy
        except KeyboardInterrupt as exc:       # Ctrl-C, or SIGTERM/SIGHUP (interrupts.Terminated)
            _clean_up_after_interrupt(s, exc, lock, rid, before, before_healthy, steps)
            raise
        except BaseException as exc:        # a bug: still record it and unlock, then show the traceback
            _finish(s, rid, "failed", DeployError(f"unexpected error: {exc.__class__.__name__}: {exc}", code=ExitCode.BUG), steps)
            raise
        _finish(s, rid, outcome, error, steps)
    finally:
        lock.release()
    if json_out:
        rel = record_cmd.releases(s.recorder.lines)
        ui.emit_json(jsonlib.dumps(dataclasses.asdict(rel[0]) if rel else {}, indent=2, sort_keys=True))
    if error:
        raise error


INTERRUPT_CLEANUP_LIMIT = 45


def _restore_after_abort(s: Session, before: dict, before_healthy: bool) -> None:
    """An aborted run that had switched the services puts the previous images back: the new ones
    never passed verification, and the host must end serving one known version."""
    if s.dry or not s.facts.get("services_touched") or not before or not before_healthy:
        return
    refused = _lock_refusal(s, "abort › restore")
    if refused:
        s.facts["serving"] = f"the services were switched and NOT restored: {refused.what}"
        ui.warn(s.facts["serving"])
        return
    ui.say(f"      aborted after the services were switched: restoring {describe_images(before)}")
    try:
        after = restore(s, before, step="abort › restore")
    except DeployError as err:
        s.facts["serving"] = f"NEITHER VERSION IS HEALTHY after the abort: {err.what}"
        ui.warn(s.facts["serving"])
        return
    s.facts["serving"] = f"serving the PREVIOUS version again: {_label(after, s.facts.get('version'))}, after the abort"


def _clean_up_after_interrupt(s: Session, exc: KeyboardInterrupt, lock, rid: str, before: dict,
                              before_healthy: bool, steps) -> None:
    """Put the host in order after Ctrl-C, SIGTERM or SIGHUP: let a mutating command finish, stop
    this run's other commands, restore the previous images if the services were switched, record
    ``aborted``, release the lock. Further signals are ignored meanwhile, but the clean-up never
    hangs the operator: a watchdog ends the process after INTERRUPT_CLEANUP_LIMIT seconds (plus
    the time granted to the interrupted command), saying what may be left behind."""
    what = interrupts.describe(exc)
    with interrupts.ignored():
        limit = INTERRUPT_CLEANUP_LIMIT + sum(t for _, _, t, must in s.interrupted if must)
        watchdog = threading.Timer(limit, _give_up_cleanup, args=(s, limit, what, interrupts.exit_code(exc)))
        watchdog.daemon = True
        watchdog.start()
        ui.say(f"      {what}: cleaning up (at most {limit:g} s; further Ctrl-C, SIGTERM and SIGHUP are ignored)")
        try:
            s.settle_after_interrupt()
            s.kill_running()
            ui.say("      interrupted: stopped this run's other commands on the host")
            _restore_after_abort(s, before, before_healthy)
            _finish(s, rid, "aborted", None, steps)
        finally:
            lock.release()
            watchdog.cancel()


def _give_up_cleanup(s: Session, limit: float, what: str = "Ctrl-C", code: int = ExitCode.INTERRUPTED) -> None:
    ui.warn(f"clean-up after {what} did not finish within {limit:g} s; exiting now. The deploy lock may "
            f"remain: it goes stale {s.settings.lock_stale_after:g} s after its last heartbeat (fab -H {s.host} lock, "
            f"then fab -H {s.host} unlock --force); check the host with fab -H {s.host} status")
    os._exit(int(code))


def _finish(s: Session, rid: str, outcome: str, error: DeployError | None, steps) -> None:
    """Record the end state (what is serving now), print the timing table, notify."""
    st = s.settings
    if outcome == "success" and any(x in steps for x in ("services", "rollback")):
        try:
            after, healthy, version = observe(s)
            s.recorder.write("images_after", images=after, healthy=healthy, version=version)
            s.facts["serving"] = f"serving {_label(after, version)}" + ("" if healthy else " (NOT healthy)")
        except DeployError:
            pass
    elif outcome == "rolled_back" and s.facts.get("images_after"):
        s.recorder.write("images_after", images=s.facts["images_after"], healthy=True, version=s.facts.get("version"))
    elif outcome in ("failed", "aborted") and s.facts.get("services_touched") and not s.dry:
        try:
            after, healthy, version = observe(s)
            s.recorder.write("images_after", images=after, healthy=healthy, version=version)
            s.facts["serving"] = (f"serving {_label(after, version)}" if healthy else
                                  f"NOT healthy: {describe_images(after)}; the previous images are recorded: fab -H {s.host} rollback")
        except DeployError:
            pass
    b = timing_cmd.bottleneck(s.timer)
    s.recorder.write("end", outcome=outcome, seconds=s.timer.total(),
                     bottleneck=(b.label if b else ""), error=(error.to_dict() if error else {}),
                     serving=s.facts.get("serving", ""), migrations=s.facts.get("migrations", ""))
    ui.say("")
    ui.say(timing_cmd.table(s.timer))
    ui.say(timing_cmd.summary(s.timer))
    if s.dry:
        ui.say(f"Outcome: DRY RUN, nothing was changed and nothing was recorded. Host state: {s.describe_state()}")
    else:
        ui.say(f"Outcome: {outcome.upper().replace('_', ' ')} (release {rid}). Host state: {s.describe_state()}")
    ok, detail = notify(s, f"{'deploy' if 'services' in steps else steps[0]}_{outcome}", {
        "release": rid, "outcome": outcome, "seconds": s.timer.total(), "bottleneck": b.label if b else "",
        "serving": s.facts.get("serving", ""), "error": error.what if error else ""})
    if st.webhook_url and not ok:
        ui.warn(f"notification: {detail}")


@operator_task(help={
    "json": "print the release record as JSON on stdout (progress goes to stderr)",
    "lock_wait": "wait up to this many seconds for another deploy's lock (default LOCK_WAIT)",
    "message": "note recorded with the release, the lock and the notifications",
    "show": "comma-separated non-secret env keys whose values the env diff may print",
})
def deploy(s: Session, json=False, lock_wait=-1.0, message="", show=""):
    """The whole runbook: checklist, prepare, pull, migrate, services, verify; timed, locked, recorded."""
    run_flow(s, steps=DEPLOY_STEPS, kind="deploy", json_out=json,
             lock_wait=None if lock_wait < 0 else lock_wait, message=message,
             show=frozenset(k.strip() for k in show.split(",") if k.strip()))
