"""The pure part of the benchmark (bench/run.py): statistics, parsing what the tool, the runbook
script and the probers produced, and the one table. No sandbox, no SSH, no clock: unit-tested in
tests/bench/.

Times are seconds on one monotonic clock (bench/run.py's), unless a name says otherwise.
"""
from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from tabulate import tabulate

# The targets (issue 9: 1, 2, 4, 6; issue 10: the fleet row).
DEPLOY_RATIO_LIMIT = 1.15        # 1. whole deploy within 1.15x of the plain bash runbook
HEALTH_NOTICE_LIMIT = 0.5        # 2. health noticed within 0.5 s of the new backend answering
FLEET_RATIO_LIMIT = 1.5          # issue 10: 3 hosts in parallel within 1.5x of one host

NOT_AVAILABLE = "not available"
NOT_REPORTED = "not reported"


# ---- statistics --------------------------------------------------------------------------------

def median(xs: Iterable[float | None]) -> float | None:
    values = [x for x in xs if x is not None]
    return statistics.median(values) if values else None


def percentile(xs: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100)."""
    values = sorted(xs)
    if not values:
        return None
    rank = max(1, -(-len(values) * p // 100))      # ceil(n * p / 100), at least 1
    return values[int(rank) - 1]


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


# ---- HTTP probe samples -----------------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    """One request of a poller: when it was sent and answered, the HTTP status (0: no answer:
    refused, reset or timed out) and the ``version`` its JSON body reported, if any."""
    sent: float
    done: float
    status: int
    version: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def version_of(body: bytes | str) -> str | None:
    """The ``version`` of a JSON health body such as ``{"status": "ok", "version": "v2"}``."""
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return None
    if isinstance(data, dict) and data.get("version") is not None:
        return str(data["version"])
    return None


def count_failures(samples: Iterable[Sample], start: float, end: float) -> tuple[int, int]:
    """(failed, total) of the requests sent while the deploy ran (start <= sent <= end)."""
    inside = [s for s in samples if start <= s.sent <= end]
    return sum(1 for s in inside if not s.ok), len(inside)


def first_answer(samples: Iterable[Sample], version: str, after: float) -> float | None:
    """When the first 2xx answer reporting ``version`` arrived, among requests sent after ``after``."""
    for s in sorted(samples, key=lambda s: s.sent):
        if s.sent >= after and s.ok and s.version == version:
            return s.done
    return None


def last_version(samples: Sequence[Sample]) -> str | None:
    """The version the last answered request reported (what serves at the end)."""
    answered = [s for s in samples if s.ok]
    return max(answered, key=lambda s: s.sent).version if answered else None


# ---- the timestamped output of a run --------------------------------------------------------------

@dataclass(frozen=True)
class Line:
    at: float
    stream: str          # "stdout" or "stderr"
    text: str


def first_line(lines: Iterable[Line], pattern: str | re.Pattern) -> Line | None:
    rx = re.compile(pattern) if isinstance(pattern, str) else pattern
    for line in lines:
        if rx.search(line.text):
            return line
    return None


# bench/runbook.sh prints these on stderr.
RUNBOOK_STEP = re.compile(r"^runbook: step (?P<name>.+?)\s+(?P<seconds>\d+\.\d+) s$")
RUNBOOK_TOTAL = re.compile(r"^runbook: total (?P<seconds>\d+\.\d+) s, (?P<commands>\d+) remote commands")
RUNBOOK_HEALTHY = re.compile(r"^runbook: healthy after up, change window (?P<seconds>\d+\.\d+) s")


@dataclass(frozen=True)
class RunbookOutput:
    total: float | None
    commands: int | None
    change_window: float | None
    steps: dict


def parse_runbook(text: str) -> RunbookOutput:
    total = commands = window = None
    steps: dict[str, float] = {}
    for line in text.splitlines():
        if m := RUNBOOK_STEP.match(line):
            steps[m["name"]] = float(m["seconds"])
        elif m := RUNBOOK_TOTAL.match(line):
            total, commands = float(m["seconds"]), int(m["commands"])
        elif m := RUNBOOK_HEALTHY.match(line):
            window = float(m["seconds"])
    return RunbookOutput(total, commands, window, steps)


# The tool's progress line once the health checks passed: "      healthy: backend 9b7e60c579ae, ...".
TOOL_HEALTHY_LINE = re.compile(r"^\s*healthy: ")


def count_echoed(text: str) -> int:
    """Commands ``fab --echo`` printed (``$ command``); quiet ones (heartbeat, probe) are not echoed."""
    return sum(1 for line in text.splitlines() if line.startswith("$ "))


EXEC_COUNT = re.compile(r"^bench: (\d+) ssh exec requests$", re.M)


def parse_exec_count(text: str) -> int | None:
    """The count bench/count_commands.py prints at exit."""
    m = EXEC_COUNT.search(text)
    return int(m.group(1)) if m else None


# ---- the release record -------------------------------------------------------------------------

def record_events(text: str) -> list[dict]:
    """The well-formed JSON lines of a releases.jsonl text (a torn line is skipped)."""
    out = []
    for raw in text.splitlines():
        raw = raw.strip()
        if raw.startswith("{"):
            try:
                out.append(json.loads(raw))
            except ValueError:
                continue
    return out


def last_release(events: Sequence[dict]) -> list[dict]:
    """The events of the newest release in the record."""
    if not events:
        return []
    rid = events[-1].get("release")
    return [e for e in events if e.get("release") == rid]


def outcome(events: Sequence[dict]) -> str:
    ends = [e for e in events if e.get("event") == "end"]
    return ends[-1].get("outcome", "") if ends else "incomplete"


def change_window(events: Sequence[dict]) -> float | None:
    """Target 6, as the tool reports it: an event ``change_window`` (``seconds``) or a field
    ``change_window`` on any event (a number, or an object with ``seconds``). None: not reported."""
    for e in events:
        candidates = []
        if e.get("event") == "change_window":
            candidates.append(e.get("seconds"))
        candidates.append(e.get("change_window"))
        for value in candidates:
            if isinstance(value, Mapping):
                value = value.get("seconds")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
    return None


def record_steps(events: Sequence[dict]) -> dict[str, float]:
    """``step`` or ``step › sub`` -> seconds, from the record's step events."""
    out = {}
    for e in events:
        if e.get("event") == "step" and e.get("step"):
            label = e["step"] + (f" › {e['sub']}" if e.get("sub") else "")
            out[label] = float(e.get("seconds") or 0)
    return out


def is_health_step_end(event: Mapping) -> bool:
    """The record line written when the tool's wait for health after ``up`` ended."""
    return event.get("event") == "step" and "health" in str(event.get("sub") or "")


def tool_noticed(record_lines: Sequence[tuple[float, dict]], output: Sequence[Line]) -> tuple[float | None, str]:
    """When the tool noticed the new version healthy, and from what.

    Preferred: the moment its record line for the end of the health wait appeared in the release
    record (``record``): the tool appends it right after noticing, one remote command (~15 ms)
    later. Fallback: its ``healthy:`` progress line (``output``), which today comes only after
    the downtime probe is stopped and the images are read (up to ~0.3 s later)."""
    for at, event in record_lines:
        if is_health_step_end(event):
            return at, "record"
    line = first_line(output, TOOL_HEALTHY_LINE)
    return (line.at, "output") if line else (None, "none")


# ---- config and sandbox capabilities ------------------------------------------------------------

def strategy_known(defaults_env: str) -> bool:
    """Is ``STRATEGY`` a key of config/defaults.env (commented-out lines do not count)?"""
    return re.search(r"^\s*STRATEGY\s*=", defaults_env, re.M) is not None


def fleet_known(ctl_text: str) -> bool:
    """Does sandbox/ctl offer ``up --hosts N``?"""
    return "--hosts" in ctl_text


# ---- the table ------------------------------------------------------------------------------------

def fmt_seconds(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} s"


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def fmt_failed(failed_total: tuple[int, int] | None) -> str:
    if failed_total is None:
        return "-"
    failed, total = failed_total
    return f"{failed}/{total}"


def verdict_at_most(value: float | None, limit: float) -> str:
    if value is None:
        return "no data"
    return "pass" if value <= limit else "FAIL"


def row(target: str, tool: str, anchor: str, ratio_: str, result: str) -> dict:
    return {"target": target, "tool": tool, "anchor": anchor, "ratio": ratio_, "result": result}


def sum_failures(rounds: Sequence[Mapping]) -> tuple[int, int] | None:
    pairs = [(r["failed"], r["total"]) for r in rounds if r.get("total")]
    if not pairs:
        return None
    return sum(f for f, _ in pairs), sum(t for _, t in pairs)


def valid(rounds: Sequence[Mapping]) -> list[Mapping]:
    return [r for r in rounds if r.get("ok")]


def generation_rows(gen: str, data: Mapping) -> list[dict]:
    """Rows of targets 1, 2, 4, 6 and the command count for one Compose generation.

    ``data``: {"tool": [round...], "anchor": [round...], "bluegreen": [round...] or None,
    "commands": {"tool": int|None, "tool_echoed": int|None, "anchor": int|None}}; a round is
    {"ok", "wall", "noticed", "failed", "total", "change_window"}."""
    tool, anchor = valid(data.get("tool", [])), valid(data.get("anchor", []))
    n = f"{len(tool)}+{len(anchor)} rounds"
    rows = []
    t_wall, a_wall = median(r["wall"] for r in tool), median(r["wall"] for r in anchor)
    r_wall = ratio(t_wall, a_wall)
    rows.append(row(f"1. deploy wall time, median ({n}), compose {gen}", fmt_seconds(t_wall), fmt_seconds(a_wall),
                    fmt_ratio(r_wall), verdict_at_most(r_wall, DEPLOY_RATIO_LIMIT) + f" (<= {DEPLOY_RATIO_LIMIT}x)"))
    t_notice, a_notice = median(r.get("noticed") for r in tool), median(r.get("noticed") for r in anchor)
    rows.append(row(f"2. health noticed after new backend answers, median, compose {gen}", fmt_seconds(t_notice),
                    fmt_seconds(a_notice), "-", verdict_at_most(t_notice, HEALTH_NOTICE_LIMIT) + f" (<= {HEALTH_NOTICE_LIMIT} s)"))
    rows.append(row(f"4. failed requests at 20/s through the proxy, recreate, compose {gen}", fmt_failed(sum_failures(tool)),
                    fmt_failed(sum_failures(anchor)), "-", "measured (target 4 is blue-green)"))
    bluegreen = data.get("bluegreen")
    if bluegreen is None:
        rows.append(row(f"4. failed requests, blue-green, compose {gen}", NOT_AVAILABLE, "-", "-", NOT_AVAILABLE))
    else:
        failed = sum_failures(valid(bluegreen))
        result = "no data" if failed is None else ("pass" if failed[0] == 0 else "FAIL")
        rows.append(row(f"4. failed requests, blue-green ({len(valid(bluegreen))} rounds), compose {gen}",
                        fmt_failed(failed), "-", "-", result + " (0 failed)"))
    t_window = median(r.get("change_window") for r in tool)
    rows.append(row(f"6. change window, median, compose {gen}", NOT_REPORTED if t_window is None else fmt_seconds(t_window),
                    fmt_seconds(median(r.get("change_window") for r in anchor)), "-",
                    NOT_REPORTED if t_window is None else "pass (reported)"))
    cmds = data.get("commands") or {}
    tool_cmds = cmds.get("tool")
    tool_text = "-" if tool_cmds is None else f"{tool_cmds} ({cmds.get('tool_echoed', '-')} echoed)"
    rows.append(row(f"remote commands per deploy, compose {gen}", tool_text, str(cmds.get("anchor", "-")),
                    fmt_ratio(ratio(tool_cmds, cmds.get("anchor"))), "measured"))
    return rows


def per_command_row(samples: Mapping[str, Sequence[float]] | None) -> dict:
    if not samples:
        return row("3. per remote command, median", "-", "-", "-", "not measured")
    tool, openssh = median(samples.get("tool", [])), median(samples.get("openssh", []))
    ms = lambda x: "-" if x is None else f"{x:.1f} ms"      # noqa: E731
    return row(f"3. per remote command, median (n={len(samples.get('tool', []))}, vs OpenSSH ControlMaster)",
               ms(tool), ms(openssh), fmt_ratio(ratio(tool, openssh)), "measured")


def strategy_rows(strategies: Sequence[Mapping] | None) -> list[dict]:
    """Failed requests per STRATEGY over consecutive deploys and rollbacks (bench/bluegreen.py's
    rows: {"strategy", "deploys", "rollbacks", "requests", "failed", "bad_runs"}). Blue-green must
    lose none (target 4), and every run must exit 0; recreate is reported."""
    out = []
    for r in strategies or []:
        runs = f"{r['deploys']} deploys + {r['rollbacks']} rollbacks"
        label = f"4. failed requests at 20/s, {r['strategy']}, {runs} in a row (bench/bluegreen.py)"
        figure = f"{r['failed']}/{r['requests']}" + (f", {len(r['bad_runs'])} runs exited non-zero" if r["bad_runs"] else "")
        if r["strategy"] == "blue-green":
            result = ("pass" if r["failed"] == 0 and not r["bad_runs"] else "FAIL") + " (0 failed)"
        else:
            result = "measured"
        out.append(row(label, figure, "-", "-", result))
    return out


FLEET_TARGET = "10. fleet: 3 hosts in parallel vs 1 host"


def fleet_row(fleet_offered: bool, fleet: Mapping | None = None) -> dict:
    """The fleet's row. ``fleet``: what bench/fleet.py measured, as {"tool", "anchor", "ratio",
    "result"} (strings, its own figures); None when this run skipped it (--fleet-rounds 0)."""
    if fleet:
        return row(fleet.get("target", FLEET_TARGET), str(fleet.get("tool", "-")), str(fleet.get("anchor", "-")),
                   str(fleet.get("ratio", "-")), str(fleet.get("result", "measured")))
    if not fleet_offered:
        return row(FLEET_TARGET, NOT_AVAILABLE, "-", "-", NOT_AVAILABLE)
    return row(FLEET_TARGET, "not measured", "-", "-", "not measured in this run (--fleet-rounds 0): python bench/fleet.py measures it")


def build_rows(results: Mapping) -> list[dict]:
    rows = []
    for gen, data in results.get("generations", {}).items():
        rows.extend(generation_rows(gen, data))
    rows.extend(strategy_rows(results.get("strategies")))
    rows.append(per_command_row(results.get("per_command")))
    rows.append(fleet_row(bool(results.get("fleet_available")), results.get("fleet")))
    return rows


HEADERS = ["target", "tool", "anchor", "ratio", "result"]


def table(rows: Sequence[Mapping]) -> str:
    return tabulate([[r[h] for h in HEADERS] for r in rows], headers=HEADERS)


def step_rows(results: Mapping) -> list[list]:
    """Where the time goes: median seconds per step of the tool (its record) and of the script."""
    out = []
    for gen, data in results.get("generations", {}).items():
        for who in ("tool", "anchor"):
            rounds = valid(data.get(who, []))
            labels = list(dict.fromkeys(label for r in rounds for label in (r.get("steps") or {})))
            for label in labels:
                out.append([gen, who, label, fmt_seconds(median((r.get("steps") or {}).get(label) for r in rounds))])
    return out


def step_table(results: Mapping) -> str:
    return tabulate(step_rows(results), headers=["compose", "who", "step", "median"])
