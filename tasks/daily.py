"""The commands operators use every day, through the same hardened connection as a deploy (host
keys checked, output redacted): ``fab logs``, ``fab exec``, ``fab restart``."""
from __future__ import annotations

import re
import signal
import time

from invoke import Exit

from commands import slots as slots_cmd
from commands.compose import V2, check_since
from tasks import interrupts, messages, program, slotstate, ui
from tasks.base import operator_task
from tasks.errors import SETUP, DeployError, ExitCode
from tasks.hoststate import wait_ready
from tasks.locking import DeployLock
from tasks.session import Session
from tasks.stream import stream

REFOLLOW_PAUSE = 1.0        # seconds between a log stream's end and following again (a stopped container ends it at once)
REFOLLOW_LINES = 10000      # lines asked for when following again; those already shown are skipped


def known_services(s: Session, names: str) -> list[str]:
    """``backend,worker`` -> the services, each one the stage deploys or depends on."""
    st = s.settings
    known = [*st.services, *st.dependency_services]
    wanted = [n.strip() for n in (names or "").split(",") if n.strip()]
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise DeployError(f"unknown service(s) {', '.join(unknown)} for stage {st.stage}", code=ExitCode.CONFIG,
                          kind=SETUP, state="nothing was changed", details=[f"known: {', '.join(known)}"],
                          next_step="name one of the known services (SERVICES and DEPENDENCY_SERVICES of the stage)")
    return wanted


def serving_slot(s: Session, service: str) -> str:
    """Under STRATEGY=blue-green the backend is two Compose services: ``backend`` stands for the
    slot that serves. Seen on staging: `fab restart backend` with backend_green serving STARTED the
    stopped old slot, and the proxy then answered v1 and v2 in turn; `fab exec backend` failed
    with "service backend is not running"."""
    if not slotstate.enabled(s) or service != s.settings.backend_service:
        return service
    slot = slotstate.exec_service(s)
    if slot != service:
        ui.say(f"{service} is served by slot {slot} (STRATEGY=blue-green)")
    return slot


def check_logs_options(since="", **_) -> list[str]:
    try:
        check_since(since) if since else None
    except ValueError as exc:
        return [str(exc)]
    return []


LOGS_HELP = {
    "service": "the service(s), comma-separated (default: every service)",
    "follow": "keep printing new lines until Ctrl-C (which exits 0)",
    "since": "only lines since a duration ago (30s, 10m, 2h) or a date (2026-11-28T07:00:00Z)",
    "lines": "how many of the last lines of each service (default 100)",
}


# --service, not a positional SERVICE: invoke's positional arguments are all required, and a bare
# `fab logs` (every service) is the common case.
@operator_task(help=LOGS_HELP, check=check_logs_options, positional=[])
def logs(s: Session, service="", follow=False, since="", lines=100):
    """The services' logs (docker compose logs, with timestamps), redacted; -f follows them until Ctrl-C."""
    services = known_services(s, service)
    if slotstate.enabled(s):           # the backend's lines are in whichever slot served at the time
        services = slots_cmd.with_slots(services, slots_cmd.pair(s.settings), s.settings.backend_service)
    if follow:
        return follow_logs(s, services, lines, since)
    command = s.compose.follow_logs(services, lines, since)
    code = stream(s, command, s.settings.command_timeout)
    if code != 0:
        raise DeployError(f"docker compose logs exited with code {code}", command=command, state="nothing was changed",
                          next_step=messages.status(s.host))


_STAMP = re.compile(r"\| (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z ")


def stamp(line: str) -> str:
    """Docker's --timestamps stamp of a log line, with 9 fraction digits so that stamps compare as
    strings (docker drops trailing zeros); "" for a line without one."""
    m = _STAMP.search(line)
    return f"{m.group(1)}.{(m.group(2) or '').ljust(9, '0')}Z" if m else ""


class Deduplicated:
    """Prints each line once: a re-follow (``--since`` the last stamp) starts with lines already shown."""

    def __init__(self):
        self.last = ""

    def __call__(self, line: str) -> None:
        t = stamp(line)
        if t and t <= self.last:
            return
        self.last = max(self.last, t)
        for x in ui.lines(line):
            ui.say(x, keep=True)


def follow_logs(s: Session, services: list[str], lines: int, since: str) -> None:
    """``compose logs -f`` ends when a followed container stops (a restart, a redeploy): follow
    again from the last line shown until Ctrl-C, which exits 0."""
    printer = Deduplicated()
    announced = None
    try:
        while True:
            stream(s, s.compose.follow_logs(services, lines, since, follow=True), 0, emit=printer)
            if announced != printer.last:        # once per gap, not once a second while a service is down
                announced = printer.last
                ui.say("(the log stream ended: a container stopped or restarted; following again)")
            time.sleep(REFOLLOW_PAUSE)
            if s.compose.command == V2 and printer.last:
                since = printer.last                # v1 has no --since: its lines are de-duplicated by stamp
            lines = REFOLLOW_LINES
    except KeyboardInterrupt as exc:
        if interrupts.signum_of(exc) != signal.SIGINT:
            raise
        ui.say("(stopped following: Ctrl-C)")


def check_exec_options(service=None, interactive=False, **_) -> list[str]:
    problems = []
    if not service:
        problems.append("name the service: fab exec SERVICE -- COMMAND")
    if interactive:
        problems.append("--interactive is not offered: a shell on a pty cannot be redacted line by line. "
                        "For a shell, use OpenSSH, which checks known_hosts too: "
                        "ssh -t HOST 'cd APP_DIR && docker compose exec SERVICE sh'")
    elif not program.REMAINDER.strip():
        problems.append("give the command after --: fab exec SERVICE -- COMMAND")
    return problems


EXEC_HELP = {
    "service": "the service whose running container runs the command",
    "interactive": "not offered (a pty shell cannot be redacted); the error names the ssh command to use",
    "timeout": "seconds the command may run (default COMMAND_TIMEOUT; 0: no limit)",
}


@operator_task(help=EXEC_HELP, check=check_exec_options, positional=["service"], name="exec")
def exec_task(s: Session, service=None, interactive=False, timeout=0.0):
    """Run `-- COMMAND` in a service's running container; output redacted, exit code passed through.

    The command runs by `sh -c` through `docker compose exec -T`."""
    svc = serving_slot(s, known_services(s, service)[0])
    command = s.compose.exec_sh(svc, program.REMAINDER.strip())
    if s.dry:
        ui.say(f"[dry] would run: {command}")
        return
    limit = timeout or s.settings.command_timeout
    started = time.monotonic()
    code = stream(s, command, limit)
    # 124 is also the command's own exit code (`exit 124`): said to be the timeout only once it ran that long
    if code == 124 and time.monotonic() - started >= limit:
        ui.warn(f"the command was stopped after {limit:g} s (--timeout)")
    if code != 0:
        raise Exit(code=code)


@operator_task(help={"service": "the service to restart (one the stage deploys or depends on)"},
               positional=["service"])
def restart(s: Session, service=None):
    """Restart one service under the deploy lock, then wait until it is running and healthy."""
    name = known_services(s, service)[0]
    st = s.settings
    with DeployLock(s, "restart", message=f"restart {name}"):
        svc = serving_slot(s, name)         # under the lock: a deploy cannot switch slots meanwhile
        ui.say(f"restarting {svc} ...")
        s.run(s.compose.restart([svc]), mutating=True, timeout=st.up_timeout)
        # `logs --service`: logs takes no positional service (`fab logs backend` names no task)
        states = wait_ready(s, [svc], st.health_timeout, what=f"{svc} after restart", step="restart",
                            next_step=f"{messages.fab(s.host, 'logs --service ' + name)}, then {messages.diagnose(s.host)}")
    for c in states:
        ui.say(f"{svc}: {c.status}" + (f", {c.health}" if c.health else "") + f" (container {c.name})")
