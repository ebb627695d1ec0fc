#!/usr/bin/env python3
"""make bench: `fab deploy` against the plain bash runbook (bench/runbook.sh) on the staging host,
side by side in one run, and one table of the issue's targets.

For each Compose generation (v2, then v1; `sandbox/ctl compose`), alternating rounds: tool,
script, tool, script, ... Each round starts from the same state (`sandbox/ctl reset`, then
`sandbox/ctl version v2`; not timed) and times one deploy, v1 -> v2, while two pollers run in
this process:
- the prober: GET http://127.0.0.1:8080/health (through the proxy) 20 times a second; a request
  that is not answered 2xx within 1 s is a failed request;
- the health watcher: GET http://127.0.0.1:8000/health (the backend) every 25 ms, recording when
  the backend first answers with the new version.
Then, untimed: one deploy per generation through bench/count_commands.py to count the tool's
remote commands, and the per-command cost of the tool's session vs OpenSSH ControlMaster
(bench/ssh_commands.py). See bench/README.md for the method and the error of each figure.

The sandbox is reset many times: run it under the sandbox lock for the whole run, e.g.
`with-sandbox make bench`. This script takes no lock itself. It ends with the sandbox reset, on
the Compose generation it found.

Usage: .venv/bin/python bench/run.py [--rounds N] [--quick] [--json] [--save FILE] [--generations v2,v1]
                                      [--strategy-rounds N]
"""
from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import fleet, report  # noqa: E402
from bench.report import Line, Sample  # noqa: E402
from config import load_settings  # noqa: E402

CTL = ROOT / "sandbox" / "ctl"
RUNBOOK = ROOT / "bench" / "runbook.sh"
COUNTER = ROOT / "bench" / "count_commands.py"
SANDBOX_ROOT = Path(os.environ.get("SANDBOX_ROOT", "/var/lib/ai-doc-qa-sandbox"))
NEW_VERSION = "v2"
PROXY = ("127.0.0.1", 8080, "/health")
BACKEND = ("127.0.0.1", 8000, "/health")
GREEN = ("127.0.0.1", 8002, "/health")      # STRATEGY=blue-green's second backend slot (BLUE_GREEN_HEALTH_URL)
PROBE_INTERVAL, PROBE_TIMEOUT = 0.05, 1.0          # 20 requests per second
WATCH_INTERVAL, WATCH_TIMEOUT = 0.025, 0.5
SETTLE = 0.5             # pollers run this long before a deploy starts and after it ends


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---- the sandbox ----------------------------------------------------------------------------------

def ctl(*args: str) -> None:
    """sandbox/ctl ARGS, its output kept in a log unless it fails."""
    r = subprocess.run([str(CTL), *args], cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"bench: sandbox/ctl {' '.join(args)} failed (exit {r.returncode}):\n{r.stdout}{r.stderr}")


def compose_generation() -> str:
    try:
        return (SANDBOX_ROOT / "compose-generation").read_text().strip() or "v2"
    except OSError:
        return "v2"


def starting_state() -> None:
    ctl("reset")
    ctl("version", NEW_VERSION)


# ---- pollers ---------------------------------------------------------------------------------------

class Poller(threading.Thread):
    """GET a URL on a fixed schedule (a new TCP connection per request, like curl), recording a
    Sample per request; a request late by more than one interval does not cause a burst."""

    def __init__(self, target: tuple[str, int, str], interval: float, timeout: float):
        super().__init__(daemon=True)
        self.host, self.port, self.path = target
        self.interval, self.timeout = interval, timeout
        self.samples: list[Sample] = []
        self._halt = threading.Event()

    def request(self) -> Sample:
        sent = time.monotonic()
        try:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            conn.request("GET", self.path)
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            return Sample(sent, time.monotonic(), resp.status, report.version_of(body))
        except (OSError, http.client.HTTPException):
            return Sample(sent, time.monotonic(), 0)

    def run(self) -> None:
        due = time.monotonic()
        while not self._halt.is_set():
            self.samples.append(self.request())
            due = max(due + self.interval, time.monotonic() - self.interval)
            self._halt.wait(max(0.0, due - time.monotonic()))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


class RecordWatcher(threading.Thread):
    """Follows the release record file on this machine (the sandbox host is local), stamping
    each complete line when it appears: when the tool wrote it, within one poll (10 ms)."""

    def __init__(self, path: str):
        super().__init__(daemon=True)
        self.path = path
        self.lines: list[tuple[float, dict]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        offset, partial = 0, b""
        while not self._halt.wait(0.01):
            try:
                with open(self.path, "rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
            except OSError:
                continue
            if not chunk:
                continue
            now = time.monotonic()
            offset += len(chunk)
            *complete, partial = (partial + chunk).split(b"\n")
            for raw in complete:
                for event in report.record_events(raw.decode("utf-8", "replace")):
                    self.lines.append((now, event))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


# ---- one timed run ------------------------------------------------------------------------------------

@dataclass
class Run:
    rc: int
    start: float
    end: float
    lines: list[Line] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return self.end - self.start

    def text(self, stream: str | None = None) -> str:
        return "\n".join(l.text for l in self.lines if stream is None or l.stream == stream)


def run_timed(argv: list[str], env: dict | None = None) -> Run:
    """Run a command from the repo root; every output line stamped when it arrives."""
    lines: list[Line] = []
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=ROOT, env=fleet.python_env(env if env is not None else dict(os.environ)), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1)

    def read(stream, name):
        for text in stream:
            lines.append(Line(time.monotonic(), name, text.rstrip("\n")))

    readers = [threading.Thread(target=read, args=(proc.stdout, "stdout"), daemon=True),
               threading.Thread(target=read, args=(proc.stderr, "stderr"), daemon=True)]
    for t in readers:
        t.start()
    rc = proc.wait()
    end = time.monotonic()
    for t in readers:
        t.join(timeout=10)
    return Run(rc, start, end, sorted(lines, key=lambda l: l.at))


def observed(argv: list[str], env: dict | None, record_path: str,
             backends: tuple = (BACKEND,)) -> tuple[Run, list[Sample], list[Sample], list]:
    """One deploy with the prober, the health watchers (one per backend slot) and the record
    watcher running around it. Returns the prober's samples and the watchers' merged."""
    prober = Poller(PROXY, PROBE_INTERVAL, PROBE_TIMEOUT)
    watchers = [Poller(b, WATCH_INTERVAL, WATCH_TIMEOUT) for b in backends]
    record = RecordWatcher(record_path)
    threads = (prober, *watchers, record)
    for t in threads:
        t.start()
    time.sleep(SETTLE)
    try:
        run = run_timed(argv, env)
        time.sleep(SETTLE)
    finally:
        for t in threads:
            t.stop()
    health = sorted((x for w in watchers for x in w.samples), key=lambda x: x.sent)
    return run, prober.samples, health, record.lines


# ---- rounds ---------------------------------------------------------------------------------------------

def tool_argv() -> list[str]:
    return [str(Path(sys.executable).parent / "fab"), "deploy", "--stage", "staging"]


def tool_round(record_path: str, env: dict | None = None) -> dict:
    starting_state()
    # Blue-green: the new version starts in the other slot, so both slots are watched.
    slots = (BACKEND, GREEN) if (env or {}).get("DEPLOY_STRATEGY") == "blue-green" else (BACKEND,)
    run, probes, health, record = observed(tool_argv(), env, record_path, slots)
    events = report.last_release([e for _, e in record])
    first_new = report.first_answer(health, NEW_VERSION, run.start)
    noticed_at, source = report.tool_noticed(record, run.lines)
    failed, total = report.count_failures(probes, run.start, run.end)
    # What serves at the end is what the proxy answers (under blue-green the first slot is stopped:
    # its last answer, v1, said nothing about what serves; that made every b/g round "FAILED (rc 0)").
    ok = run.rc == 0 and report.outcome(events) == "success" and report.last_version(probes) == NEW_VERSION
    return {"ok": ok, "rc": run.rc, "wall": run.wall, "failed": failed, "total": total,
            "noticed": None if noticed_at is None or first_new is None else noticed_at - first_new,
            "noticed_source": source, "change_window": report.change_window(events),
            "steps": report.record_steps(events), "outcome": report.outcome(events),
            "tail": run.text().splitlines()[-15:] if not ok else []}


def anchor_round(record_path: str) -> dict:
    starting_state()
    run, probes, health, _ = observed([str(RUNBOOK)], None, record_path)
    out = report.parse_runbook(run.text("stderr"))
    first_new = report.first_answer(health, NEW_VERSION, run.start)
    healthy = report.first_line(run.lines, report.RUNBOOK_HEALTHY)
    failed, total = report.count_failures(probes, run.start, run.end)
    ok = run.rc == 0 and report.last_version(probes) == NEW_VERSION
    return {"ok": ok, "rc": run.rc, "wall": run.wall, "failed": failed, "total": total,
            "noticed": None if healthy is None or first_new is None else healthy.at - first_new,
            "noticed_source": "output", "change_window": out.change_window, "steps": out.steps,
            "commands": out.commands, "tail": run.text().splitlines()[-15:] if not ok else []}


def count_tool_commands() -> dict:
    """One untimed deploy through the counting wrapper, with --echo as a cross-check."""
    starting_state()
    run = run_timed([sys.executable, str(COUNTER), "--echo", "deploy", "--stage", "staging"])
    return {"tool": report.parse_exec_count(run.text("stderr")), "tool_echoed": report.count_echoed(run.text("stdout")),
            "count_run_ok": run.rc == 0}


def progress(gen: str, i: int, n: int, who: str, r: dict) -> None:
    noticed = "-" if r.get("noticed") is None else f"{r['noticed']:+.2f} s"
    say(f"bench: [{gen} {i}/{n}] {who:6s} {r['wall']:6.2f} s {'ok' if r['ok'] else 'FAILED (rc ' + str(r['rc']) + ')'}; "
        f"health noticed {noticed} ({r.get('noticed_source')}); failed requests {r['failed']}/{r['total']}")
    if not r["ok"]:
        for line in r.get("tail", []):
            say(f"bench:     | {line}")


def measure_generation(gen: str, rounds: int, bluegreen: bool, record_path: str) -> dict:
    ctl("compose", gen)
    data: dict = {"tool": [], "anchor": [], "bluegreen": [] if bluegreen else None}
    for i in range(1, rounds + 1):
        data["tool"].append(tool_round(record_path))
        progress(gen, i, rounds, "tool", data["tool"][-1])
        data["anchor"].append(anchor_round(record_path))
        progress(gen, i, rounds, "script", data["anchor"][-1])
    if bluegreen:
        env = {**os.environ, "DEPLOY_STRATEGY": "blue-green"}
        for i in range(1, rounds + 1):
            data["bluegreen"].append(tool_round(record_path, env))
            progress(gen, i, rounds, "b/g", data["bluegreen"][-1])
    anchor_cmds = [r.get("commands") for r in data["anchor"] if r.get("commands")]
    data["commands"] = {**count_tool_commands(), "anchor": anchor_cmds[0] if anchor_cmds else None}
    say(f"bench: [{gen}] remote commands per deploy: tool {data['commands']['tool']} "
        f"({data['commands']['tool_echoed']} echoed), script {data['commands']['anchor']}")
    return data


def measure_strategies(rounds: int) -> list[dict]:
    """Failed requests per STRATEGY (bench/bluegreen.py): ``rounds`` deploys and rollbacks in a
    row each, on Compose v2, with the prober at 20 requests per second through the proxy."""
    from bench import bluegreen
    ctl("compose", "v2")
    rows = []
    for strategy in ("blue-green", "recreate"):
        rows.append(bluegreen.run_strategy(strategy, rounds))
        r = rows[-1]
        say(f"bench: [strategy {strategy}] {r['deploys']} deploys + {r['rollbacks']} rollbacks: "
            f"{r['failed']}/{r['requests']} requests failed; runs exited non-zero: {r['bad_runs'] or 'none'}")
    return rows


def measure_per_command(n: int, blocks: int) -> dict:
    from bench import ssh_commands
    samples = ssh_commands.compare(n, blocks)
    say(f"bench: per command: tool {report.median(samples['tool']):.1f} ms, "
        f"OpenSSH ControlMaster {report.median(samples['openssh']):.1f} ms")
    return samples


# ---- main ---------------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="fab deploy vs the plain bash runbook, side by side (see bench/README.md)")
    p.add_argument("--rounds", type=int, default=5, help="rounds per strategy and Compose generation (default 5)")
    p.add_argument("--quick", action="store_true", help="1 round per generation and a short per-command run (a smoke run)")
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout instead of the table")
    p.add_argument("--save", metavar="FILE", help="also write the JSON results to FILE")
    p.add_argument("--generations", default="v2,v1", help="Compose generations to measure, in order (default v2,v1)")
    p.add_argument("--strategy-rounds", type=int, default=10,
                   help="deploys and rollbacks in a row per STRATEGY for the failed-requests rows (bench/bluegreen.py; "
                        "default 10, --quick 2, 0 skips them)")
    p.add_argument("--fleet-rounds", type=int, default=3,
                   help="alternating rounds of 3 hosts in parallel vs 1 host (bench/fleet.py; default 3, --quick 1, 0 skips)")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds = 1
        args.fleet_rounds = min(args.fleet_rounds, 1)
        args.strategy_rounds = min(args.strategy_rounds, 2)
    args.generations = [g.strip() for g in args.generations.split(",") if g.strip()]
    if args.rounds < 1 or any(g not in ("v2", "v1") for g in args.generations):
        p.error("--rounds must be >= 1 and --generations a list of v2, v1")
    return args


def measure(args: argparse.Namespace) -> dict:
    record_path = load_settings("staging").releases_file
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} ({os.cpu_count()} cpus)",
        "rounds": args.rounds,
        "strategy_available": report.strategy_known((ROOT / "config" / "defaults.env").read_text()),
        "fleet_available": report.fleet_known(CTL.read_text()),
        "generations": {},
    }
    original = compose_generation()
    try:
        for gen in args.generations:
            results["generations"][gen] = measure_generation(gen, args.rounds, results["strategy_available"], record_path)
        if args.strategy_rounds > 0 and results["strategy_available"]:
            try:
                results["strategies"] = measure_strategies(args.strategy_rounds)
            except (Exception, subprocess.SubprocessError) as exc:     # keep the rounds measured so far
                say(f"bench: the failed-requests rounds per strategy stopped: {exc.__class__.__name__}: {exc}")
        results["per_command"] = measure_per_command(10 if args.quick else 30, 1 if args.quick else 3)
        # The fleet row (issue 10): bench/fleet.py's medians, 3 hosts in parallel vs 1 host.
        results["fleet"] = fleet.measure(args.fleet_rounds) if args.fleet_rounds > 0 and results["fleet_available"] else None
    finally:
        say(f"bench: leaving the sandbox reset, on Compose {original}")
        ctl("compose", original)
        ctl("reset")
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = measure(args)
    rows = report.build_rows(results)
    text = json.dumps({**results, "rows": rows}, indent=2, sort_keys=True)
    if args.save:
        Path(args.save).write_text(text + "\n")
    if args.json:
        print(text)
        return 0
    print(f"make bench, {results['date']}, {results['machine']}, {args.rounds} round(s) per strategy and generation")
    print(report.table(rows))
    print()
    print(report.step_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
