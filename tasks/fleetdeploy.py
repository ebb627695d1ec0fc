"""`fab deploy` on a stage with several HOSTS, from start to end: plan the batches, open one
session per host, take every host's lock, run the batches (tasks/fleet.py), and end with every
failed host's error block, the fleet table and one exit code. docs/fleets.md describes it."""
from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from concurrent import futures
from typing import Sequence

from invoke import Exit

from commands import fleet as plan
from commands import record as record_cmd
from commands.secrets import Redactor
from config import Settings
from tasks import interrupts, ui
from tasks.base import begin, render_error, render_usage_error
from tasks.errors import DeployError, ExitCode
from tasks.fleet import Fleet, HostResult, document, run_batches, wait_after_interrupt
from tasks.hoststate import observe
from tasks.locking import DeployLock
from tasks.session import Session
from tasks.ssh import connect
from tasks.steps import RunOptions, Step


def open_sessions(c, settings: Settings, hosts: list[str], accept_new: bool) -> dict[str, Session]:
    """One session per host for the whole run, opened at once (a fleet of N hosts pays one connect,
    not N); all share one redactor (every host's secrets hidden). One host cannot be reached: the
    others are closed and the first failing host's error block (in HOSTS order) is shown."""
    redactor = Redactor(settings.secret_key_pattern)

    def open_one(host: str) -> Session:
        t0 = time.monotonic()
        s = Session(settings, host, connect(c, host, settings, accept_new), dry=bool(c.config.run.dry),
                    echo=bool(c.config.run.echo), redactor=redactor, ctx=c)
        try:
            begin(s, t0)
        except BaseException:
            s.close()
            raise
        return s
    pool = futures.ThreadPoolExecutor(max_workers=len(hosts))
    pending = {host: pool.submit(open_one, host) for host in hosts}
    try:
        futures.wait(pending.values())
    finally:                # also on Ctrl-C while connecting: the connects end (bounded), every one opened is closed
        pool.shutdown(wait=True)
        opened = {h: f.result() for h, f in pending.items() if not f.cancelled() and f.exception() is None}
        if sys.exc_info()[0] is not None:
            close(opened)
    failed = next(((h, f.exception()) for h, f in pending.items() if f.exception() is not None), None)
    if failed is None:
        return opened
    close(opened)
    host, exc = failed
    if isinstance(exc, DeployError):
        render_error(exc, settings, host)
        raise Exit(code=int(exc.code)) from None
    raise exc


def close(sessions: dict[str, Session]) -> None:
    for s in sessions.values():
        s.close()


def take_locks(stack: contextlib.ExitStack, fleet: Fleet, opts: RunOptions) -> dict[str, DeployLock]:
    """Every host's lock before anything changes; one refused: the ExitStack releases those taken."""
    locks = {}
    for host, s in fleet.sessions.items():
        try:
            locks[host] = stack.enter_context(DeployLock(s, opts.kind, opts.message, opts.lock_wait))
        except DeployError as err:
            err.state = (f"nothing was changed on any host; the locks taken on {', '.join(locks)} are released"
                         if locks else "nothing was changed on any host")
            render_error(err, s.settings, host, s)
            fleet.results[host] = HostResult(host, plan.NOT_STARTED, int(err.code), err)     # for a --json document
            raise Exit(code=int(err.code)) from None
    return locks


def deploy_fleet(c, settings: Settings, why: str, hosts: Sequence[str], accept_new: bool, steps: Sequence[Step],
                 opts: RunOptions, parallel: str = "") -> None:
    """The fleet run of `fab deploy`: plan, connect, lock, batches, the table, one exit code."""
    order = plan.order(list(hosts), settings.migration_host or hosts[0])
    try:
        size = plan.batch_size(parallel or settings.batch_size, len(order))
    except plan.BadBatchSize as exc:
        render_usage_error([f"--parallel / BATCH_SIZE: {exc}"])
        raise Exit(code=int(ExitCode.CONFIG)) from None
    batches = plan.batches(order, size)
    fleet = Fleet(open_sessions(c, settings, order, accept_new), record_cmd.new_release_id(), order[0])
    host_opts = dataclasses.replace(opts, json_out=False)     # --json: one fleet document at the end, not one per host
    ui.say(f"stage: {settings.stage} ({why})   fleet release {fleet.rid}: {len(order)} hosts, {len(batches)} batch(es) "
           f"of up to {size}; migrations on {order[0]}; FAILURE_POLICY={settings.failure_policy}")
    try:
        with contextlib.ExitStack() as stack:
            try:
                locks = take_locks(stack, fleet, opts)
            except Exit as refused:                 # nothing changed; --json still prints the document
                if opts.json_out:
                    ui.emit_json(document(fleet, order, int(refused.code)))
                raise
            try:
                run_batches(fleet, locks, batches, steps, host_opts, settings)
            except KeyboardInterrupt as exc:        # between batches, or while the policy acts
                wait_after_interrupt(fleet, exc)
            with interrupts.ignored():              # a second signal must not cut the table short
                code = report(fleet, settings, order, fleet.results, serving_versions(fleet))
                if opts.json_out:
                    ui.emit_json(document(fleet, order, code))
    finally:
        close(fleet.sessions)
    raise_exit(code)


def serving_versions(fleet: Fleet) -> dict[str, str]:
    """What each host's health URL reports now (the table's 'version serving'); '' if unknown."""
    def one(s: Session) -> str:
        try:                # reads: they run in a dry run too
            return observe(s).version or ""
        except DeployError:
            return ""
    with futures.ThreadPoolExecutor(max_workers=len(fleet.sessions)) as pool:
        return dict(zip(fleet.sessions, pool.map(one, fleet.sessions.values())))


def report(fleet: Fleet, settings: Settings, order: list[str], results: dict[str, HostResult], versions: dict[str, str]) -> int:
    ordered = [results.get(h) or HostResult(h, plan.NOT_STARTED) for h in order]
    for r in ordered:
        if r.error and r.outcome not in (plan.REVERTED,):
            render_error(r.error, settings, r.host, fleet.sessions[r.host])
    rows = [plan.HostRow(r.host, r.outcome, versions.get(r.host, ""), r.seconds, r.bottleneck) for r in ordered]
    ui.say("")
    ui.table(plan.rows(rows), plan.HEADERS)
    code = plan.exit_code([(r.host, r.outcome, r.code) for r in ordered])
    if fleet.interrupt is not None:
        code = int(interrupts.exit_code(fleet.interrupt))
    one = plan.serves_one_version(rows)
    ui.say(f"Fleet: release {fleet.rid}: " + ("every host succeeded" if code == 0 else f"NOT every host succeeded (exit code {code})")
           + ("; the fleet serves one version: " + rows[0].version if one else "; the fleet does NOT serve one known version"))
    return code


def raise_exit(code: int) -> None:
    if code:
        raise Exit(code=code)
