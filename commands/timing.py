"""Step timings on a monotonic clock, the timing table and the bottleneck (the runbook's exercise:
"time the process and identify bottlenecks")."""
from __future__ import annotations

from dataclasses import dataclass, field

from tabulate import tabulate


@dataclass
class Timing:
    step: str                 # top-level runbook step: checklist, prepare, migrate, services, verify, ...
    sub: str | None           # sub-step (git pull, alembic, pull, up, health wait, ...) or None for the step
    seconds: float = 0.0
    ok: bool = True

    @property
    def label(self) -> str:
        return f"{self.step} › {self.sub}" if self.sub else self.step


@dataclass
class Timer:
    timings: list[Timing] = field(default_factory=list)
    # Issue 9, target 6: from the first command that changes what serves to the new version serving
    # healthily. Overlaps the steps (it is not one of them): shown under the total, not summed.
    change_window: float | None = None

    def add(self, step: str, sub: str | None, seconds: float, ok: bool = True) -> Timing:
        t = Timing(step, sub, round(seconds, 3), ok)
        self.timings.append(t)
        return t

    def steps(self) -> list[Timing]:
        return [t for t in self.timings if t.sub is None]

    def subs(self, step: str) -> list[Timing]:
        return [t for t in self.timings if t.step == step and t.sub is not None]

    def total(self) -> float:
        return round(sum(t.seconds for t in self.steps()), 3)


# What usually fixes each kind of slow step; keyed by sub-step (or step) name.
HINTS = {
    "pull": "image pull dominates: keep images small and layers stable, pull ahead of the deploy window, or use a registry close to the host",
    "up": "container recreation dominates: make the app start faster, or reduce what `up` recreates (only changed services)",
    "health wait": "waiting for health dominates: shorten the healthcheck interval/start_period, or speed up the app's start-up",
    "alembic": "migrations dominate: split long data migrations out of the deploy, add indexes concurrently",
    "db ready": "waiting for postgres dominates: keep the database running between deploys instead of starting it in the deploy",
    "deps up": "starting postgres/redis dominates: keep dependencies running between deploys",
    "git pull": "git dominates: check the network to the git remote, use a shallow or local mirror",
    "git fetch": "git dominates: check the network to the git remote, use a shallow or local mirror",
    "smoke": "smoke tests dominate: check slow endpoints; lower SMOKE_TIMEOUT",
    "logs": "log scanning dominates: lower LOG_TAIL",
    "env diff": "reading env files dominates: check SSH latency to the host",
    "record images": "inspecting containers dominates: check SSH latency and the Docker daemon's responsiveness",
    "checklist": "the checklist dominates: check the monitoring URL and webhook response times",
    "connect": "opening SSH dominates: check DNS, network latency and the ProxyJump hop",
    "lock": "waiting for the deploy lock dominates: another deploy held it (fab lock shows who)",
    "restore": "recreating the services on the previous images dominates: the same start-up and healthcheck costs as a deploy's up and health wait",
    "status": "reading alembic current/history dominates: each alembic start costs about a second",
}
DEFAULT_HINT = "look at what this step runs on the host with `fab plan` and time it by hand"


def bottleneck(timer: Timer) -> Timing | None:
    """The single largest leaf: a sub-step where a step has them, else the step itself."""
    leaves: list[Timing] = []
    for step in timer.steps():
        subs = timer.subs(step.step)
        leaves.extend(subs if subs else [step])
    return max(leaves, key=lambda t: t.seconds, default=None)


def hint_for(t: Timing) -> str:
    return HINTS.get(t.sub or "", HINTS.get(t.step, DEFAULT_HINT))


def bar(share: float, width: int = 20) -> str:
    n = int(round(share * width))
    return "█" * n + "·" * (width - n)


def table(timer: Timer) -> str:
    """step, seconds, share of the total, a bar; sub-steps indented under their step."""
    total = timer.total() or 1e-9
    rows = []
    for step in timer.steps():
        share = step.seconds / total
        rows.append([step.step + ("" if step.ok else "  (failed)"), f"{step.seconds:.2f}", f"{share * 100:.1f}%", bar(share)])
        for sub in timer.subs(step.step):
            s = sub.seconds / total
            rows.append([f"  · {sub.sub}" + ("" if sub.ok else "  (failed)"), f"{sub.seconds:.2f}", f"{s * 100:.1f}%", bar(s)])
    rows.append(["total", f"{timer.total():.2f}", "100.0%", ""])
    if timer.change_window is not None:
        w = timer.change_window
        rows.append(["change window", f"{w:.2f}", f"{w / total * 100:.1f}%", "first change of what serves -> new version healthy"])
    # Sub-steps are indented under their step; tabulate strips leading spaces unless told not to.
    return tabulate(rows, headers=["step", "seconds", "share", ""], colalign=("left", "right", "right", "left"),
                    disable_numparse=True, preserve_whitespace=True)


def summary(timer: Timer) -> str:
    b = bottleneck(timer)
    if b is None:
        return "No steps were timed."
    share = b.seconds / (timer.total() or 1e-9) * 100
    return f"Bottleneck: {b.label} took {b.seconds:.2f} s ({share:.0f}% of {timer.total():.2f} s). Hint: {hint_for(b)}."
