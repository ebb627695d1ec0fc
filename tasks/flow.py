"""The flow engine: every run that changes the host (deploy, prepare, migrate, services, rollback)
goes through :func:`run_flow` with its list of :class:`Step` objects.

It takes the deploy lock, records the images running before anything changes, runs the steps in order (timed, recorded
as they finish, the lock proven at every boundary), puts the previous images back when health or smoke fail after the switch
(auto-rollback), cleans up after Ctrl-C/SIGTERM/SIGHUP, and ends with the record's ``end`` line, timings, outcome and notice."""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from typing import Sequence

from commands import policy
from commands import record as record_cmd
from commands import timing as timing_cmd
from tasks import interrupts, messages, ui
from tasks.errors import CommandFailed, DeployError, ExitCode
from tasks.hoststate import describe_images, label, observe
from tasks.locking import DeployLock
from tasks.notify import notify
from tasks.recorder import Recorder
from tasks.restore import restore_again_if_cut_off as restore  # once more after a lost connection
from tasks.runstate import Observation
from tasks.session import Session
from tasks.steps import RunOptions, Step
from tasks.verify import smoke_checks

INTERRUPT_CLEANUP_LIMIT = 45


def run_flow(s: Session, steps: Sequence[Step], opts: RunOptions, rid: str = "", held=None) -> None:
    """``rid`` and ``held`` (a lock already taken, released by its taker) come from a fleet deploy
    (tasks/fleet.py): one release id on every host, every host's lock taken before any changes."""
    rid = rid or record_cmd.new_release_id()
    t0 = time.monotonic()
    with held or DeployLock(s, opts.kind, opts.message, opts.lock_wait) as lock:   # refused: nothing recorded or changed
        s.lock = lock
        s.recorder.flush()              # a flow before this one on the session (a fleet's revert): its last lines first
        s.recorder = Recorder(s, rid)
        outcome, error = _run(s, rid, steps, opts, t0)    # the lock's release waits for the record's last lines
    if opts.json_out:
        rel = record_cmd.releases(s.recorder.lines)
        ui.emit_json(dataclasses.asdict(rel[0]) if rel else {})
    if error:
        raise error


def _run(s: Session, rid: str, steps: Sequence[Step], opts: RunOptions, t0: float) -> tuple[str, DeployError | None]:
    """The steps and their failure paths; returns (outcome, error) once the end is recorded."""
    outcome, error = "failed", None
    try:
        try:
            _start(s, rid, steps, opts, t0)
            _run_steps(s, steps, opts)
            outcome = "success"
        except DeployError as err:      # nested: a Ctrl-C during the auto-rollback is cleaned up too
            outcome, error = _after_failure(s, err, steps, opts)
    except KeyboardInterrupt as exc:       # Ctrl-C, or SIGTERM/SIGHUP (interrupts.Terminated)
        _clean_up_after_interrupt(s, exc, rid, steps, opts)
        raise
    except BaseException as exc:           # a bug: still record it (the lock is released by `with`)
        _finish(s, rid, "failed", DeployError(f"unexpected error: {exc.__class__.__name__}: {exc}", code=ExitCode.BUG), steps, opts)
        raise
    _finish(s, rid, outcome, error, steps, opts)
    return outcome, error


def _start(s: Session, rid: str, steps: Sequence[Step], opts: RunOptions, t0: float) -> None:
    """Record the start and the images running now, before anything changes (runbook note 3)."""
    st = s.settings
    lock_seconds = time.monotonic() - t0
    s.recorder.write("start", kind=opts.kind, stage=st.stage, host=s.host, who=messages.operator(),
                     steps=[x.name for x in steps], message=opts.message, dry=s.dry)
    if s.connect_seconds:
        _add(s, "connect", None, s.connect_seconds)
    _add(s, "start", "lock", lock_seconds)
    with s.timed("start", "record images"):
        before = observe(s)
    for prefetch in (x.prefetch for x in steps if x.prefetch):
        prefetch(s)                 # reads a later step needs, begun now (the containers are known: no Compose start)
    _add(s, "start", None, time.monotonic() - t0)
    s.state.before = before
    s.state.serving = (f"still serving the old version: {label(before.images, before.version)}" if before.healthy else
                       f"before this run: {describe_images(before.images)}, NOT healthy")
    s.recorder.write("images_before", images=before.images, healthy=before.healthy, version=before.version, **_slot(before))
    ui.say(f"release {rid}: {opts.kind} of {st.stage} on {s.host}; running now: {label(before.images, before.version)}"
           + ("" if before.healthy else " (not healthy)"))


def _slot(o: Observation) -> dict:   # STRATEGY=blue-green: the serving slot goes into the record beside the images
    return {"slot": o.slot} if o.slot else {}


def _add(s: Session, step: str, sub: str | None, seconds: float) -> None:
    t = s.timer.add(step, sub, seconds)
    s.recorder.step(t.step, t.sub, t.seconds, t.ok)


def _run_steps(s: Session, steps: Sequence[Step], opts: RunOptions) -> None:
    total = len(steps)
    for i, step in enumerate(steps, 1):
        s.lock.ensure_held(step.name)       # lost, or unproven too long: stop before the step runs
        ui.say(f"[{i}/{total}] {step.name} ...")
        t1 = time.monotonic()
        try:
            with s.timed(step.name):
                step.run(s, opts)
        except CommandFailed as failed:
            s.state.failed_step = step.name
            ui.say(f"[{i}/{total}] {step.name} FAILED after {time.monotonic() - t1:.1f} s")
            raise DeployError.from_command(failed, f"a command of step {step.name} failed", step=step.name,
                                           state=s.describe_state(), next_step=messages.status(s.host)) from None
        except DeployError as err:
            err.step = err.step or step.name
            s.state.failed_step = step.name
            ui.say(f"[{i}/{total}] {step.name} FAILED after {time.monotonic() - t1:.1f} s")
            raise
        ui.say(f"[{i}/{total}] {step.name} ... {time.monotonic() - t1:.1f} s")
    s.lock.ensure_held("recording the end")     # a run that lost its lock mid-way does not claim success


def _after_failure(s: Session, err: DeployError, steps: Sequence[Step], opts: RunOptions) -> tuple[str, DeployError]:
    """A failed step: stop this run's leftover commands after a lost connection, then put the
    previous images back if the policy says so."""
    if err.code == ExitCode.CONNECTION and not s.dry:
        if err.reconnected or s.kill_running(let_finish=True):
            err.details.append("the SSH connection was re-established; this run's commands still running on the host were stopped")
        else:
            err.details.append("the host is unreachable: the deploy lock stays until its heartbeat is "
                               f"{s.settings.lock_stale_after:g} s old, then fab unlock --force takes it over")
    before = s.state.before
    step = next((x for x in steps if x.name == s.state.failed_step), None)
    facts = policy.FailureFacts(
        code=int(err.code), step_recoverable=bool(step and step.recoverable), services_touched=s.state.services_touched,
        before_images=bool(before and before.images), before_healthy=bool(before and before.healthy),
        auto_rollback=s.settings.auto_rollback, dry=s.dry, host_reachable=not s.dead)
    if policy.should_auto_rollback(facts):
        return auto_rollback(s, err)
    err.code = ExitCode(policy.run_exit_code(opts.kind, int(err.code)))
    return "failed", err


def auto_rollback(s: Session, err: DeployError) -> tuple[str, DeployError]:
    refused = _lock_refusal(s, "auto-rollback")
    if refused:
        return "failed", _not_rolled_back(s, err, refused)
    before = s.state.before.images
    ui.say(f"      auto-rollback: {err.what}")
    ui.say(f"      auto-rollback: restoring {describe_images(before)} (AUTO_ROLLBACK=true)")
    try:
        with s.timed("auto-rollback"):
            after = restore(s, before, step="auto-rollback")      # includes waiting until healthy
    except DeployError as rb_err:
        s.state.serving = "NEITHER VERSION IS HEALTHY: the new version failed and the rollback failed too"
        return "failed", DeployError(
            f"{err.what}; then the automatic rollback failed: {rb_err.what}",
            command=rb_err.command, output=rb_err.output, step=err.step, code=ExitCode.ROLLBACK_FAILED,
            kind="infrastructure", state=s.describe_state(),
            next_step=f"escalate now; then {messages.diagnose(s.host)} and {messages.rollback_to(s.host)} (fab history)")
    s.state.after = Observation(after, True, s.state.version, s.state.slot)
    s.state.serving = f"serving the PREVIOUS version again: {label(after, s.state.version)}, after the automatic rollback"
    return "rolled_back", DeployError(
        f"{err.what}; the previous images were restored automatically and are healthy",
        command=err.command, output=err.output, step=err.step, code=ExitCode.ROLLED_BACK, kind=err.kind,
        details=[*err.details, _smoke_after_rollback(s)], state=s.describe_state(),
        next_step=f"find out why the new version failed: {messages.diagnose(s.host)} ; fix it, then fab deploy again")


def _smoke_after_rollback(s: Session) -> str:
    """Smoke again, for information: if the previous version fails too, the fault is not the release."""
    try:
        smoke_checks(s, step="auto-rollback › smoke")
    except DeployError as smoke_err:
        return f"the smoke tests FAIL on the previous version too ({smoke_err.what}): the fault is probably outside the release"
    return "after the rollback the smoke tests pass on the previous version"


def _lock_refusal(s: Session, before: str) -> DeployError | None:
    """Ask the run's lock right before the services are touched again (auto-rollback, the restore
    after an abort): a run that lost its lock must not touch them, another run may own the host."""
    try:
        s.lock.ensure_held(before)
    except DeployError as refused:
        return refused
    return None


def _not_rolled_back(s: Session, err: DeployError, refused: DeployError) -> DeployError:
    s.state.serving = ("running the NEW images, which failed their checks; NOT rolled back, because this run "
                       "no longer holds the deploy lock")
    return DeployError(
        f"{err.what}; the automatic rollback was NOT run: {refused.what}",
        command=err.command, output=err.output, step=err.step, code=ExitCode.LOCKED, kind=err.kind,
        details=err.details, state=s.describe_state(),
        next_step=(f"see who holds the lock now: {messages.lock(s.host)}. Agree with them, then "
                   f"{messages.fab(s.host, 'rollback')} (it takes the lock) or fix forward"))


# ---- interrupts ----------------------------------------------------------------------------------

def _clean_up_after_interrupt(s: Session, exc: KeyboardInterrupt, rid: str, steps: Sequence[Step],
                              opts: RunOptions) -> None:
    """Put the host in order after Ctrl-C, SIGTERM or SIGHUP: let a mutating command finish, stop
    this run's other commands, restore the previous images if the services were switched, record
    ``aborted``. Further signals are ignored meanwhile (the lock is released by the caller's
    ``with``, also with signals ignored), but the clean-up never hangs the operator: a watchdog ends
    the process after INTERRUPT_CLEANUP_LIMIT seconds (plus the time granted to the interrupted
    command), saying what may be left behind."""
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
            _restore_after_abort(s)
            _finish(s, rid, "aborted", None, steps, opts)
            s.recorder.flush()      # the end line inside the watchdog's bound, not in the lock's release (no watchdog there)
        finally:
            watchdog.cancel()


def _restore_after_abort(s: Session) -> None:
    """An aborted run that had switched the services puts the previous images back: the new ones
    never passed verification, and the host must end serving one known version."""
    before = s.state.before
    if s.dry or not s.state.services_touched or not before or not before.images or not before.healthy:
        return
    refused = _lock_refusal(s, "abort › restore")
    if refused:
        s.state.serving = f"the services were switched and NOT restored: {refused.what}"
        ui.warn(s.state.serving)
        return
    ui.say(f"      aborted after the services were switched: restoring {describe_images(before.images)}")
    try:
        after = restore(s, before.images, step="abort › restore")
    except DeployError as err:
        s.state.serving = f"NEITHER VERSION IS HEALTHY after the abort: {err.what}"
        ui.warn(s.state.serving)
        return
    s.state.serving = f"serving the PREVIOUS version again: {label(after, s.state.version)}, after the abort"


def _give_up_cleanup(s: Session, limit: float, what: str = "Ctrl-C", code: int = ExitCode.INTERRUPTED) -> None:
    ui.warn(f"clean-up after {what} did not finish within {limit:g} s; exiting now. The deploy lock may "
            f"remain: it goes stale {s.settings.lock_stale_after:g} s after its last heartbeat ({messages.lock(s.host)}, "
            f"then {messages.unlock_force(s.host)}); check the host with {messages.status(s.host)}")
    os._exit(int(code))


# ---- the end ---------------------------------------------------------------------------------------

def _finish(s: Session, rid: str, outcome: str, error: DeployError | None, steps: Sequence[Step],
            opts: RunOptions) -> None:
    """Record the end state (what is serving now), print the timing table, notify."""
    s.settle_prefetches()
    _record_images_after(s, outcome, any(x.switches for x in steps))
    b = timing_cmd.bottleneck(s.timer)
    s.recorder.write("end", outcome=outcome, seconds=s.timer.total(),
                     bottleneck=(b.label if b else ""), error=(error.to_dict() if error else {}),
                     serving=s.state.serving, migrations=s.state.migrations)
    ui.say("")
    if not s.dry:           # a dry run's timings measure reads and skipped commands: they mean nothing
        ui.say(timing_cmd.table(s.timer))
        ui.say(timing_cmd.summary(s.timer))
    if s.dry:
        ui.say(f"Outcome: DRY RUN, nothing was changed and nothing was recorded. Host state: {s.describe_state()}", keep=True)
    else:
        ui.say(f"Outcome: {outcome.upper().replace('_', ' ')} (release {rid}). Host state: {s.describe_state()}", keep=True)
    ok, detail = notify(s, f"{opts.kind}_{outcome}", {
        "release": rid, "outcome": outcome, "seconds": s.timer.total(), "bottleneck": b.label if b else "",
        "serving": s.state.serving, "error": error.what if error else ""})
    if s.settings.webhook_url and not ok:
        ui.warn(f"notification: {detail}")


def _record_images_after(s: Session, outcome: str, switches: bool) -> None:
    """The images a run leaves serving: evidence for later rollbacks (only healthy sets count)."""
    if outcome == "rolled_back" and s.state.after:
        a = s.state.after
        s.recorder.write("images_after", images=a.images, healthy=True, version=a.version, **_slot(a))
        return
    if s.dry or not ((outcome == "success" and switches) or (outcome in ("failed", "aborted") and s.state.services_touched)):
        return
    try:
        now = observe(s)
    except DeployError:
        return
    s.recorder.write("images_after", images=now.images, healthy=now.healthy, version=now.version, **_slot(now))
    if outcome == "success" or now.healthy:
        s.state.serving = f"serving {label(now.images, now.version)}" + ("" if now.healthy else " (NOT healthy)")
    else:
        s.state.serving = (f"NOT healthy: {describe_images(now.images)}; the previous images are recorded: "
                           f"{messages.fab(s.host, 'rollback')}")
