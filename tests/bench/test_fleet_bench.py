"""bench/fleet.py's judgement of its rounds (the timing itself is measured, never asserted)."""
from bench import fleet


def test_the_fleet_row_is_the_ratio_of_the_medians_against_one_and_a_half():
    row = fleet.judge([6.0, 9.0, 6.3], [4.0, 4.4, 4.2])
    assert (row["tool"], row["anchor"], row["ratio"], row["result"]) == ("6.30 s", "4.20 s (1 host)", "1.50x", "pass")
    assert fleet.judge([7.0], [4.0])["result"] == "FAIL (<= 1.5x)"


def test_no_valid_round_is_a_failed_row_not_a_ratio():
    assert fleet.judge([], [4.0])["result"] == "FAILED (a deploy failed)"


def test_the_cpu_floor_is_the_fleets_busy_cpu_seconds_over_the_cores_against_one_hosts_wall():
    row = fleet.judge([7.0], [3.3], fleet_cpu=[10.8, 11.1, 10.9], one_cpu=[5.0], cores=2)
    assert row["cpu_floor"] == "10.9 CPU-s (1 host 5.0) on 2 cores: >= 5.45 s = 1.65x"
    assert row["result"] == "FAIL (<= 1.5x); CPU floor here 1.65x"
    assert "cpu_floor" not in fleet.judge([7.0], [3.3])


def test_busy_cpu_seconds_grows_with_work():
    before = fleet.busy_cpu_seconds()
    sum(i * i for i in range(2_000_000))
    assert fleet.busy_cpu_seconds() > before
