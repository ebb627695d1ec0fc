"""Issue 10's speed row: a fleet of 3 hosts deployed in parallel, against one host, in one run.

`sandbox/ctl up --hosts 3` (three real hosts: own netns, dockerd, sshd, app dir), then rounds that
alternate: `fab deploy --stage staging --parallel 3` on the fleet stage (sandbox/fleet/staging.env)
and the same deploy with `DEPLOY_HOSTS` set to its first host only. Each round starts from
`sandbox/ctl reset` + `version v2`. The target: the fleet's median within 1.5x of one host's.
Leaves the sandbox as one host (`sandbox/ctl up`). Numbers only; nothing here asserts a time.

    python bench/fleet.py [--rounds N] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CTL = ROOT / "sandbox" / "ctl"
FLEET_CONFIG = ROOT / "sandbox" / "fleet"
FIRST_HOST = "ai-doc-qa-fleet-1"
TARGET_RATIO = 1.5


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def ctl(*args: str) -> None:
    r = subprocess.run([str(CTL), *args], cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"bench: sandbox/ctl {' '.join(args)} failed (exit {r.returncode}):\n{r.stdout}{r.stderr}")


PYCACHE = Path(os.environ.get("TMPDIR", "/tmp")) / "ai-doc-qa-bench-pycache"


def python_env(env: dict) -> dict:
    """``fab`` as an operator's machine runs it: Python keeps its compiled modules (its default;
    this machine's shell sets PYTHONDONTWRITEBYTECODE=1, which made every run compile the tool's
    modules again: ~0.1 s of a deploy). They go under PYCACHE, not into the checkout."""
    out = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return out


def busy_cpu_seconds() -> float:
    """CPU seconds this machine has spent busy since boot, all processes (/proc/stat: user, nice,
    system, irq, softirq): the simulated hosts' dockerd, Compose, containers and `fab` alike."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(fields[i]) for i in (0, 1, 2, 5, 6)) / ticks


def timed_deploy(extra_env: dict, *args: str) -> tuple[int, float, float]:
    ctl("reset")
    ctl("version", "v2")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOY_")}
    env.update({"DEPLOY_LOCAL_CONFIG": str(FLEET_CONFIG), **extra_env})
    env = python_env(env)
    fab = str(Path(sys.executable).parent / "fab")
    start, cpu0 = time.monotonic(), busy_cpu_seconds()
    r = subprocess.run([fab, "deploy", "--stage", "staging", *args], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True)
    wall, cpu = time.monotonic() - start, busy_cpu_seconds() - cpu0
    if r.returncode != 0:
        say("\n".join((r.stdout + r.stderr).splitlines()[-15:]))
    return r.returncode, wall, cpu


def judge(fleet: list[float], one: list[float], fleet_cpu: list[float] = (), one_cpu: list[float] = (),
          cores: int = 0) -> dict:
    """The row bench/report.fleet_row prints: medians of the valid rounds, their ratio, pass/fail.
    With the CPU seconds the machine spent per deploy: the wall time a fleet deploy cannot beat
    on ``cores`` cores (busy CPU seconds / cores), as a ratio to one host's wall time."""
    if not fleet or not one:
        return {"tool": "no valid round", "anchor": "-", "ratio": "-", "result": "FAILED (a deploy failed)"}
    f, o = statistics.median(fleet), statistics.median(one)
    ratio = f / o
    out = {"tool": f"{f:.2f} s", "anchor": f"{o:.2f} s (1 host)", "ratio": f"{ratio:.2f}x",
           "result": "pass" if ratio <= TARGET_RATIO else f"FAIL (<= {TARGET_RATIO}x)",
           "fleet_walls": fleet, "one_walls": one}
    if fleet_cpu and one_cpu and cores:
        fc, oc = statistics.median(fleet_cpu), statistics.median(one_cpu)
        floor = fc / cores
        out.update(fleet_cpu=list(fleet_cpu), one_cpu=list(one_cpu), cores=cores,
                   cpu_floor=f"{fc:.1f} CPU-s (1 host {oc:.1f}) on {cores} cores: >= {floor:.2f} s = {floor / o:.2f}x")
        if ratio > TARGET_RATIO:
            out["result"] += f"; CPU floor here {floor / o:.2f}x"
    return out


def measure(rounds: int) -> dict:
    ctl("up", "--hosts", "3")
    fleet, one, fleet_cpu, one_cpu = [], [], [], []
    try:
        for i in range(rounds):
            rc, wall, cpu = timed_deploy({}, "--parallel", "3")
            say(f"bench: fleet round {i + 1}/{rounds}: 3 hosts in parallel {wall:.2f} s, {cpu:.1f} CPU-s busy (exit {rc})")
            if rc == 0:
                fleet.append(wall)
                fleet_cpu.append(cpu)
            rc, wall, cpu = timed_deploy({"DEPLOY_HOSTS": FIRST_HOST})
            say(f"bench: fleet round {i + 1}/{rounds}: 1 host {wall:.2f} s, {cpu:.1f} CPU-s busy (exit {rc})")
            if rc == 0:
                one.append(wall)
                one_cpu.append(cpu)
    finally:
        ctl("up")           # back to one host: the extra hosts stopped, their namespaces gone
    return judge(fleet, one, fleet_cpu, one_cpu, os.cpu_count() or 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="3 hosts in parallel vs 1 host (issue 10's speed row)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    result = measure(max(1, args.rounds))
    print(json.dumps(result, indent=2) if args.json else
          f"3 hosts in parallel {result['tool']} vs 1 host {result['anchor']}: {result['ratio']} {result['result']}"
          + (f"\nCPU: {result['cpu_floor']}" if result.get("cpu_floor") else ""))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
