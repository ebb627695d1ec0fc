"""Fleet planning: batches, the failure policy's decisions, the exit code and the table rows."""
import pytest

from commands import fleet

H = ["a", "b", "c", "d"]


@pytest.mark.parametrize("spec,size", [("1", 1), ("2", 2), ("9", 4), ("50%", 2), ("30%", 2), ("100%", 4), ("1%", 1)])
def test_batch_size_counts_and_percentages(spec, size):
    assert fleet.batch_size(spec, 4) == size


@pytest.mark.parametrize("spec", ["0", "-1", "x", "0%", "150%", "", "1.5"])
def test_batch_size_refuses_nonsense(spec):
    with pytest.raises(fleet.BadBatchSize):
        fleet.batch_size(spec, 4)


def test_batches_put_the_migration_host_first():
    hosts = fleet.order(H, "c")
    assert fleet.batches(hosts, 3) == [["c", "a", "b"], ["d"]]
    assert fleet.batches(fleet.order(H, "a"), 1) == [["a"], ["b"], ["c"], ["d"]]


def test_all_succeeded_goes_on_under_every_policy():
    for policy in fleet.POLICIES:
        assert fleet.after_batch(policy, {"a": "success", "b": "success"}) == fleet.Decision(True)


def test_stop_starts_no_batch_and_reverts_nothing():
    d = fleet.after_batch("stop", {"a": "success", "b": "rolled_back"})
    assert (d.go_on, d.revert) == (False, ())
    assert "stay on the new version" in d.why


def test_revert_reverts_exactly_the_hosts_that_switched():
    d = fleet.after_batch("revert", {"a": "success", "b": "rolled_back", "c": "failed", "d": "success"})
    assert (d.go_on, d.revert) == (False, ("a", "d"))


def test_continue_goes_on_after_a_failure():
    d = fleet.after_batch("continue", {"a": "failed", "b": "success"})
    assert (d.go_on, d.revert) == (True, ())


def test_failed_migration_and_interrupt_stop_every_policy():
    for policy in fleet.POLICIES:
        assert not fleet.after_batch(policy, {"a": "failed"}, migration_failed=True).go_on
        d = fleet.after_batch(policy, {"a": "aborted", "b": "success"})
        assert (d.go_on, d.revert) == (False, ())


def test_exit_code_zero_only_if_every_host_succeeded():
    assert fleet.exit_code([("a", "success", 0), ("b", "success", 0)]) == 0
    assert fleet.exit_code([("a", "success", 0), ("b", "rolled_back", 7), ("c", "not started", 0)]) == 7
    assert fleet.exit_code([("a", "reverted", 0), ("b", "failed", 4)]) == 4
    assert fleet.exit_code([("a", "revert failed", 8), ("b", "rolled_back", 7)]) == 8
    assert fleet.exit_code([("a", "aborted", 143), ("b", "revert failed", 8)]) == 143
    assert fleet.exit_code([]) != 0


def test_table_rows_and_one_version():
    results = [fleet.HostRow("a", "success", "v2", 12.345, "services › health wait"),
               fleet.HostRow("b", "not started")]
    assert fleet.rows(results) == [["a", "success", "v2", "12.3", "services › health wait"],
                                   ["b", "not started", "?", "-", "-"]]
    assert not fleet.serves_one_version(results)
    assert fleet.serves_one_version([fleet.HostRow("a", "success", "v2"), fleet.HostRow("b", "reverted", "v2")])
