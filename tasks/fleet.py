"""`fab deploy` on a stage with several HOSTS: the fleet engine (the planning is commands/fleet.py).

One SSH session per host for the whole run. Every host's deploy lock is taken before anything
changes (one refused: those taken are released, nothing ran). The migration host (MIGRATION_HOST,
default the first of HOSTS) is in batch 1 and migrates; the other hosts of batch 1 pull meanwhile
and wait for the migration before they switch (a failed migration: no host switches). Each host
runs the ordinary flow (tasks/flow.py) in a thread of a ``concurrent.futures`` pool, under the
fleet's lock and release id, its lines prefixed with ``[host]``. After each batch the failure
policy decides; BATCH_WAIT seconds pass between batches. The end: every host's error block, the
fleet table, one exit code. Ctrl-C/SIGTERM/SIGHUP reach every host's flow at its next step
boundary (which cleans up as a single-host run does); the locks are released on every path.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from concurrent import futures
from typing import Sequence

from commands import fleet as plan
from commands import record as record_cmd
from commands import timing as timing_cmd
from config import Settings
from tasks import flow, interrupts, ui
from tasks.errors import DeployError, ExitCode

# The thread-driving helpers live in tasks/hostpool.py, shared with the fleet reads (tasks/fleetread.py).
from tasks.hostpool import WAKE_EVERY, deferred_signals, wait_all  # noqa: F401
from tasks.locking import DeployLock
from tasks.rollbackflow import ROLLBACK_STEPS
from tasks.runstate import RunState
from tasks.session import Session
from tasks.steps import RunOptions, Step


@dataclasses.dataclass
class Fleet:
    sessions: dict[str, Session]
    rid: str
    migration_host: str
    migrated: threading.Event = dataclasses.field(default_factory=threading.Event)
    migration_ok: bool = False
    interrupt: BaseException | None = None          # the signal the operator sent, once sent
    pending: list = dataclasses.field(default_factory=list)     # the running batch's futures
    results: dict = dataclasses.field(default_factory=dict)     # host -> HostResult, as batches end
    kind: str = "deploy"            # "rollback": a fleet rollback (tasks/fleetrollback.py), whose rollbacks are no reverts


@dataclasses.dataclass
class HostResult:
    host: str
    outcome: str
    code: int = 0
    error: DeployError | None = None
    seconds: float | None = None
    bottleneck: str = ""


class HeldLock:
    """A host's lock as its flow sees it: taken and released by the fleet (so ``with`` does not
    release it), and the way an interrupt of the fleet reaches the flow: raised once, at the flow's
    next step boundary, where the flow cleans up exactly as after a Ctrl-C of a single-host run."""

    def __init__(self, lock: DeployLock, fleet: Fleet):
        self.lock, self.fleet, self.delivered = lock, fleet, False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def ensure_held(self, before: str) -> None:
        if self.fleet.interrupt is not None and not self.delivered:
            self.delivered = True
            exc = self.fleet.interrupt
            raise interrupts.Terminated(exc.signum) if isinstance(exc, interrupts.Terminated) else KeyboardInterrupt()
        self.lock.ensure_held(before)

    def __getattr__(self, name):
        return getattr(self.lock, name)


def host_steps(fleet: Fleet, host: str, steps: Sequence[Step]) -> list[Step]:
    """The migration host migrates (and tells the others when it is done); the others skip the
    migration and wait for it right before switching their services."""
    if host == fleet.migration_host:
        return [_signalling(fleet, x) if x.name == "migrate" else x for x in steps]
    out: list[Step] = []
    for x in steps:
        if x.switches:
            out.append(Step("await migration", _await_migration(fleet)))
        if x.name != "migrate":
            out.append(x)
    return out


def _signalling(fleet: Fleet, step: Step) -> Step:
    def run(s: Session, opts: RunOptions) -> None:
        try:
            step.run(s, opts)
            fleet.migration_ok = True
        finally:
            fleet.migrated.set()
    return dataclasses.replace(step, run=run)


def _await_migration(fleet: Fleet):
    def run(s: Session, opts: RunOptions) -> None:
        fleet.migrated.wait()
        if fleet.interrupt is None and not fleet.migration_ok:
            raise DeployError(f"not switched: the migration on {fleet.migration_host} did not succeed",
                              code=ExitCode.STEP_FAILED, state="still serving the old version (services not touched)",
                              next_step=f"see {fleet.migration_host}'s error block; fix it, then fab deploy again")
    return run


def run_host(fleet: Fleet, host: str, steps: Sequence[Step], opts: RunOptions, lock: DeployLock, rid: str) -> None:
    """One host's flow, in a pool thread; its result goes into ``fleet.results`` (written by the
    thread itself, so a signal in the main thread at any moment loses no result); never raises."""
    s = fleet.sessions[host]
    ui.set_prefix(f"[{host}] ")
    t0 = time.monotonic()
    result = HostResult(host, plan.SUCCESS)
    try:
        flow.run_flow(s, steps, opts, rid=rid, held=HeldLock(lock, fleet))
    except DeployError as err:
        result = HostResult(host, plan.ROLLED_BACK if err.code == ExitCode.ROLLED_BACK else plan.FAILED, int(err.code), err)
    except KeyboardInterrupt as exc:
        result = HostResult(host, plan.ABORTED, int(interrupts.exit_code(exc)))
    except Exception as exc:        # a bug: this host fails, the fleet still ends in order
        result = HostResult(host, plan.FAILED, int(ExitCode.BUG), DeployError(f"unexpected error: {exc!r}", code=ExitCode.BUG))
    finally:
        if host == fleet.migration_host:
            fleet.migrated.set()     # ended before migrating: the others must not wait forever
        ui.set_prefix("")
    b = timing_cmd.bottleneck(s.timer)
    result = dataclasses.replace(result, seconds=time.monotonic() - t0, bottleneck=b.label if b else "")
    fleet.results[host] = as_revert(result) if opts.kind == "rollback" and fleet.kind == "deploy" else result


def as_revert(r: HostResult) -> HostResult:
    """The revert policy's rollback of a host that had switched: reverted, or revert failed."""
    ok = r.outcome == plan.SUCCESS
    return dataclasses.replace(r, outcome=plan.REVERTED if ok else plan.REVERT_FAILED,
                               code=0 if ok else int(ExitCode.ROLLBACK_FAILED))


def _run_parallel(fleet: Fleet, jobs: dict[str, tuple]) -> None:
    """``run_host`` for each host, in threads; a signal meanwhile is passed to every flow, which then
    cleans up; the wait for them goes on with further signals ignored."""
    pool = futures.ThreadPoolExecutor(max_workers=len(jobs))
    with deferred_signals():        # a signal inside submit() would lose track of a started host
        fleet.pending = [pool.submit(run_host, fleet, host, *job) for host, job in jobs.items()]
    try:
        wait_all(fleet.pending)
    except KeyboardInterrupt as exc:
        wait_after_interrupt(fleet, exc)
    pool.shutdown(wait=False)


def wait_after_interrupt(fleet: Fleet, exc: BaseException) -> None:
    """Pass the signal to every host's flow and wait for their clean-up (each is bounded by the
    flow's own watchdog), further signals ignored. (Not Thread.join: a join cut short by a signal
    may return at once the next time, before the thread has ended.)"""
    fleet.interrupt = fleet.interrupt or exc
    fleet.migrated.set()
    with interrupts.ignored():
        ui.say(f"{interrupts.describe(exc)}: every host's flow stops at its next step and cleans up")
        wait_all(fleet.pending)


def run_batches(fleet: Fleet, locks: dict[str, DeployLock], batches: list[list[str]], steps: Sequence[Step],
                opts: RunOptions, settings: Settings) -> None:
    for i, batch in enumerate(batches):
        if i and settings.batch_wait:
            ui.say(f"fleet: waiting {settings.batch_wait:g} s (BATCH_WAIT) before batch {i + 1}")
            time.sleep(settings.batch_wait)
        ui.say(f"fleet: batch {i + 1}/{len(batches)}: {', '.join(batch)}")
        jobs = {h: (host_steps(fleet, h, steps), opts, locks[h], fleet.rid) for h in batch}
        _run_parallel(fleet, jobs)
        outcomes = {h: r.outcome for h, r in fleet.results.items()}
        decision = plan.after_batch(settings.failure_policy, outcomes, migration_failed=not fleet.migration_ok)
        if decision.why:
            ui.say(f"fleet: {decision.why}")
        if decision.revert:
            revert(fleet, locks, decision.revert)
        if not decision.go_on:
            break


def revert(fleet: Fleet, locks: dict[str, DeployLock], hosts: Sequence[str]) -> None:
    """FAILURE_POLICY=revert: a recorded rollback on each switched host, under the fleet's lock."""
    opts = RunOptions("rollback", message=f"fleet release {fleet.rid}: FAILURE_POLICY=revert")
    for h in hosts:
        s = fleet.sessions[h]
        s.timer, s.state = timing_cmd.Timer(), RunState()
    _run_parallel(fleet, {h: (ROLLBACK_STEPS, opts, locks[h], record_cmd.new_release_id()) for h in hosts})


def document(fleet: Fleet, hosts: list[str], code: int) -> dict:
    """The one ``--json`` document of a fleet deploy or rollback: each host's outcome, exit code,
    error and release record (null for a host that did not run: unchanged, not started)."""
    out = []
    for h in hosts:
        r = fleet.results.get(h) or HostResult(h, plan.NOT_STARTED)
        recorder = getattr(fleet.sessions[h], "recorder", None)
        rel = record_cmd.releases(recorder.lines) if r.outcome != plan.UNCHANGED and getattr(recorder, "lines", None) else []
        out.append({"host": h, "outcome": r.outcome, "exit_code": r.code, "error": r.error.to_dict() if r.error else None,
                    "record": dataclasses.asdict(rel[0]) if rel else None})
    return {"release": fleet.rid, "hosts": out, "exit_code": code}
