"""The Pre-Deployment Checklist's items from parsed data (commands/checklist.py): pass or fail and
the exact detail the operator reads, on captured git and env-file output."""
from pathlib import Path

import pytest

from commands import checklist as items
from commands import envdiff, git
from commands.checklist import Item
from commands.shell import UnsafeValue
from tests.conftest import captured

ROOT = Path(__file__).resolve().parents[2]
GRAPH = git.parse_migration_headers(captured("git-grep-migration-headers-origin-v2.txt"))
EXAMPLE_V1 = envdiff.parse_env(captured("env-example-v1.txt"))
EXAMPLE_V2 = envdiff.parse_env(captured("git-show-env-example-origin-v2.txt"))
LIVE = {**{k: "x" for k in EXAMPLE_V1}, "LEGACY_CACHE_TTL": "60"}      # the sandbox's .env.production keys


def test_captured_migration_graph():
    assert [(m.revision, m.down_revisions, m.path) for m in GRAPH] == [
        ("0001", (), "migrations/versions/0001_create_documents.py"),
        ("0002", ("0001",), "migrations/versions/0002_add_document_summary.py")]


def test_pending_migration_is_listed_for_review():
    it = items.migrations_pending(GRAPH, ["0001"], "", "origin/main")
    assert it == Item("migrations_pending", "Database migrations reviewed", False,
                      "current 0001 -> head 0002: 1 pending, review them: 0002 (migrations/versions/0002_add_document_summary.py)")


def test_nothing_pending_and_a_fresh_database():
    assert items.migrations_pending(GRAPH, ["0002"], "", "origin/main").detail == "current 0002 = head 0002: nothing pending"
    fresh = items.migrations_pending(GRAPH, [], "", "origin/main")
    assert not fresh.ok and fresh.detail.startswith("current base -> head 0002: 2 pending, review them: 0001 (")
    assert items.migrations_pending([], [], "", "origin/main").detail == "current base = head base: nothing pending"


def test_unreadable_database_revision_fails_the_item_with_the_reason():
    it = items.migrations_pending(GRAPH, None, "backend is not running", "origin/main")
    assert not it.ok and it.detail == "cannot read the database revision (backend is not running); head of origin/main is 0002"
    assert items.migrations_pending([], None, "x", "origin/main").detail.endswith("head of origin/main is none")


def test_untested_migrations_are_those_the_test_stage_has_not_applied():
    todo = [m for m in GRAPH if m.revision == "0002"]
    bad = items.migrations_untested(GRAPH, todo, "staging", ["0001"])
    assert bad == Item("migrations_untested", "Database migrations tested (on staging)", False,
                       "UNTESTED: 0002 not applied on staging (at 0001); deploy there first")
    good = items.migrations_untested(GRAPH, todo, "staging", ["0002"])
    assert good.ok and good.detail == "all pending revisions are applied on staging (at 0002)"


def test_env_keys_compared_by_key_only():
    names = (".env.production", ".env.staging")
    it = items.env_keys_differ(names, {".env.production": {"A": "1", "B": "secret"}, ".env.staging": {"A": "2", "C": "3"}})
    assert it == Item("env_keys_differ", "New environment variables documented", False,
                      "only in .env.production: B; only in .env.staging: C")
    same = items.env_keys_differ(names, {".env.production": {"A": "1"}, ".env.staging": {"A": "2"}})
    assert same.ok and same.detail == ".env.production and .env.staging have the same keys (1 values differ, masked)"
    missing = items.env_keys_differ(names, {".env.production": {"A": "1"}, ".env.staging": None})
    assert not missing.ok and missing.detail == "missing on the host: .env.staging"


def test_one_env_file_has_nothing_to_compare_and_says_so():
    """Defect: with ENV_FILES naming one file the item failed with "missing on the host: " (no name)."""
    it = items.env_keys_differ((".env.production",), {".env.production": {"A": "1"}})
    assert it == Item("env_keys_differ", "New environment variables documented", True,
                      "ENV_FILES names fewer than two files; nothing to compare", skipped=True)


def test_env_documented_on_the_captured_examples():
    undocumented, missing = items.env_documented(".env.production", LIVE, ".env.example", EXAMPLE_V1, EXAMPLE_V2,
                                                 "origin/main")
    assert undocumented == Item("env_undocumented", "New environment variables documented", False,
                                "in .env.production but not in .env.example: LEGACY_CACHE_TTL")
    assert missing == Item("env_missing_for_release", "New environment variables documented", False,
                           "origin/main:.env.example documents SUMMARY_MAX_CHARS, missing from .env.production: "
                           "add them before deploying")


def test_env_documented_when_everything_is_there():
    live = {**LIVE, "SUMMARY_MAX_CHARS": "500"}
    undocumented, missing = items.env_documented(".env.production", live, ".env.example", {**EXAMPLE_V2, "LEGACY_CACHE_TTL": ""},
                                                 EXAMPLE_V2, "origin/main")
    assert undocumented.ok and undocumented.detail == "every key of .env.production is documented in .env.example"
    assert missing.ok and missing.detail == ".env.production has every key origin/main:.env.example documents"


def test_env_documented_without_files():
    assert items.env_documented(".env.production", None, ".env.example", EXAMPLE_V1, EXAMPLE_V2, "origin/main") == [
        Item("env_undocumented", "New environment variables documented", False, ".env.production not found"),
        Item("env_missing_for_release", "New environment variables documented", False, ".env.production not found")]
    first, second = items.env_documented(".env.production", LIVE, ".env.example", None, None, "origin/main")
    assert first == Item("env_undocumented", "New environment variables documented", False, ".env.example not found in the checkout")
    assert second == Item("env_missing_for_release", "New environment variables documented", True,
                          "origin/main has no .env.example", skipped=True)


def describe(images):
    return ", ".join(sorted(images))


@pytest.mark.parametrize("images, healthy, ok, detail", [
    ({}, False, False, "nothing is running: a first deploy has nothing to roll back to"),
    ({"backend": {}, "proxy": {}}, True, True, "will be recorded before pull: backend, proxy (healthy)"),
    ({"backend": {}}, True, False, "running now: backend; not running: proxy"),
    ({"backend": {}, "proxy": {}}, False, False,
     "running now: backend, proxy; NOT healthy now, so it is not a valid rollback target"),
])
def test_rollback_target(images, healthy, ok, detail):
    it = items.rollback_target(["backend", "proxy"], images, healthy, describe)
    assert (it.name, it.runbook, it.ok, it.detail) == ("rollback_target", "Rollback plan documented", ok, detail)


def test_results_mark_blocking_failures_and_skips():
    its = [Item("a", "A", True, "fine"), Item("b", "B", False, "bad"), Item("c", "C", False, "meh"),
           Item("d", "D", True, "n/a", skipped=True)]
    rows, blockers = items.results(its, ["b", "d"])
    assert rows == [["A", "a", "ok", "fine"], ["B", "b", "BLOCK", "bad"], ["C", "c", "warn", "meh"], ["D", "d", "skip", "n/a"]]
    assert blockers == [its[1]]


# --- migrations_breaking (issue 9, target 5) ------------------------------------------------

V3_FILE = "migrations/versions/0003_rename_summary_to_abstract.py"
MISSING_FILE = "migrations/versions/0009_missing.py"


def test_show_files_reads_the_pending_revisions_at_the_incoming_ref_in_one_command():
    assert git.show_files("/app/ai-doc-qa", "origin/main", [V3_FILE, "migrations/versions/0004 a;b.py"]) == (
        "for f in migrations/versions/0003_rename_summary_to_abstract.py 'migrations/versions/0004 a;b.py'; "
        "do echo @@ai-doc-qa-source@@\"$f\"; git -C /app/ai-doc-qa show origin/main:\"$f\" 2>/dev/null "
        "|| echo @@ai-doc-qa-no-source@@\"$f\"; echo; done")


def test_show_files_refuses_an_absolute_or_hostile_path_and_the_checklist_leaves_such_files_unread():
    for path in ("/etc/passwd", "migrations/versions/0004_it's.py", "migrations/versions/$(reboot).py", "-p.py"):
        with pytest.raises(UnsafeValue):
            git.show_files("/app/ai-doc-qa", "origin/main", [path])
    assert git.quotable_paths([V3_FILE, "migrations/versions/0004_it's.py", "a b.py"]) == [V3_FILE, "a b.py"]


def test_parse_show_files_on_captured_output():
    """Captured on the sandbox at v2 with origin at v3: 0003 exists there, 0009 does not."""
    out = captured("git-show-files-origin-v3.txt")
    texts = git.parse_show_files(out, [V3_FILE, MISSING_FILE])
    assert list(texts) == [V3_FILE]
    assert texts[V3_FILE] == (ROOT / "sandbox/app-v3" / V3_FILE).read_text()


def test_parse_show_files_keeps_a_last_line_without_newline_and_ignores_a_marker_out_of_order():
    out = ("@@ai-doc-qa-source@@a.py\nx = 1\n@@ai-doc-qa-source@@c.py\n\n"       # a marker for a path not next in order
           "@@ai-doc-qa-source@@b.py\nno_newline = 2\n")
    assert git.parse_show_files(out, ["a.py", "b.py"]) == {
        "a.py": "x = 1\n@@ai-doc-qa-source@@c.py\n", "b.py": "no_newline = 2\n"}


def _v3_reports(reviewed=()):
    from commands import migration_safety as ms
    return ms.analyse_pending([git.Migration("0003", ("0002",), V3_FILE)],
                              {V3_FILE: (ROOT / "sandbox/app-v3" / V3_FILE).read_text()}, reviewed)


def test_migrations_breaking_warns_under_recreate():
    it = items.migrations_breaking(_v3_reports(), "recreate", (), "staging")
    assert (it.ok, it.blocks) == (False, False)
    assert it.detail == ("breaks the code still serving (the old release serves during the migration): 0003: "
                         "alter_column(new_column_name) documents.summary; review, then mark with "
                         "'# deploy: reviewed-breaking-change <who/why>' in the file or REVIEWED_MIGRATIONS=0003")
    assert it.notes == (f"0003 {V3_FILE}:22 alter_column(new_column_name) documents.summary: renamed to abstract: the code "
                        "still serving uses the old column name: its queries fail with 'column does not exist'",)


def test_migrations_breaking_blocks_under_blue_green_with_the_way_to_mark_it_reviewed():
    it = items.migrations_breaking(_v3_reports(), "blue-green", ("0002", "0003x"), "staging")
    assert (it.ok, it.blocks) == (False, True)
    assert it.fix == ("review 0003 (the lines above say what breaks the code still serving), then mark each reviewed: "
                      "the comment '# deploy: reviewed-breaking-change <who/why>' in its revision file (committed and "
                      "pushed), or REVIEWED_MIGRATIONS=0002,0003x,0003 in config/staging.env; then run: fab deploy --stage staging")


def test_migrations_breaking_reviewed_passes_and_says_so():
    it = items.migrations_breaking(_v3_reports(reviewed=["0003"]), "blue-green", ("0003",), "staging")
    assert (it.ok, it.blocks, it.fix) == (True, False, "")
    assert it.detail == "0003 (reviewed, listed in REVIEWED_MIGRATIONS): alter_column(new_column_name) documents.summary"


def test_a_blocking_item_blocks_whatever_checklist_blocking_says():
    blocking = Item("migrations_breaking", "Database migrations reviewed", False, "x", blocks=True)
    warning = Item("migrations_pending", "Database migrations reviewed", False, "y")
    rows, blockers = items.results([blocking, warning], blocking=())
    assert [r[2] for r in rows] == ["BLOCK", "warn"] and blockers == [blocking]


def test_migrations_breaking_unknown_revision_warns():
    it = items.migrations_breaking_unknown("backend is not running")
    assert (it.ok, it.blocks, it.detail) == (False, False, "cannot tell which revisions are pending (backend is not running)")
