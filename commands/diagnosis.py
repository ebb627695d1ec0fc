"""The runbook's Common Issues as rules: what the host shows (container states, ``docker stats``,
log lines, an HTTP probe) turned into findings that say what they mean and what to do.

Pure: tasks/diagnose.py reads the host, calls these, prints the findings and acts (only
``check-db --fix`` changes anything). The wording here is what the operator reads.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

from commands.docker import ContainerState, Stats, human_bytes
from commands.health import HttpCheck
from commands.secrets import excerpt
from commands.terminal import strip_controls

# The runbook's `docker compose logs backend | grep -E "Killed|Signal|Exit"`.
RESTART_PATTERN = re.compile(r"Killed|Signal|Exit", re.I)
RESTART_HEADERS = ["service", "status", "health", "restarts", "OOMKilled", "exit", "memory (use / limit)"]
MARKS = {"ok": "ok     ", "warn": "WARN   ", "problem": "PROBLEM"}
# A Python exception line, e.g. ``sqlalchemy.exc.OperationalError: ... Connection refused``.
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception)\b.*:")


@dataclass(frozen=True)
class Finding:
    check: str
    severity: str      # ok | warn | problem
    what: str
    meaning: str = ""
    action: str = ""


def render(findings: Sequence[Finding]) -> list[str]:
    """The lines the operator reads, one finding after the other."""
    out = []
    for f in findings:
        out.append(f"  [{MARKS[f.severity]}] {f.check}: {f.what}")
        if f.meaning:
            out.append(f"            means: {f.meaning}")
        if f.action:
            out.append(f"            do:    {f.action}")
    return out


def problems(findings: Sequence[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "problem"]


SUMMARY = "{what}: {n} problem(s) found: {listing}"
DIAGNOSE_SUMMARY = "{what} found {n} problem(s): {listing}"


def summary(what: str, found: Sequence[Finding], template: str = SUMMARY) -> str:
    """The error block's first line: how many problems, and each one (``found`` are the problems)."""
    return template.format(what=what, n=len(found), listing="; ".join(p.what for p in found))


def escalation_kind(found: Sequence[Finding]) -> str:
    """A database problem pages the DBA team; anything else the platform team."""
    return "database" if any(p.check == "database" for p in found) else "infrastructure"


# ---- restart loop ----------------------------------------------------------------------------------

def restart_row(c: ContainerState, m: Stats | None) -> list:
    mem = f"{human_bytes(m.mem_usage)} / {human_bytes(m.mem_limit)}" if m else "-"
    return [c.service, c.status, c.health or "-", c.restart_count, "yes" if c.oom_killed else "no", c.exit_code, mem]


def in_trouble(c: ContainerState) -> bool:
    """Restarting, restarted, OOM-killed, or neither running nor just created: worth its logs."""
    looping = c.status == "restarting" or c.restart_count > 0 or c.oom_killed
    return looping or c.status not in ("running", "created")


def restart_signals(lines: Sequence[str], keep: int = 5) -> list[str]:
    """The last log lines the runbook's grep would show."""
    return [line.strip() for line in lines if RESTART_PATTERN.search(line)][-keep:]


def restart_finding(c: ContainerState, *, context_key: str, compose_file: str, diagnose_cmd: str) -> Finding:
    """What a container in trouble (see :func:`in_trouble`) means; exit code 137 is SIGKILL, which
    is how the OOM killer ends a process even when Docker does not flag it."""
    if c.oom_killed or c.exit_code == 137:
        ctx = c.env.get(context_key)
        limit = human_bytes(c.memory_limit) if c.memory_limit else "none"
        return Finding(
            "restart loop", "problem",
            f"{c.service} was OOM-killed (exit code {c.exit_code}), restarted {c.restart_count} times; memory limit {limit}"
            + (f"; {context_key}={ctx}" if ctx else ""),
            "the container needs more memory than its limit allows, so the kernel kills it and Docker restarts it",
            f"raise mem_limit for {c.service} in {compose_file}" + (f" or reduce {context_key}" if ctx else "")
            + ", then redeploy (fab deploy)")
    if c.status in ("exited", "dead"):
        return Finding("restart loop", "problem", f"{c.service} is {c.status} with exit code {c.exit_code}",
                       "the process stopped and Docker is not restarting it",
                       f"read its logs ({diagnose_cmd} shows the last lines); start it with docker compose up -d {c.service}")
    return Finding("restart loop", "problem" if c.status == "restarting" else "warn",
                   f"{c.service}: status {c.status}, {c.restart_count} restarts, last exit code {c.exit_code}",
                   "the process keeps exiting; Docker restarts it (restart policy)",
                   "read the log lines below for the cause")


NO_RESTARTS = Finding("restart loop", "ok", "no container is restarting, OOM-killed or exited")


# ---- database connection -------------------------------------------------------------------------

def describe(c: ContainerState | None) -> str:
    return "no container" if c is None else f"{c.status}, health {c.health or 'n/a'}, {c.restart_count} restarts"


def postgres_healthy(pg: ContainerState | None) -> bool:
    return pg is not None and pg.status == "running" and pg.health in (None, "healthy")


def fix_needs_up(pg: ContainerState | None) -> bool:
    """A missing or stopped postgres is started (``up -d``); a running but sick one restarted."""
    return pg is None or pg.status in ("exited", "created", "dead")


def fix_verb(pg: ContainerState | None) -> str:
    return "starting" if pg is None or pg.status != "running" else "restarting"


def postgres_finding(service: str, pg: ContainerState | None, fix_cmd: str) -> Finding:
    if postgres_healthy(pg):
        return Finding("database", "ok", f"{service} is {describe(pg)}")
    return Finding("database", "problem", f"{service} is {describe(pg)}",
                   "the backend cannot reach the database: requests fail with 'connection refused'",
                   f"{fix_cmd}  (restarts {service}; data is in its volume)")


def fixed_finding(service: str, was: str) -> Finding:
    return Finding("database", "ok", f"{service} was {was}; restarted and now healthy")


def connection_detail(exit_code: int, lines: Sequence[str]) -> str:
    """Why the connection check failed: the exception line of a traceback (its last line is often
    a pointer to the library's docs), else the last line of output."""
    out = [line for line in lines if line.strip()]
    for line in reversed(out):
        if EXCEPTION_LINE.match(line.strip()):
            return line.strip()
    return out[-1] if out else f"exit code {exit_code}"


def connection_finding(backend: str, postgres: str, ok: bool, detail: str) -> Finding:
    if ok:
        return Finding("database", "ok", f"connection from {backend}: {detail}")
    return Finding("database", "problem", f"connection from {backend} failed: {detail}",
                   "the application cannot use the database",
                   f"check DATABASE_URL in the env file and {postgres}'s logs; escalate to the DBA team if data looks damaged")


def backend_not_running(backend: str) -> str:
    return f"{backend} is not running, so the connection from it cannot be tested"


# ---- model server timeout ---------------------------------------------------------------------------

def memory_use(m: Stats | None) -> str:
    return f"{human_bytes(m.mem_usage)} of {human_bytes(m.mem_limit)} ({m.mem_percent:.0f}%)" if m else "n/a"


def model_line(c: ContainerState, m: Stats | None, context_key: str) -> str:
    """The model server's one-line state, printed before the findings."""
    return (f"{c.service}: {c.status}, health {c.health or 'n/a'}, memory {memory_use(m)}, "
            f"{context_key}={c.env.get(context_key, 'not set')}")


def model_findings(c: ContainerState | None, m: Stats | None, probe: HttpCheck | None, *, service: str,
                   context_key: str, compose_file: str, redact: Callable[[str], str] | None = None) -> list[Finding]:
    """The runbook's "Model server timeout": OOM kills, memory close to the limit, a failing
    healthcheck, a health URL that hangs; each with the CONTEXT_SIZE advice. ``probe`` is the
    health URL's answer (None when not asked)."""
    if c is None:
        return [Finding("model server", "warn", f"no {service} container")]
    ctx = c.env.get(context_key, "not set")
    advice = (f"If OOM, increase the memory limit or reduce the context size: edit {context_key} "
              f"(now {ctx}) or mem_limit for {service} in {compose_file}, then redeploy")
    findings = []
    if c.oom_killed:
        findings.append(Finding("model server", "problem", f"{service} was OOM-killed with {context_key}={ctx} ({c.restart_count} restarts)",
                                "its memory need at this context size exceeds the limit", advice))
    elif m and m.mem_percent >= 90:
        findings.append(Finding("model server", "warn", f"{service} uses {m.mem_percent:.0f}% of its memory limit ({context_key}={ctx})",
                                "close to being OOM-killed; requests may slow down", advice))
    if c.health == "unhealthy":
        said = excerpt(strip_controls(c.health_log[-1]), 160, redact) if c.health_log else "no output"
        findings.append(Finding("model server", "problem", f"{service} is unhealthy: {said}",
                                "its healthcheck fails: requests to it hang or error", advice))
    if probe is not None and not probe.ok:
        findings.append(Finding("model server", "problem", f"{probe.url}: {probe.error}",
                                "requests hang and eventually time out (runbook symptom)", advice))
    if not findings:
        findings.append(Finding("model server", "ok", f"{service} healthy, memory {memory_use(m)}, {context_key}={ctx}"
                                + (f", answered in {probe.seconds:.2f} s" if probe else "")))
    return findings
