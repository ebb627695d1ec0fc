"""Runbook 4. Verify deployment: smoke tests (curl on the host, optionally also from the operator's
machine), a scan of recent logs for error patterns, and the monitoring dashboard link."""
from __future__ import annotations

import re

from commands import docker as docker_cmd
from commands import health as health_cmd
from tasks import messages, slotstate, ui, web
from tasks.base import operator_task
from tasks.errors import CommandFailed, DeployError, ExitCode
from tasks.fleetread import CHECK
from tasks.hoststate import http_check, inspect_ids, last_inspected, observe
from tasks.session import Session
from tasks.steps import RunOptions


def smoke_checks(s: Session, *, step: str = "verify › smoke") -> list[health_cmd.HttpCheck]:
    """Every SMOKE_URL must answer 2xx. Raises DeployError(UNHEALTHY) listing every failure."""
    st = s.settings
    if s.dry:
        for url in st.smoke_urls:
            ui.say(f"[dry] would check {url}: {health_cmd.curl(url, st.smoke_timeout)}")
        return []
    checks = [(where, url) for url in st.smoke_urls for where in ("host", "operator") if where == "host" or st.smoke_from_operator]
    results = list(zip([w for w, _ in checks], s.concurrently(*(
        (lambda url=url: http_check(s, url)) if where == "host" else
        (lambda url=url: operator_check(url, st.smoke_timeout, s.request)) for where, url in checks))))
    rows = [[where, c.url, c.status or "-", f"{c.seconds:.3f}", "ok" if c.ok else f"FAIL: {c.error}"] for where, c in results]
    ui.table(rows, ["from", "url", "status", "seconds", "result"])
    failed = [(w, c) for w, c in results if not c.ok]
    if failed:
        raise DeployError(
            f"{len(failed)} smoke test(s) failed: " + "; ".join(f"{c.url} from the {w}: {c.error}" for w, c in failed),
            command=health_cmd.curl(failed[0][1].url, st.smoke_timeout), output=failed[0][1].body,
            step=step, code=ExitCode.UNHEALTHY, state=s.describe_state(),
            next_step=f"{messages.diagnose(s.host)}   (and {messages.fab(s.host, 'rollback')} if the new version is at fault)")
    return [c for _, c in results]


def operator_check(url: str, timeout: float, request=None) -> health_cmd.HttpCheck:
    """The same URL requested from the operator's machine (requests): is it reachable from outside?
    ``request`` is the session's (Session.request), so ``fab plan`` records it instead."""
    a = (request or web.request)("GET", url, deadline=timeout)
    if a.error:
        return health_cmd.HttpCheck(url, False, 0, a.seconds, a.error)
    return health_cmd.HttpCheck(url, a.ok, a.status, a.seconds, "" if a.ok else f"HTTP {a.status}", ui.excerpt(a.body, 2000))


def log_tails(s: Session, services: list[str], tail: int) -> list[tuple[str, str]]:
    """(service, its last ``tail`` log lines) for each service. Once the Compose project is known
    (its containers found by label): ``docker logs`` of every container of these services in ONE
    round trip, no Compose start (v1: three concurrent ``compose logs`` took ~0.95 s on 2 cores);
    otherwise one ``compose logs`` per service, at once."""
    if s.settings.compose_project or s.state.compose_project:
        # The containers as the health wait's last inspect read them just now (else one inspect): the IDs to read.
        states = [c for c in (last_inspected(s, services) or inspect_ids(s, services)) if c.service in services]
        mark = "@@logs-" + s.run_tag
        r = s.run(docker_cmd.logs_of([c.id for c in states], tail, mark), check=False)
        texts = docker_cmd.parse_logs_of(r.stdout, mark)
        return [(svc, "\n".join(texts.get(c.id, "") for c in states if c.service == svc)) for svc in services]
    tails = s.concurrently(*(lambda svc=svc: s.run(s.compose.logs(svc, tail), check=False) for svc in services))
    return [(svc, r.stdout + "\n" + r.stderr) for svc, r in zip(services, tails)]


def deployed_log_tails(s: Session) -> list[tuple[str, str]]:
    """The last LOG_TAIL log lines of each deployed service (blue/green: of the serving slot;
    `logs backend` read the old slot the switch had stopped)."""
    st = s.settings
    backend = slotstate.exec_service(s) if slotstate.enabled(s) else st.backend_service
    return log_tails(s, [backend if svc == st.backend_service else svc for svc in st.services], st.log_tail)


def scan_logs(s: Session, tails: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    """Lines of the last LOG_TAIL log lines of each deployed service that match LOG_ERROR_PATTERN
    (``tails``: those lines, read already)."""
    st = s.settings
    pattern = re.compile(st.log_error_pattern)
    findings = []
    for svc, text in deployed_log_tails(s) if tails is None else tails:
        # Redacted whole before it is split into lines and each line is cut (see ui.excerpt).
        for line in ui.lines(text, s.redactor):
            if pattern.search(line):
                findings.append((svc, ui.excerpt(line.strip(), 200, s.redactor)))
    if findings:
        ui.warn(f"{len(findings)} log line(s) match LOG_ERROR_PATTERN in the last {st.log_tail} lines:")
        for svc, line in findings[-15:]:
            ui.say(f"        {svc}: {line}")
    else:
        ui.say(f"      logs: no line matches the error pattern in the last {st.log_tail} lines of {', '.join(st.services)}")
    return findings


def monitoring_link(s: Session) -> None:
    if s.settings.monitoring_url:
        ui.say(f"      monitoring: {s.settings.monitoring_url}  (open it and watch error rate and latency for 15 minutes)")


LOG_TAILS, SERVING = "verify: log tails", "verify: what serves"


def verify_step(s: Session, opts: RunOptions | None = None) -> None:
    deploy = opts is not None and opts.kind == "deploy"
    if deploy:
        # The log scan's reads, and what this deploy leaves serving (cached until a change, so the
        # end records it without reading again), begin with the smoke checks: all are reads.
        s.prefetch(LOG_TAILS, lambda: deployed_log_tails(s))
        s.prefetch(SERVING, lambda: _observe_quietly(s))
    try:
        with s.timed("verify", "smoke"):
            smoke_checks(s)
        with s.timed("verify", "logs"):
            if deploy:
                scan_logs(s, s.fetched(LOG_TAILS, lambda: deployed_log_tails(s)))
                s.fetched(SERVING, lambda: _observe_quietly(s))
            else:
                scan_logs(s)
    except BaseException:     # a failed smoke check, or Ctrl-C/SIGTERM while the log tails are awaited
        if deploy:
            s.settle_prefetches()     # ended before the failure is handled: a rollback changes what they read
            s.state.observed = None   # a read it stopped halfway says nothing: the end reads again
        raise
    monitoring_link(s)


def _observe_quietly(s: Session) -> None:
    """The end reads it again, and says why it cannot, if this read fails."""
    try:
        observe(s)
    except (CommandFailed, DeployError):
        s.state.observed = None


@operator_task(fleet=CHECK)
def smoke(s: Session):
    """Smoke tests: each SMOKE_URL must answer 2xx (curl on the host, and from here if configured)."""
    smoke_checks(s, step="smoke")
    ui.say("smoke tests passed")


@operator_task()
def verify(s: Session):
    """Runbook 4: smoke tests, scan recent logs for error patterns, monitoring dashboard link."""
    with s.timed("verify"):
        verify_step(s)
    ui.say("verify passed")
