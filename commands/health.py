"""Is it serving? Container readiness from ``docker inspect`` and HTTP checks with curl on the host.

Runbook note 4: ``curl -f`` right after ``up -d`` races the container start, so both are polled
until ready or a deadline passes; the judgement of one poll is made here, purely.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Sequence

from commands.docker import ContainerState
from commands.secrets import excerpt
from commands.shell import check_path, check_url, q, whole_seconds


@dataclass
class Readiness:
    ready: bool
    failed: bool                       # a definitive failure: waiting longer will not help
    waiting: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def evaluate(services: Sequence[str], states: Sequence[ContainerState],
             restart_baseline: Mapping[str, int] | None = None,
             redact: Callable[[str], str] | None = None) -> Readiness:
    """Judge one poll. Every service needs a running container, healthy where it has a healthcheck.

    Definitive failures: ``unhealthy`` (Docker already counted its retries), exited or dead,
    restarting, OOM-killed, or a restart count that grew since ``up``. ``redact`` is applied to
    the healthcheck output before it is cut (a cut secret would no longer be matched).
    """
    baseline = restart_baseline or {}
    by_service: dict[str, list[ContainerState]] = {}
    for s in states:
        by_service.setdefault(s.service, []).append(s)
    waiting, problems = [], []
    for svc in services:
        containers = by_service.get(svc, [])
        if not containers:
            waiting.append(f"{svc}: no container yet")
            continue
        for c in containers:
            label = f"{svc} ({c.name})"
            if c.oom_killed:
                problems.append(f"{label}: OOM-killed (memory limit {c.memory_limit // (1024 * 1024)} MiB), restarted {c.restart_count} times")
            elif c.status == "restarting" or c.restart_count > baseline.get(c.id, c.restart_count):
                problems.append(f"{label}: restart loop (status {c.status}, exit code {c.exit_code}, {c.restart_count} restarts)")
            elif c.status in ("exited", "dead"):
                problems.append(f"{label}: {c.status} with exit code {c.exit_code}")
            elif c.status != "running":
                waiting.append(f"{label}: {c.status}")
            elif c.health == "unhealthy":
                last = c.health_log[-1] if c.health_log else "no healthcheck output"
                problems.append(f"{label}: unhealthy; last healthcheck said: {excerpt(last, 200, redact)}")
            elif c.health == "starting":
                waiting.append(f"{label}: health starting")
    return Readiness(ready=not waiting and not problems, failed=bool(problems), waiting=waiting, problems=problems)


def evaluate_http_first(services: Sequence[str], states: Sequence[ContainerState], http_service: str, http_ok: bool,
                        restart_baseline: Mapping[str, int] | None = None,
                        redact: Callable[[str], str] | None = None) -> Readiness:
    """:func:`evaluate`, except that ``http_service`` whose healthcheck is still ``starting`` counts as
    healthy when its own health URL answered 2xx in the same poll (``http_ok``), its container running.

    Docker reports ``healthy`` only after the healthcheck interval (2 s on staging) although the app
    answered ~0.1 s after ``up``. The containers are those listed after ``up -d`` returned (the old
    one is stopped by then), so the answer is the new container's. Every failure still counts:
    ``unhealthy``, exited, OOM-killed, restarting."""
    def waived(c: ContainerState) -> ContainerState:
        if http_ok and c.service == http_service and c.status == "running" and c.health == "starting":
            return replace(c, health="healthy")
        return c
    return evaluate(services, [waived(c) for c in states], restart_baseline, redact)


CURL_WRITE_OUT = "\\n@@status %{http_code} %{time_total}"
BODY_LIMIT = 2000
BODY_CUT = "[... start of the body cut ...]"


def curl(url: str, timeout: float) -> str:
    """One HTTP GET; prints the end of the body, then ``@@status <code> <seconds>`` on its own line.

    A body longer than BODY_LIMIT bytes is cut on the host at a LINE boundary: the window's first,
    partial line is dropped (and BODY_CUT printed instead), because a secret cut in half there
    would no longer be recognised by the redactor, and its second half would be printed."""
    # Captured in a variable, not piped, so the exit status stays curl's (sh has no pipefail).
    return (f"out=$(curl -sS -w {q(CURL_WRITE_OUT)} --max-time {whole_seconds(timeout)} {q(check_url(url))}); "
            f"rc=$?; if [ \"$(printf '%s\\n' \"$out\" | wc -c)\" -le {BODY_LIMIT} ]; then printf '%s\\n' \"$out\"; "
            f"else echo {q(BODY_CUT)}; printf '%s\\n' \"$out\" | tail -c {BODY_LIMIT} | sed 1d; fi; exit $rc")


@dataclass(frozen=True)
class HttpCheck:
    url: str
    ok: bool
    status: int
    seconds: float
    error: str = ""
    body: str = ""

    @property
    def version(self) -> str | None:
        """The ``version`` a JSON health endpoint reports, if any."""
        try:
            data = json.loads(self.body)
        except (ValueError, TypeError):
            return None
        return str(data.get("version")) if isinstance(data, dict) and data.get("version") else None


CURL_ERRORS = {
    6: "could not resolve host",
    7: "connection refused (nothing listening)",
    28: "timed out: the request hung",
    52: "empty reply from server",
    56: "connection reset",
}


def parse_curl(url: str, exit_code: int, stdout: str, stderr: str = "") -> HttpCheck:
    body, status, seconds = stdout, 0, 0.0
    idx = stdout.rfind("@@status ")
    if idx >= 0:
        body = stdout[:idx].rstrip("\n")
        parts = stdout[idx:].split()
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        seconds = float(parts[2]) if len(parts) > 2 else 0.0
    if exit_code == 0 and 200 <= status < 300:
        return HttpCheck(url, True, status, seconds, body=body)
    if exit_code == 0:
        return HttpCheck(url, False, status, seconds, f"HTTP {status}", body)
    reason = CURL_ERRORS.get(exit_code) or (stderr.strip().splitlines() or [f"curl exit code {exit_code}"])[-1]
    return HttpCheck(url, False, status, seconds, reason, body)


def probe_loop(url: str, stop_file: str, max_seconds: int) -> str:
    """Request URL every 0.2 s on the host until ``stop_file`` appears (or ``max_seconds`` pass),
    printing ``<unix time> <http status>`` per probe: the downtime of a switch, measured
    (runbook note 5: ``up -d`` is not zero-downtime by itself). The 0.2 s between probes is slept
    in quarters, each after a look for the stop file: a stop ends it within ~0.05 s, so the deploy
    does not wait a whole round for its figures."""
    check_url(url)
    stop = q(stop_file)
    return (f"rm -f {stop}; end=$(( $(date +%s) + {whole_seconds(max_seconds)} )); "
            f"while [ ! -e {stop} ] && [ $(date +%s) -lt $end ]; do "
            f"echo \"$(date +%s.%N) $(curl -s -o /dev/null -w '%{{http_code}}' --max-time 1 {q(url)})\"; "
            f"for _ in 1 2 3 4; do [ -e {stop} ] && break; sleep 0.05; done; done; rm -f {stop}")


def probe_stop(stop_file: str) -> str:
    """Ends :func:`probe_loop` at its next round."""
    check_path(stop_file, "probe stop file")
    return f"touch {q(stop_file)}"


@dataclass(frozen=True)
class Downtime:
    probes: int
    failed: int
    longest: float            # seconds from the first failed probe of a run to the next success

    def describe(self, url: str) -> str:
        if not self.probes:
            return f"downtime of {url}: not measured"
        if not self.failed:
            return f"downtime of {url}: none ({self.probes} probes, all 2xx)"
        return f"downtime of {url}: {self.longest:.1f} s ({self.failed} of {self.probes} probes failed)"


def parse_probe(stdout: str) -> Downtime:
    samples = []
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                samples.append((float(parts[0]), parts[1].isdigit() and 200 <= int(parts[1]) < 300))
            except ValueError:
                continue
    longest, start = 0.0, None
    for t, ok in samples:
        if not ok and start is None:
            start = t
        elif ok and start is not None:
            longest, start = max(longest, t - start), None
    if start is not None and samples:
        longest = max(longest, samples[-1][0] - start)
    return Downtime(len(samples), sum(1 for _, ok in samples if not ok), round(longest, 2))
