from commands import alembic
from commands.git import Migration


def test_parse_current_ignores_log_lines():
    out = ("INFO  [alembic.runtime.migration] Context impl PostgresqlImpl.\n"
           "INFO  [alembic.runtime.migration] Will assume transactional DDL.\n"
           "0002 (head)\n")
    assert alembic.parse_current(out) == ["0002"]
    assert alembic.parse_current("INFO  [alembic.runtime.migration] Context impl PostgresqlImpl.\n") == []
    assert alembic.parse_current("ae1027a6acf\nb1c2d3 (head)\n") == ["ae1027a6acf", "b1c2d3"]


def test_a_merge_revision_at_head_is_read_with_all_its_flags():
    # alembic prints every flag in its own parentheses (Revision._head_only / __str__): a merge
    # migration at head is "c3 (head) (mergepoint)", and was read as no revision at all
    assert alembic.parse_current("c3 (head) (mergepoint)\nb2 (effective head)\na1 (branchpoint)\n") == ["c3", "b2", "a1"]
    h = alembic.parse_history("a1, b2 -> c3 (head) (mergepoint), merge heads\n<base> -> a1 (branchpoint), create\n")
    assert [(e.down, e.up, e.flags, e.message) for e in h] == [
        ("a1, b2", "c3", "head, mergepoint", "merge heads"), ("<base>", "a1", "branchpoint", "create")]


def test_parse_history():
    out = ("0001 -> 0002 (head), add summary column\n"
           "<base> -> 0001, create documents\n")
    h = alembic.parse_history(out)
    assert [(e.down, e.up, e.flags, e.message) for e in h] == [
        ("0001", "0002", "head", "add summary column"), ("<base>", "0001", "", "create documents")]


GRAPH = [Migration("0001", (), "a"), Migration("0002", ("0001",), "b"), Migration("0003", ("0002",), "c"),
         Migration("x1", ("0001",), "d"), Migration("m4", ("0003", "x1"), "e")]


def test_pending_linear_and_branched():
    assert [m.revision for m in alembic.pending(GRAPH, ["0002"])] == ["0003", "x1", "m4"]
    assert [m.revision for m in alembic.pending(GRAPH, ["m4"])] == []
    assert [m.revision for m in alembic.pending(GRAPH, [])] == ["0001", "0002", "0003", "x1", "m4"]


def test_ancestors_and_heads():
    assert alembic.ancestors(GRAPH, ["0003"]) == {"0001", "0002", "0003"}
    assert alembic.heads(GRAPH) == ["m4"]
    assert alembic.heads(GRAPH[:3]) == ["0003"]


def test_pending_ordered_parents_first():
    order = [m.revision for m in alembic.pending(list(reversed(GRAPH)), [])]
    assert order.index("0001") < order.index("0002") < order.index("0003") < order.index("m4")
    assert order.index("x1") < order.index("m4")
