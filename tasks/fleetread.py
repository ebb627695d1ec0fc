"""`status`, `history`, `check-*`, `diagnose` and `smoke` on a stage with several HOSTS: every host
read at once, each in a thread of a ``concurrent.futures`` pool with its own SSH connection (as the
fleet deploy, tasks/fleet.py, whose signal handling it reuses). Each host's lines are held while
it runs and printed together, prefixed with ``[host]``, in HOSTS order; a host that cannot be
reached is one row of the result, the others are still read. The end: every failed host's error
block, a per-host table, one exit code (commands/fleetview.py); ``--json``: one document.
docs/fleets.md describes what each command does on a fleet."""
from __future__ import annotations

import dataclasses
import time
from concurrent import futures
from typing import Callable, Sequence

from invoke import Exit

from commands import fleetview
from commands.secrets import Redactor
from config import Settings
from tasks import hostpool as engine
from tasks import interrupts, ui
from tasks.base import begin, render_error
from tasks.errors import CommandFailed, DeployError, ExitCode
from tasks.session import Session
from tasks.ssh import connect


@dataclasses.dataclass
class HostReport:
    host: str
    code: int = 0
    found: object = None            # what the task's body returned (its data, for the table and --json)
    error: DeployError | None = None
    seconds: float | None = None
    held: list = dataclasses.field(default_factory=list)    # the host's lines, printed together
    session: Session | None = None
    interrupted: bool = False
    shown: bool = False


@dataclasses.dataclass(frozen=True)
class Across:
    """How a task reads a fleet: ``row`` gives the table's cells after host and result, from one
    host's report; ``body`` (default: the task's own body) runs on each host; ``document`` adds
    keys to the ``--json`` document; ``verdict`` gives lines said after the table (a split)."""
    headers: tuple[str, ...]
    row: Callable[[HostReport], list]
    body: Callable | None = None
    document: Callable[[list[HostReport]], dict] | None = None
    verdict: Callable[[list[HostReport]], list[str]] | None = None

    def with_body(self, body: Callable) -> "Across":
        return dataclasses.replace(self, body=body)

    def bind(self, fn: Callable) -> Callable:
        """The callable tasks/base.py runs for several HOSTS instead of the host-by-host loop."""
        body = self.body or fn

        def run(c, settings: Settings, why: str, hosts: Sequence[str], accept_new: bool, *args, **kwargs):
            read_fleet(c, settings, why, list(hosts), accept_new, self,
                       lambda s: body(s, *args, **kwargs), bool(kwargs.get("json")))
        return run


def read_host(c, settings: Settings, host: str, accept_new: bool, redactor: Redactor, body: Callable,
              report: HostReport) -> None:
    """One host, in a pool thread: connect, run the body, close; never raises."""
    ui.set_prefix(f"[{host}] ")
    ui.hold()
    t0 = time.monotonic()
    try:
        report.session = Session(settings, host, connect(c, host, settings, accept_new), dry=bool(c.config.run.dry),
                                 echo=bool(c.config.run.echo) or ui.OUT.level > 0, redactor=redactor, ctx=c)
        begin(report.session, t0)
        report.found = body(report.session)
    except DeployError as err:
        report.error = err
    except CommandFailed as failed:
        report.error = DeployError.from_command(failed, "a remote command failed")
    except Exception as exc:        # a bug, or the connection closed by an interrupt: this host only
        report.error = DeployError(f"unexpected error: {exc!r}", code=ExitCode.BUG)
    finally:
        if report.session is not None:
            report.session.close()
        report.code = int(report.error.code) if report.error else 0
        report.seconds = time.monotonic() - t0
        report.held = ui.release()
        ui.set_prefix("")


def read_fleet(c, settings: Settings, why: str, hosts: list[str], accept_new: bool, view: Across,
               body: Callable, json: bool) -> None:
    redactor = Redactor(settings.secret_key_pattern, settings.secrets)      # every host's secrets hidden everywhere
    ui.set_redactor(redactor)
    ui.say(f"stage: {settings.stage} ({why})   {len(hosts)} hosts, read at once: {', '.join(hosts)}"
           + ("   [dry run: nothing will be changed]" if c.config.run.dry else ""))
    reports = {h: HostReport(h) for h in hosts}
    pool = futures.ThreadPoolExecutor(max_workers=len(hosts))
    interrupt, pending = None, {}
    try:
        # A signal inside submit() would lose track of a started host: it is held back, and raised
        # when the `with` ends (so inside this try).
        with engine.deferred_signals():
            pending = {h: pool.submit(read_host, c, settings, h, accept_new, redactor, body, reports[h]) for h in hosts}
        show_in_order(hosts, pending, reports)
    except KeyboardInterrupt as exc:
        interrupt = exc
        stop_reading(reports, pending)
    pool.shutdown(wait=False)
    with interrupts.ignored():      # a second signal must not cut the table short
        code = conclude(settings, view, [reports[h] for h in hosts], interrupt, json)
    if code:
        raise Exit(code=code)


def show_in_order(hosts: list[str], pending: dict, reports: dict[str, HostReport]) -> None:
    """Each host's lines as soon as it and every host before it in HOSTS have ended."""
    for h in hosts:
        while not futures.wait([pending[h]], timeout=engine.WAKE_EVERY).done:
            pass
        show(reports[h])


def show(report: HostReport) -> None:
    if not report.shown:
        report.shown = True
        ui.replay(report.held)


def stop_reading(reports: dict[str, HostReport], pending: dict) -> None:
    """Ctrl-C/SIGTERM/SIGHUP: the hosts still being read are cut off (their connections closed, so
    their commands end now) and marked interrupted; reads change nothing, so nothing is cleaned up."""
    with interrupts.ignored():
        running = [h for h, f in pending.items() if not f.done()]
        for h in running:
            reports[h].interrupted = True
            if reports[h].session is not None:
                reports[h].session.close()
        engine.wait_all(list(pending.values()))
        for r in reports.values():
            show(r)


def conclude(settings: Settings, view: Across, reports: list[HostReport], interrupt, json: bool) -> int:
    for r in reports:
        if r.error is not None and not r.interrupted:
            render_error(r.error, settings, r.host, r.session)
    signal_code = int(interrupts.exit_code(interrupt)) if interrupt is not None else 0
    code = fleetview.exit_code([(r.host, r.code) for r in reports], signal_code)
    if json:
        ui.emit_json(document(settings, view, reports, code))
    ui.say("")
    ui.table([[r.host, fleetview.result_word(r.code, r.interrupted), *view.row(r),
               "-" if r.seconds is None else f"{r.seconds:.1f}"] for r in reports],
             ["host", "result", *view.headers, "seconds"])
    for line in view.verdict(reports) if view.verdict else []:
        ui.say(line)
    bad = [r.host for r in reports if r.code or r.interrupted]
    ui.say(f"Fleet: {len(reports)} hosts: " + ("every host ok" if not code else
           f"NOT every host ok: {', '.join(bad)} (exit code {code})"), keep=True)
    return code


def document(settings: Settings, view: Across, reports: list[HostReport], code: int) -> dict:
    """The one ``--json`` document of a fleet: ``hosts`` is a list in HOSTS order, each entry the
    single-host document with ``host``, ``ok``, ``exit_code`` and ``error`` (null, or the error block as data)."""
    hosts = []
    for r in reports:
        found = r.found if isinstance(r.found, dict) else {}
        hosts.append({**found, "host": r.host, "ok": r.code == 0 and not r.interrupted, "exit_code": r.code,
                      "interrupted": r.interrupted, "error": r.error.to_dict() if r.error else None})
    extra = view.document(reports) if view.document else {}
    return {"stage": settings.stage, "hosts": hosts, "exit_code": code, **extra}


# ---- the table cells of the plain checks -----------------------------------------------------------

def finding(r: HostReport) -> list:
    """check-*, diagnose, smoke: what the host's run concluded, in a few words."""
    if r.interrupted:
        return ["-"]
    if r.error is not None:
        return [ui.excerpt(r.error.what, 90)]
    return ["no problem found"]


CHECK = Across(("finding",), finding)
