"""Common Issues: restart loop, database connection failures, model server timeout.

Each check reads the host, turns what it saw into findings (the rules and their wording:
commands/diagnosis.py) and prints them; ``fab diagnose`` runs all three (check-db without
fixing). Only ``check-db --fix`` changes anything (starts or restarts postgres, under the lock).
"""
from __future__ import annotations

from commands import diagnosis
from commands import docker as docker_cmd
from commands.diagnosis import Finding
from tasks import messages, slotstate, ui
from tasks.base import operator_task
from tasks.errors import CommandFailed, DeployError, ExitCode
from tasks.fleetread import CHECK
from tasks.hoststate import container_of, containers, http_check, logs_tail, wait_ready
from tasks.locking import DeployLock
from tasks.session import Session


def render(findings: list[Finding]) -> None:
    for line in diagnosis.render(findings):
        ui.say(line)


def stats_by_name(s: Session, names: list[str]) -> dict[str, docker_cmd.Stats]:
    if not names:
        return {}
    r = s.run(docker_cmd.stats(names), check=False, timeout=30)
    return {st.name: st for st in docker_cmd.parse_stats(r.stdout)}


def log_lines(s: Session, service: str, lines: int) -> list[str]:
    """The service's last log lines, redacted whole before they are split."""
    return ui.lines(logs_tail(s, service, lines), s.redactor)


def say_log(s: Session, service: str, line: str) -> None:
    ui.say(f"      {service} log: {ui.excerpt(line, 160, s.redactor)}")


# ---- restart loop ----------------------------------------------------------------------------------

def check_restart_loop(s: Session) -> list[Finding]:
    st = s.settings
    states = sorted(containers(s, [], env_keys=[st.model_context_key]), key=lambda c: c.service)
    stats = stats_by_name(s, [c.name for c in states if c.status == "running"])
    findings = []
    for c in states:
        if not diagnosis.in_trouble(c):
            continue
        signals = diagnosis.restart_signals(log_lines(s, c.service, 200))
        findings.append(diagnosis.restart_finding(c, context_key=st.model_context_key, compose_file=st.compose_file,
                                                  diagnose_cmd=messages.diagnose(s.host)))
        for line in signals:
            say_log(s, c.service, line)
    ui.table([diagnosis.restart_row(c, stats.get(c.name)) for c in states], diagnosis.RESTART_HEADERS)
    return findings or [diagnosis.NO_RESTARTS]


# ---- database connection -------------------------------------------------------------------------

def postgres_state(s: Session):
    return container_of(s, s.settings.postgres_service)


def backend_db_check(s: Session) -> tuple[bool, str]:
    st = s.settings
    backend = [c for c in containers(s, [st.backend_service]) if c.status == "running"]
    if not backend:
        return False, diagnosis.backend_not_running(st.backend_service)
    r = s.run(s.compose.exec_sh(slotstate.exec_service(s), st.db_check_command), check=False, timeout=60)
    if r.ok:
        return True, "connected"
    return False, diagnosis.connection_detail(r.exited, ui.lines(r.stdout + r.stderr, s.redactor))


def fix_postgres(s: Session, pg) -> None:
    """Start a stopped postgres (restart a sick one) and wait until it is healthy."""
    st = s.settings
    ui.say(f"      --fix: {diagnosis.fix_verb(pg)} {st.postgres_service}")
    services = [st.postgres_service]
    cmd = s.compose.up(services) if diagnosis.fix_needs_up(pg) else s.compose.restart(services)
    try:
        s.run(cmd, timeout=st.up_timeout, mutating=True)
        wait_ready(s, services, st.db_ready_timeout, what=f"{st.postgres_service} did not become healthy after the restart",
                   step="check-db › fix", next_step="escalate to the DBA team with the postgres logs above")
    except CommandFailed as failed:
        raise DeployError.from_command(failed, f"restarting {st.postgres_service} failed", step="check-db › fix",
                                       kind="database", state=s.describe_state("postgres is down"),
                                       next_step="escalate to the DBA team with the logs above") from None
    except DeployError as err:
        err.kind = "database"       # its Next line sends the operator to the DBA team: so must Escalate
        raise


def check_database(s: Session, fix: bool = False) -> list[Finding]:
    st = s.settings
    pg = postgres_state(s)
    state = diagnosis.describe(pg)
    ui.say(f"      {st.postgres_service}: {state}")
    for line in log_lines(s, st.postgres_service, 15)[-8:]:
        say_log(s, st.postgres_service, line)
    if fix and not diagnosis.postgres_healthy(pg):
        fix_postgres(s, pg)
        findings = [diagnosis.fixed_finding(st.postgres_service, state)]
    else:
        findings = [diagnosis.postgres_finding(st.postgres_service, pg, messages.check_db(s.host, fix=True))]
    ok, detail = backend_db_check(s)
    findings.append(diagnosis.connection_finding(st.backend_service, st.postgres_service, ok, detail))
    return findings


# ---- model server timeout ---------------------------------------------------------------------------

def check_model(s: Session) -> list[Finding]:
    st = s.settings
    svc = st.model_server_service
    found = containers(s, [svc], env_keys=[st.model_context_key])
    c = found[0] if found else None
    running = c is not None and c.status == "running"
    m = stats_by_name(s, [c.name]).get(c.name) if running else None
    if c is not None:
        ui.say(f"      {diagnosis.model_line(c, m, st.model_context_key)}")
        for line in log_lines(s, svc, 200)[-8:]:
            say_log(s, svc, line)
    probe = http_check(s, st.model_health_url, timeout=5) if running and st.model_health_url else None
    return diagnosis.model_findings(c, m, probe, service=svc, context_key=st.model_context_key,
                                    compose_file=st.compose_file, redact=s.redactor)


# ---- tasks ----------------------------------------------------------------------------------------------

def conclude(findings: list[Finding], s: Session, what: str, kind: str | None = None,
             template: str = diagnosis.SUMMARY) -> None:
    """Exit 3 with the first problem's action as the next step, or say nothing was found."""
    found = diagnosis.problems(findings)
    if found:
        raise DeployError(diagnosis.summary(what, found, template), code=ExitCode.STEP_FAILED,
                          kind=kind or diagnosis.escalation_kind(found), state=s.describe_state("see the findings above"),
                          next_step=found[0].action or messages.status(s.host))
    ui.say(f"{what}: no problem found")


@operator_task(fleet=CHECK)
def check_restarts(s: Session):
    """Common issue: restart loop (restart counts, OOMKilled, exit codes, Killed|Signal|Exit log lines, docker stats)."""
    findings = check_restart_loop(s)
    render(findings)
    conclude(findings, s, "restart loop check", kind="infrastructure")


@operator_task(fleet=CHECK, help={"fix": "restart postgres if it is not healthy, then test the connection again"})
def check_db(s: Session, fix=False):
    """Common issue: database connection failures (postgres state and logs, connection from the backend); --fix restarts postgres."""
    if fix:
        with DeployLock(s, "check-db --fix"):
            findings = check_database(s, fix=True)
    else:
        findings = check_database(s, fix=False)
    render(findings)
    conclude(findings, s, "database check", kind="database")


@operator_task(fleet=CHECK)
def check_model_server(s: Session):
    """Common issue: model server timeout (memory use vs limit, last log lines, CONTEXT_SIZE advice)."""
    findings = check_model(s)
    render(findings)
    conclude(findings, s, "model server check", kind="infrastructure")


@operator_task(fleet=CHECK)
def diagnose(s: Session):
    """All Common Issues in one report: restart loop, database connection (no fix), model server timeout."""
    findings = []
    for title, check in (("restart loop", check_restart_loop), ("database connection", check_database),
                         ("model server timeout", check_model)):
        ui.say(f"== {title} ==")
        found = check(s)
        render(found)
        findings += found
    conclude(findings, s, "diagnose", template=diagnosis.DIAGNOSE_SUMMARY)
