"""Common Issues: restart loop, database connection failures, model server timeout.

Each check prints findings that say what they mean and what to do; ``fab diagnose`` runs all
three (check-db without fixing). Only ``check-db --fix`` changes anything (restarts postgres).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from commands import docker as docker_cmd
from tasks import messages, ui
from tasks.base import operator_task
from tasks.errors import CommandFailed, DeployError, ExitCode
from tasks.hoststate import container_of, containers, http_check, logs_tail, wait_ready
from tasks.locking import DeployLock
from tasks.session import Session

RESTART_PATTERN = re.compile(r"Killed|Signal|Exit", re.I)      # the runbook's grep -E "Killed|Signal|Exit"


@dataclass
class Finding:
    check: str
    severity: str      # ok | warn | problem
    what: str
    meaning: str = ""
    action: str = ""


def render(findings: list[Finding]) -> None:
    for f in findings:
        mark = {"ok": "ok     ", "warn": "WARN   ", "problem": "PROBLEM"}[f.severity]
        ui.say(f"  [{mark}] {f.check}: {f.what}")
        if f.meaning:
            ui.say(f"            means: {f.meaning}")
        if f.action:
            ui.say(f"            do:    {f.action}")


def stats_by_name(s: Session, names: list[str]) -> dict[str, docker_cmd.Stats]:
    if not names:
        return {}
    r = s.run(docker_cmd.stats(names), check=False, timeout=30)
    return {st.name: st for st in docker_cmd.parse_stats(r.stdout)}


# ---- restart loop ----------------------------------------------------------------------------------

def check_restart_loop(s: Session) -> list[Finding]:
    st = s.settings
    states = containers(s, [], env_keys=[st.model_context_key])
    stats = stats_by_name(s, [c.name for c in states if c.status == "running"])
    rows, findings = [], []
    for c in sorted(states, key=lambda c: c.service):
        m = stats.get(c.name)
        mem = f"{docker_cmd.human_bytes(m.mem_usage)} / {docker_cmd.human_bytes(m.mem_limit)}" if m else "-"
        rows.append([c.service, c.status, c.health or "-", c.restart_count, "yes" if c.oom_killed else "no", c.exit_code, mem])
        looping = c.status == "restarting" or c.restart_count > 0 or c.oom_killed
        if not looping and c.status in ("running", "created"):
            continue
        logs = logs_tail(s, c.service, 200)
        signals = [ui.excerpt(l.strip(), 160, s.redactor)
                   for l in ui.lines(logs, s.redactor) if RESTART_PATTERN.search(l)][-5:]
        if c.oom_killed or c.exit_code == 137:
            ctx = c.env.get(st.model_context_key)
            findings.append(Finding(
                "restart loop", "problem",
                f"{c.service} was OOM-killed (exit code {c.exit_code}), restarted {c.restart_count} times; memory limit {docker_cmd.human_bytes(c.memory_limit) if c.memory_limit else 'none'}"
                + (f"; {st.model_context_key}={ctx}" if ctx else ""),
                "the container needs more memory than its limit allows, so the kernel kills it and Docker restarts it",
                f"raise mem_limit for {c.service} in {st.compose_file}" + (f" or reduce {st.model_context_key}" if ctx else "") + ", then redeploy (fab deploy)"))
        elif c.status in ("exited", "dead"):
            findings.append(Finding("restart loop", "problem", f"{c.service} is {c.status} with exit code {c.exit_code}",
                                    "the process stopped and Docker is not restarting it",
                                    f"read its logs ({messages.diagnose(s.host)} shows the last lines); start it with docker compose up -d {c.service}"))
        else:
            findings.append(Finding("restart loop", "problem" if c.status == "restarting" else "warn",
                                    f"{c.service}: status {c.status}, {c.restart_count} restarts, last exit code {c.exit_code}",
                                    "the process keeps exiting; Docker restarts it (restart policy)",
                                    "read the log lines below for the cause"))
        for line in signals:
            ui.say(f"      {c.service} log: {line}")
    ui.table(rows, ["service", "status", "health", "restarts", "OOMKilled", "exit", "memory (use / limit)"])
    if not findings:
        findings.append(Finding("restart loop", "ok", "no container is restarting, OOM-killed or exited"))
    return findings


# ---- database connection -------------------------------------------------------------------------

def postgres_state(s: Session):
    return container_of(s, s.settings.postgres_service)


def backend_db_check(s: Session) -> tuple[bool, str]:
    st = s.settings
    backend = [c for c in containers(s, [st.backend_service]) if c.status == "running"]
    if not backend:
        return False, f"{st.backend_service} is not running, so the connection from it cannot be tested"
    r = s.run(s.compose.exec_sh(st.backend_service, st.db_check_command), check=False, timeout=60)
    out = [l for l in ui.lines(r.stdout + r.stderr, s.redactor) if l.strip()]
    return r.ok, ("connected" if r.ok else (out[-1] if out else f"exit code {r.exited}"))


def check_database(s: Session, fix: bool = False) -> list[Finding]:
    st = s.settings
    findings = []
    pg = postgres_state(s)
    state = "no container" if pg is None else f"{pg.status}, health {pg.health or 'n/a'}, {pg.restart_count} restarts"
    ui.say(f"      {st.postgres_service}: {state}")
    for line in ui.lines(logs_tail(s, st.postgres_service, 15), s.redactor)[-8:]:
        ui.say(f"      {st.postgres_service} log: {ui.excerpt(line, 160, s.redactor)}")
    healthy = pg is not None and pg.status == "running" and pg.health in (None, "healthy")
    if not healthy:
        if fix:
            ui.say(f"      --fix: {'starting' if pg is None or pg.status != 'running' else 'restarting'} {st.postgres_service}")
            cmd = s.compose.up([st.postgres_service]) if pg is None or pg.status in ("exited", "created", "dead") \
                else s.compose.restart([st.postgres_service])
            try:
                s.run(cmd, timeout=st.up_timeout, mutating=True)
                wait_ready(s, [st.postgres_service], st.db_ready_timeout, what=f"{st.postgres_service} did not become healthy after the restart",
                           step="check-db › fix", next_step="escalate to the DBA team with the postgres logs above")
            except CommandFailed as failed:
                raise DeployError.from_command(failed, f"restarting {st.postgres_service} failed", step="check-db › fix",
                                               kind="database", state=s.describe_state("postgres is down"),
                                               next_step="escalate to the DBA team with the logs above") from None
            findings.append(Finding("database", "ok", f"{st.postgres_service} was {state}; restarted and now healthy"))
        else:
            findings.append(Finding("database", "problem", f"{st.postgres_service} is {state}",
                                    "the backend cannot reach the database: requests fail with 'connection refused'",
                                    f"{messages.check_db(s.host, fix=True)}  (restarts {st.postgres_service}; data is in its volume)"))
    else:
        findings.append(Finding("database", "ok", f"{st.postgres_service} is {state}"))
    ok, detail = backend_db_check(s)
    if ok:
        findings.append(Finding("database", "ok", f"connection from {st.backend_service}: {detail}"))
    else:
        findings.append(Finding("database", "problem", f"connection from {st.backend_service} failed: {detail}",
                                "the application cannot use the database",
                                f"check DATABASE_URL in the env file and {st.postgres_service}'s logs; escalate to the DBA team if data looks damaged"))
    return findings


# ---- model server timeout ---------------------------------------------------------------------------

def check_model(s: Session) -> list[Finding]:
    st = s.settings
    svc = st.model_server_service
    found = containers(s, [svc], env_keys=[st.model_context_key])
    if not found:
        return [Finding("model server", "warn", f"no {svc} container")]
    c = found[0]
    findings = []
    ctx = c.env.get(st.model_context_key, "not set")
    stats = stats_by_name(s, [c.name]) if c.status == "running" else {}
    m = stats.get(c.name)
    usage = f"{docker_cmd.human_bytes(m.mem_usage)} of {docker_cmd.human_bytes(m.mem_limit)} ({m.mem_percent:.0f}%)" if m else "n/a"
    ui.say(f"      {svc}: {c.status}, health {c.health or 'n/a'}, memory {usage}, {st.model_context_key}={ctx}")
    for line in ui.lines(logs_tail(s, svc, 200), s.redactor)[-8:]:
        ui.say(f"      {svc} log: {ui.excerpt(line, 160, s.redactor)}")
    advice = (f"If OOM, increase the memory limit or reduce the context size: edit {st.model_context_key} "
              f"(now {ctx}) or mem_limit for {svc} in {st.compose_file}, then redeploy")
    if c.oom_killed:
        findings.append(Finding("model server", "problem", f"{svc} was OOM-killed with {st.model_context_key}={ctx} ({c.restart_count} restarts)",
                                "its memory need at this context size exceeds the limit", advice))
    elif m and m.mem_percent >= 90:
        findings.append(Finding("model server", "warn", f"{svc} uses {m.mem_percent:.0f}% of its memory limit ({st.model_context_key}={ctx})",
                                "close to being OOM-killed; requests may slow down", advice))
    health = [h for h in (c.health_log or ())]
    if c.health == "unhealthy":
        findings.append(Finding("model server", "problem", f"{svc} is unhealthy: {ui.excerpt(health[-1], 160, s.redactor) if health else 'no output'}",
                                "its healthcheck fails: requests to it hang or error", advice))
    probe = None
    url = st.model_health_url
    if url and c.status == "running":
        probe = http_check(s, url, timeout=5)
        if not probe.ok:
            findings.append(Finding("model server", "problem", f"{url}: {probe.error}",
                                    "requests hang and eventually time out (runbook symptom)", advice))
    if not findings:
        findings.append(Finding("model server", "ok", f"{svc} healthy, memory {usage}, {st.model_context_key}={ctx}"
                                + (f", answered in {probe.seconds:.2f} s" if probe else "")))
    return findings


# ---- tasks ----------------------------------------------------------------------------------------------

def _conclude(findings: list[Finding], s: Session, what: str, kind: str = "infrastructure") -> None:
    render(findings)
    problems = [f for f in findings if f.severity == "problem"]
    if problems:
        raise DeployError(f"{what}: {len(problems)} problem(s) found: " + "; ".join(p.what for p in problems),
                          code=ExitCode.STEP_FAILED, kind=kind, state=s.describe_state("see the findings above"),
                          next_step=problems[0].action or messages.status(s.host))
    ui.say(f"{what}: no problem found")


@operator_task()
def check_restarts(s: Session):
    """Common issue: restart loop (restart counts, OOMKilled, exit codes, Killed|Signal|Exit log lines, docker stats)."""
    _conclude(check_restart_loop(s), s, "restart loop check")


@operator_task(help={"fix": "restart postgres if it is not healthy, then test the connection again"})
def check_db(s: Session, fix=False):
    """Common issue: database connection failures (postgres state and logs, connection from the backend); --fix restarts postgres."""
    if fix:
        with DeployLock(s, "check-db --fix"):
            findings = check_database(s, fix=True)
    else:
        findings = check_database(s, fix=False)
    _conclude(findings, s, "database check", kind="database")


@operator_task()
def check_model_server(s: Session):
    """Common issue: model server timeout (memory use vs limit, last log lines, CONTEXT_SIZE advice)."""
    _conclude(check_model(s), s, "model server check")


@operator_task()
def diagnose(s: Session):
    """All Common Issues in one report: restart loop, database connection (no fix), model server timeout."""
    findings = []
    ui.say("== restart loop ==")
    f = check_restart_loop(s)
    render(f)
    findings += f
    ui.say("== database connection ==")
    f = check_database(s, fix=False)
    render(f)
    findings += f
    ui.say("== model server timeout ==")
    f = check_model(s)
    render(f)
    findings += f
    problems = [x for x in findings if x.severity == "problem"]
    if problems:
        kind = "database" if any(p.check == "database" for p in problems) else "infrastructure"
        raise DeployError(f"diagnose found {len(problems)} problem(s): " + "; ".join(p.what for p in problems),
                          code=ExitCode.STEP_FAILED, kind=kind, state=s.describe_state("see the findings above"),
                          next_step=problems[0].action or messages.status(s.host))
    ui.say("diagnose: no problem found")
