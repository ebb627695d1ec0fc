"""bench/fleet.py's judgement of its rounds (the timing itself is measured, never asserted)."""
from bench import fleet


def test_the_fleet_row_is_the_ratio_of_the_medians_against_one_and_a_half():
    row = fleet.judge([6.0, 9.0, 6.3], [4.0, 4.4, 4.2])
    assert (row["tool"], row["anchor"], row["ratio"], row["result"]) == ("6.30 s", "4.20 s (1 host)", "1.50x", "pass")
    assert fleet.judge([7.0], [4.0])["result"] == "FAIL (<= 1.5x)"


def test_no_valid_round_is_a_failed_row_not_a_ratio():
    assert fleet.judge([], [4.0])["result"] == "FAILED (a deploy failed)"
