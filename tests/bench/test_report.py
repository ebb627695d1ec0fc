"""The benchmark's pure parts (bench/report.py, bench/run.py's arguments): statistics, the parsers on
real captured output, and the table. No sandbox and no timing: the numbers here are fixed inputs."""
import os

import pytest

from bench import report
from bench.report import Line, Sample

CAPTURED = os.path.join(os.path.dirname(__file__), "captured")


def captured(name):
    with open(os.path.join(CAPTURED, name), encoding="utf-8") as fh:
        return fh.read()


# ---- statistics ----------------------------------------------------------------------------------

def test_median_ignores_missing_values_and_is_none_when_empty():
    assert report.median([3.0, None, 1.0, 2.0]) == 2.0
    assert report.median([4.0, 1.0]) == 2.5
    assert report.median([]) is None
    assert report.median([None]) is None


def test_percentile_is_nearest_rank():
    xs = list(range(1, 11))
    assert report.percentile(xs, 90) == 9
    assert report.percentile(xs, 100) == 10
    assert report.percentile(xs, 0) == 1
    assert report.percentile([], 50) is None


def test_ratio_is_none_without_both_figures():
    assert report.ratio(11.4, 3.4) == pytest.approx(3.353, abs=1e-3)
    assert report.ratio(None, 3.4) is None
    assert report.ratio(1.0, 0) is None


# ---- probe samples -------------------------------------------------------------------------------

def test_version_of_reads_the_health_body():
    assert report.version_of(b'{"status": "ok", "version": "v2"}') == "v2"
    assert report.version_of('{"status": "ok"}') is None
    assert report.version_of(b"<html>502 Bad Gateway</html>") is None
    assert report.version_of(b"[1, 2]") is None


def test_count_failures_counts_only_requests_sent_while_the_deploy_ran():
    samples = [Sample(0.9, 0.91, 0), Sample(1.0, 1.01, 200), Sample(1.5, 1.51, 502),
               Sample(1.6, 2.6, 0), Sample(2.0, 2.01, 200), Sample(2.1, 2.11, 502)]
    assert report.count_failures(samples, 1.0, 2.0) == (2, 4)
    assert report.count_failures([], 1.0, 2.0) == (0, 0)


def test_first_answer_is_the_first_2xx_with_the_new_version_after_the_start():
    samples = [Sample(0.5, 0.51, 200, "v2"),          # before the deploy started: not counted
               Sample(1.0, 1.01, 200, "v1"), Sample(1.2, 1.21, 0),
               Sample(1.4, 1.43, 503, "v2"), Sample(1.6, 1.62, 200, "v2"), Sample(1.8, 1.81, 200, "v2")]
    assert report.first_answer(samples, "v2", after=0.9) == 1.62
    assert report.first_answer(samples, "v3", after=0.9) is None


def test_last_version_is_what_the_last_answered_request_said():
    samples = [Sample(1.0, 1.01, 200, "v1"), Sample(2.0, 2.01, 200, "v2"), Sample(3.0, 4.0, 0)]
    assert report.last_version(samples) == "v2"
    assert report.last_version([Sample(1.0, 2.0, 0)]) is None


# ---- the runbook script's output (captured from a real run of bench/runbook.sh) ------------------

def test_parse_runbook_reads_total_commands_change_window_and_steps():
    out = report.parse_runbook(captured("runbook.stderr"))
    assert out.total == 2.399
    assert out.commands == 12
    assert out.change_window == 0.648
    assert list(out.steps) == ["connect", "compose", "git pull", "env diff", "record images", "deps up",
                               "db ready", "alembic", "pull", "up", "health", "smoke", "logs"]
    assert out.steps["record images"] == 0.128


def test_parse_runbook_of_a_failed_run_has_no_total():
    out = report.parse_runbook("runbook: step connect        0.158 s\nrunbook: FAILED in step compose (exit 255)\n")
    assert out.total is None and out.commands is None and out.change_window is None
    assert out.steps == {"connect": 0.158}


# ---- the tool's output and record (captured from a real `fab --echo deploy` via count_commands) --

def test_exec_count_and_echoed_commands_of_a_real_deploy():
    assert report.parse_exec_count(captured("fab-echo-deploy.stderr")) == 81
    assert report.count_echoed(captured("fab-echo-deploy.stdout")) == 79
    assert report.parse_exec_count("Traceback ...\n") is None


def test_first_line_finds_the_tools_healthy_line():
    lines = [Line(float(i), "stdout", t) for i, t in enumerate(captured("fab-echo-deploy.stdout").splitlines())]
    line = report.first_line(lines, report.TOOL_HEALTHY_LINE)
    assert line is not None and "reports version v2" in line.text
    assert report.first_line(lines, r"^no such line$") is None


def test_record_of_a_real_deploy_folds_into_steps_and_outcome():
    events = report.last_release(report.record_events(captured("releases.jsonl") + "\n{torn"))
    assert {e["release"] for e in events} == {"20261128T043114Z-e019"}
    assert report.outcome(events) == "success"
    steps = report.record_steps(events)
    assert steps["services › health wait"] == pytest.approx(2.26, abs=0.01)
    assert steps["migrate › alembic"] > 0
    assert report.change_window(events) is None          # today's tool does not report it


def test_last_release_keeps_only_the_newest_release():
    events = [{"release": "a", "event": "start"}, {"release": "b", "event": "start"}, {"release": "b", "event": "end"}]
    assert report.last_release(events) == events[1:]
    assert report.last_release([]) == []
    assert report.outcome([{"event": "start"}]) == "incomplete"


@pytest.mark.parametrize("event, expected", [
    ({"event": "change_window", "seconds": 0.8}, 0.8),
    ({"event": "end", "change_window": 1.25}, 1.25),
    ({"event": "end", "change_window": {"seconds": 2, "from": "up"}}, 2.0),
    ({"event": "end", "change_window": None}, None),
    ({"event": "end", "change_window": True}, None),
    ({"event": "step", "step": "services"}, None),
])
def test_change_window_is_read_from_an_event_or_a_field(event, expected):
    assert report.change_window([{"event": "start"}, event]) == expected


def test_tool_noticed_prefers_the_record_line_then_the_output_line():
    record = [(5.0, {"event": "step", "step": "services", "sub": "up"}),
              (7.1, {"event": "step", "step": "services", "sub": "health wait"})]
    output = [Line(7.4, "stdout", "      healthy: backend 1, model_server 2, proxy 3")]
    assert report.tool_noticed(record, output) == (7.1, "record")
    assert report.tool_noticed(record[:1], output) == (7.4, "output")
    assert report.tool_noticed([], []) == (None, "none")


# ---- capabilities -----------------------------------------------------------------------------------

def test_strategy_known_needs_an_uncommented_key():
    assert report.strategy_known("AUTO_ROLLBACK=true\nSTRATEGY=recreate\n")
    assert report.strategy_known("  STRATEGY = recreate")
    assert not report.strategy_known("# STRATEGY=blue-green (one day)\nAUTO_ROLLBACK=true\n")
    assert not report.strategy_known("DEPLOY_STRATEGY_NOTE=x\n")


def test_fleet_known_looks_for_up_hosts():
    assert report.fleet_known("  up [--compose v1|v2] [--hosts N]  start ...")
    assert not report.fleet_known("  up [--compose v1|v2]  start ...")


# ---- the table -----------------------------------------------------------------------------------------

def rnd(wall, noticed=1.0, failed=3, total=100, ok=True, window=None):
    return {"ok": ok, "wall": wall, "noticed": noticed, "failed": failed, "total": total, "change_window": window,
            "steps": {"up": 0.3}}


def gen_data(**extra):
    return {"tool": [rnd(11.0, 2.1), rnd(11.4, 2.0), rnd(12.0, 1.9), rnd(99.0, ok=False)],
            "anchor": [rnd(3.4, 0.1, failed=2, total=40, window=0.7), rnd(3.3, 0.2, failed=1, total=40, window=0.6),
                       rnd(3.5, 0.1, failed=2, total=40, window=0.8)],
            "bluegreen": None, "commands": {"tool": 81, "tool_echoed": 79, "anchor": 12}, **extra}


def by_target(rows, prefix):
    [found] = [r for r in rows if r["target"].startswith(prefix)]
    return found


def test_generation_rows_today():
    rows = report.generation_rows("v2", gen_data())
    deploy = by_target(rows, "1. deploy wall time")
    assert "3+3 rounds" in deploy["target"]                       # the failed round is left out
    assert (deploy["tool"], deploy["anchor"], deploy["ratio"]) == ("11.40 s", "3.40 s", "3.35x")
    assert deploy["result"].startswith("FAIL")
    health = by_target(rows, "2. health noticed")
    assert (health["tool"], health["anchor"], health["result"][:4]) == ("2.00 s", "0.10 s", "FAIL")
    failed = by_target(rows, "4. failed requests at 20/s")
    assert (failed["tool"], failed["anchor"]) == ("9/300", "5/120")
    assert by_target(rows, "4. failed requests, blue-green")["result"] == "not available"
    window = by_target(rows, "6. change window")
    assert (window["tool"], window["anchor"], window["result"]) == ("not reported", "0.70 s", "not reported")
    cmds = by_target(rows, "remote commands")
    assert (cmds["tool"], cmds["anchor"], cmds["ratio"]) == ("81 (79 echoed)", "12", "6.75x")


def test_generation_rows_when_the_tool_meets_the_targets():
    data = gen_data(tool=[rnd(3.6, 0.3, window=0.9), rnd(3.8, 0.4, window=1.1)],
                    bluegreen=[rnd(4.0, failed=0, total=80), rnd(4.1, failed=0, total=82)])
    rows = report.generation_rows("v1", data)
    assert by_target(rows, "1. deploy wall time")["result"].startswith("pass")
    assert by_target(rows, "2. health noticed")["result"].startswith("pass")
    bg = by_target(rows, "4. failed requests, blue-green")
    assert (bg["tool"], bg["result"]) == ("0/162", "pass (0 failed)")
    assert by_target(rows, "6. change window")["tool"] == "1.00 s"


def test_rows_without_data_say_so():
    rows = report.generation_rows("v2", {"tool": [rnd(5, ok=False)], "anchor": [], "bluegreen": None})
    assert by_target(rows, "1. deploy wall time")["result"].startswith("no data")
    assert by_target(rows, "4. failed requests at 20/s")["tool"] == "-"


def test_build_rows_and_table():
    results = {"generations": {"v2": gen_data(), "v1": gen_data()},
               "per_command": {"tool": [12.0, 12.2, 12.4], "openssh": [6.5, 6.6, 6.7]}, "fleet_available": False}
    rows = report.build_rows(results)
    assert len(rows) == 2 * 6 + 2
    per_cmd = by_target(rows, "3. per remote command")
    assert (per_cmd["tool"], per_cmd["anchor"], per_cmd["ratio"]) == ("12.2 ms", "6.6 ms", "1.85x")
    fleet = by_target(rows, "10. fleet")
    assert (fleet["tool"], fleet["result"]) == ("not available", "not available")
    text = report.table(rows)
    assert text.splitlines()[0].split() == ["target", "tool", "anchor", "ratio", "result"]
    assert "compose v1" in text and "compose v2" in text
    steps = report.step_table(results)
    assert "up" in steps and "0.30 s" in steps


def test_strategy_rows_judge_blue_green_and_report_recreate():
    rows = report.strategy_rows([
        {"strategy": "blue-green", "deploys": 10, "rollbacks": 10, "requests": 1500, "failed": 0, "bad_runs": []},
        {"strategy": "recreate", "deploys": 10, "rollbacks": 10, "requests": 1400, "failed": 61, "bad_runs": []},
        {"strategy": "blue-green", "deploys": 2, "rollbacks": 2, "requests": 300, "failed": 0, "bad_runs": ["deploy 2: exit 7"]}])
    assert (rows[0]["tool"], rows[0]["result"]) == ("0/1500", "pass (0 failed)")
    assert "10 deploys + 10 rollbacks" in rows[0]["target"]
    assert (rows[1]["tool"], rows[1]["result"]) == ("61/1400", "measured")
    assert (rows[2]["tool"], rows[2]["result"]) == ("0/300, 1 runs exited non-zero", "FAIL (0 failed)")
    assert report.strategy_rows(None) == []


def test_the_fleet_row_shows_what_bench_fleet_measured():
    row = report.fleet_row(True, {"tool": "7.10 s", "anchor": "5.20 s", "ratio": "1.37x", "result": "pass (<= 1.5x)"})
    assert (row["target"], row["tool"], row["ratio"], row["result"]) == (report.FLEET_TARGET, "7.10 s", "1.37x", "pass (<= 1.5x)")
    rows = report.build_rows({"generations": {}, "fleet_available": True, "fleet": {"tool": "1 s"}})
    assert by_target(rows, "10. fleet")["tool"] == "1 s"


def test_fleet_row_when_the_sandbox_offers_hosts_but_the_bench_does_not_measure_them():
    assert report.fleet_row(True)["result"].startswith("not measured")
    assert report.per_command_row(None)["result"] == "not measured"


# ---- bench/run.py's arguments -----------------------------------------------------------------------

def test_run_arguments():
    from bench import run
    args = run.parse_args([])
    assert (args.rounds, args.generations, args.json) == (5, ["v2", "v1"], False)
    args = run.parse_args(["--quick", "--rounds", "7", "--json", "--generations", "v1"])
    assert (args.rounds, args.generations, args.json) == (1, ["v1"], True)
    with pytest.raises(SystemExit):
        run.parse_args(["--generations", "v3"])
    with pytest.raises(SystemExit):
        run.parse_args(["--rounds", "0"])
