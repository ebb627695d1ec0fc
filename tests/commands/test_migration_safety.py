"""commands/migration_safety.py on real alembic files: the sample app's migrations (sandbox/app*),
hand-written migrations per case (tests/fixtures/migrations, each checked to run under alembic
1.8.1 by tests/fixtures/migrations/offline-sql/capture), and alembic's own offline SQL for them."""
import json
import pathlib
import re

import pytest

from commands import alembic as alembic_cmd
from commands import migration_safety as ms
from commands.git import parse_migration_headers
from commands.migration_findings import WHY_INDEX
from commands.migration_sql import scan_sql

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "migrations"
OFFLINE_SQL = FIXTURES / "offline-sql"
V1_0001 = ROOT / "sandbox/app/migrations/versions/0001_create_documents.py"
V2_0002 = ROOT / "sandbox/app-v2/migrations/versions/0002_add_document_summary.py"
V3_0003 = FIXTURES / "app-v3/migrations/versions/0003_rename_summary_to_abstract.py"


def source(name: str) -> str:
    return (FIXTURES / f"{name}.py").read_text()


def analyse(name: str, **kw) -> ms.MigrationReport:
    return ms.analyse(f"migrations/versions/{name}.py", source(name), **kw)


def found(report: ms.MigrationReport) -> list[tuple[str, str, int]]:
    return [(f.operation, f.target, f.line) for f in report.findings]


def git_grep_headers(ref: str, files: dict[str, pathlib.Path]) -> str:
    """What ``git grep`` of the header lines prints on the host, built from the real files."""
    lines = []
    for repo_path, local in files.items():
        for line in local.read_text().splitlines():
            if re.match(r"^(revision|down_revision)\s*(:[^=]*)?=", line):
                lines.append(f"{ref}:{repo_path}:{line}")
    return "\n".join(lines) + "\n"


SAMPLE_APP = {
    "migrations/versions/0001_create_documents.py": V1_0001,
    "migrations/versions/0002_add_document_summary.py": V2_0002,
}


# --- the sample app's real migrations -------------------------------------------------------

def test_sample_app_0001_creates_documents_and_breaks_nothing():
    r = ms.analyse("migrations/versions/0001_create_documents.py", V1_0001.read_text())
    assert (r.revision, r.findings, r.notes, r.reviewed) == ("0001", (), (), False)
    assert r.created_tables == {"documents"}


def test_sample_app_0002_adds_a_nullable_column_and_breaks_nothing():
    # 0002 adds documents.summary nullable and backfills it with an UPDATE: safe for the v1 code.
    r = ms.analyse("migrations/versions/0002_add_document_summary.py", V2_0002.read_text())
    assert (r.revision, r.findings, r.notes) == ("0002", (), ())
    assert r.added_columns == {("documents", "summary")}


def test_sample_app_v1_to_v2_pending_chain_is_safe_for_blue_green():
    graph = parse_migration_headers(git_grep_headers("origin/main", SAMPLE_APP))
    todo = alembic_cmd.pending(graph, ["0001"])
    sources = {p: local.read_text() for p, local in SAMPLE_APP.items()}
    reports = ms.analyse_pending(todo, sources)
    assert [r.revision for r in reports] == ["0002"]
    assert ms.verdict(reports, "blue-green") == ms.Verdict(
        "ok", "1 pending revision(s) checked (0002): none breaks the code still serving")


def test_sandbox_bad_migration_fails_at_run_time_but_breaks_no_serving_code():
    # The revision `sandbox/ctl break bad-migration` pushes: ADD COLUMN ... DEFAULT, then a bad UPDATE.
    assert analyse("sandbox_bad_migration_0003").findings == ()


# --- the sample revision the sandbox gains (v3) ---------------------------------------------

def test_v3_sample_renames_summary_which_the_v2_code_selects():
    v2_code = (ROOT / "sandbox/app-v2/app/documents.py").read_text()
    assert '"summary"' in v2_code.split("COLUMNS =", 1)[1].splitlines()[0]
    r = ms.analyse("migrations/versions/0003_rename_summary_to_abstract.py", V3_0003.read_text())
    assert found(r) == [("alter_column(new_column_name)", "documents.summary", 22)]
    assert r.findings[0].why.startswith("renamed to abstract: the code still serving uses the old column name")


def test_v3_sample_warns_under_recreate_blocks_under_blue_green_until_reviewed():
    files = dict(SAMPLE_APP, **{"migrations/versions/0003_rename_summary_to_abstract.py": V3_0003})
    todo = alembic_cmd.pending(parse_migration_headers(git_grep_headers("origin/main", files)), ["0002"])
    sources = {p: local.read_text() for p, local in files.items()}
    reports = ms.analyse_pending(todo, sources)
    assert ms.verdict(reports, "recreate").level == "warn"
    assert ms.verdict(reports, "blue-green").level == "block"
    assert ms.verdict(ms.analyse_pending(todo, sources, reviewed=["0003"]), "blue-green").level == "ok"


# --- one case per operation -----------------------------------------------------------------

def test_drop_column_breaks():
    r = analyse("drop_column")
    assert (r.revision, found(r)) == ("3f1c2a9b7d10", [("drop_column", "documents.legacy_score", 20)])
    assert "column does not exist" in r.findings[0].why


def test_drop_table_breaks_and_names_the_schema_but_drop_index_does_not():
    r = analyse("drop_table")
    assert (r.revision, found(r)) == ("8e2d44c0a1b3", [("drop_table", "public.document_tags", 23)])


def test_rename_table_breaks():
    assert found(analyse("rename_table")) == [("rename_table", "documents", 18)]
    assert analyse("rename_table").findings[0].why.startswith("renamed to articles: ")


def test_rename_column_breaks():
    r = analyse("rename_column")
    assert found(r) == [("alter_column(new_column_name)", "documents.body", 19)]
    assert r.findings[0].why.startswith("renamed to content: ")


def test_type_change_breaks_but_loosening_defaults_and_comments_do_not():
    r = analyse("alter_type")
    assert found(r) == [("alter_column(type_)", "documents.title", 20)]
    assert r.findings[0].why.startswith("new type sa.String(length=500): ")


def test_not_null_tightening_breaks_even_after_a_backfill():
    assert found(analyse("set_not_null")) == [("alter_column(nullable=False)", "documents.language", 22)]


def test_add_not_null_column_without_server_default_breaks_with_bare_column_import():
    r = analyse("add_not_null_column")
    assert found(r) == [("add_column(nullable=False)", "documents.owner_id", 20),
                        ("add_column(nullable=False)", "documents.checksum", 24)]


def test_nullable_server_default_identity_and_computed_columns_are_safe():
    r = analyse("add_column_safe")
    assert (r.findings, r.notes) == ((), ())
    assert {c for _, c in r.added_columns} == {"language", "views", "slug", "row_no", "title_lower"}


def test_batch_operations_use_the_table_of_their_own_batch():
    r = analyse("batch_ops")
    assert found(r) == [("drop_column", "documents.summary", 21),
                        ("alter_column(type_)", "document_tags.tag", 25),
                        ("alter_column(new_column_name)", "document_tags.document_id", 26)]
    assert [(n.operation, n.table, n.line) for n in r.notes] == [("create_index", "documents", 22)]
    assert "ix_documents_archived" in r.notes[0].why


def test_raw_sql_in_execute_is_scanned_and_harmless_sql_is_not_flagged():
    assert found(analyse("raw_sql")) == [
        ("execute: RENAME COLUMN", "documents.title", 27),
        ("execute: ALTER COLUMN TYPE", "documents.body", 28),
        ("execute: SET NOT NULL", "documents.created_at", 28),
        ("execute: ADD COLUMN NOT NULL", "documents.lang", 28),
        ("execute: DROP COLUMN", "documents.legacy_score", 36),     # f-string with a module constant
        ("execute: DROP TABLE", "document_tags", 37),               # bind.execute(text(CONSTANT))
        ("execute: RENAME TABLE", "labels", 38),
    ]


def test_create_index_is_a_note_unless_concurrent_and_never_a_break():
    r = analyse("create_index")
    assert r.findings == ()
    assert [(n.operation, n.table, n.line) for n in r.notes] == [("create_index", "documents", 18)]
    assert r.notes[0].why.startswith("builds index ix_documents_title with a lock that blocks writes")
    assert ms.verdict([r], "blue-green") == ms.Verdict("ok", (
        "1 pending revision(s) checked (1f2e3d4c5b6a): none breaks the code still serving; "
        "notes: 1f2e3d4c5b6a create_index documents"))


def test_helper_functions_called_by_upgrade_are_followed_and_downgrade_helpers_ignored():
    # `from alembic import op as alembic_op`; upgrade() calls _drop_old_search(); downgrade's helper is not read.
    assert found(analyse("helper_function")) == [("drop_table", "search_index", 22)]


def test_tables_and_columns_new_in_the_pending_chain_are_not_breaks_but_not_null_still_is():
    first = analyse("chain_1_create_chunks")
    assert (first.findings, first.notes) == ((), ())       # everything there is new to the old code
    second = analyse("chain_2_reshape_chunks", after=[first])
    assert found(second) == [("alter_column(nullable=False)", "documents.chunked_on", 24)]


def test_the_same_revision_alone_flags_everything():
    assert [op for op, _, _ in found(analyse("chain_2_reshape_chunks"))] == [
        "drop_column", "alter_column(new_column_name)", "alter_column(type_)",
        "alter_column(new_column_name)", "alter_column(nullable=False)"]


def test_analyse_pending_chains_the_reports_in_order():
    graph = parse_migration_headers(git_grep_headers("origin/main", {
        "migrations/versions/a.py": FIXTURES / "chain_2_reshape_chunks.py",
        "migrations/versions/b.py": FIXTURES / "chain_1_create_chunks.py"}))
    todo = alembic_cmd.pending(graph, ["0002"])
    reports = ms.analyse_pending(todo, {m.path: (FIXTURES / ("chain_2_reshape_chunks.py" if m.path.endswith("a.py")
                                                            else "chain_1_create_chunks.py")).read_text() for m in todo})
    assert [(r.revision, len(r.findings)) for r in reports] == [("e1e1e1e1e1e1", 0), ("e2e2e2e2e2e2", 1)]


@pytest.mark.parametrize("body, expected", [
    ('op.drop_column(table_name="documents", column_name="summary", schema="app")',
     [("drop_column", "app.documents.summary")]),
    ('for column in ("a", "b"):\n        op.drop_column("documents", column)', [("drop_column", "documents.<column>")]),
    ('op.add_column("documents", sqlalchemy.Column("n", sa.Integer, primary_key=True))',
     [("add_column(nullable=False)", "documents.n")]),
    ('op.add_column("documents", sa.Column("n", sa.Integer, nullable=False, server_default=None))',
     [("add_column(nullable=False)", "documents.n")]),
    ('op.execute(sqltext="ALTER TABLE documents DROP COLUMN body")', [("execute: DROP COLUMN", "documents.body")]),
    ('op.execute("ALTER TABLE documents DROP COLUMN " + name)', []),      # built at run time: not seen
    ('with op.batch_alter_table("documents", schema="app") as b:\n        b.drop_column("x")',
     [("drop_column", "app.documents.x")]),
    ('if op.get_context().dialect.name == "postgresql":\n        op.drop_table("t")', [("drop_table", "t")]),
])
def test_call_spellings(body, expected):
    text = source("drop_column").replace('op.drop_column("documents", "legacy_score")', body)
    text = text.replace("import sqlalchemy as sa", "import sqlalchemy\nimport sqlalchemy as sa")
    assert [(f.operation, f.target) for f in ms.analyse("v.py", text).findings] == expected


# --- files that cannot be analysed ----------------------------------------------------------

def test_a_file_that_does_not_parse_gives_one_cannot_analyse_finding():
    r = analyse("unparsable", revision="dead0000beef")
    assert [(f.operation, f.line) for f in r.findings] == [("cannot analyse", 17)]
    assert "does not parse as Python" in r.findings[0].why
    assert (r.revision, ms.verdict([r], "recreate").level, ms.verdict([r], "blue-green").level) == (
        "dead0000beef", "warn", "block")


def test_a_missing_file_cannot_be_analysed_and_falls_back_to_the_callers_revision():
    r = ms.analyse("migrations/versions/0009_x.py", "", revision="0009")
    assert (r.revision, [f.operation for f in r.findings]) == ("0009", ["cannot analyse"])
    assert "empty or missing" in r.findings[0].why
    assert ms.analyse("migrations/versions/0009_x.py", "").revision == "0009_x"


def test_a_file_without_upgrade_cannot_be_analysed():
    text = source("drop_column").replace("def upgrade():", "def upgrade_later():").replace("upgrade_later", "go_up")
    r = ms.analyse("v.py", text)
    assert [(f.operation, f.why) for f in r.findings] == [("cannot analyse", "no upgrade() function found: review it by hand")]


def test_the_file_is_never_executed():
    text = source("drop_column").replace("\nrevision = ", '\nraise SystemExit("executed")\nrevision = ')
    assert found(ms.analyse("v.py", text)) == [("drop_column", "documents.legacy_score", 21)]


def test_unknown_calls_and_other_receivers_are_ignored():
    text = source("drop_column").replace(
        '    op.drop_column("documents", "legacy_score")\n',
        '    op.create_foreign_key("fk", "documents", "users", ["owner_id"], ["id"])\n'
        '    op.bulk_insert(sa.table("documents"), [])\n'
        '    metadata.drop_column("documents", "x")\n'
        '    op.execute(sa.table("documents").delete())\n')
    assert ms.analyse("v.py", text).findings == ()


def test_upgrade_for_a_named_engine_is_read_too():
    text = source("drop_column").replace("def upgrade():", "def upgrade_engine1():")
    assert found(ms.analyse("v.py", text)) == [("drop_column", "documents.legacy_score", 20)]


# --- the reviewed mark ----------------------------------------------------------------------

def test_reviewed_comment_marks_the_revision_and_findings_stay_reported():
    r = analyse("reviewed_comment")
    assert r.review == "line 11: alice 2025-03-15: v2 no longer reads legacy_score (since 1.4)"
    assert [(f.operation, f.reviewed) for f in r.findings] == [("drop_column", True)]
    assert not r.breaking
    assert ms.verdict([r], "blue-green") == ms.Verdict(
        "ok", "4b5c6d7e8f90 (reviewed, line 11: alice 2025-03-15: v2 no longer reads legacy_score (since 1.4)): "
              "drop_column documents.legacy_score")


def test_revision_listed_by_the_caller_is_reviewed():
    r = analyse("drop_column", reviewed=[" 3f1c2a9b7d10 "])
    assert (r.review, r.findings[0].reviewed) == ("listed in REVIEWED_MIGRATIONS", True)
    assert analyse("drop_column", reviewed=["0003", "3f1c2a9b"]).reviewed is False


def test_a_mark_without_who_or_why_does_not_count_and_says_so():
    text = source("drop_column").replace("def upgrade():", "# deploy: reviewed-breaking-change\ndef upgrade():")
    r = ms.analyse("v.py", text)
    assert (r.reviewed, [(n.operation, n.line) for n in r.notes]) == (False, [("reviewed mark", 19)])


@pytest.mark.parametrize("spelling", [
    '"""# deploy: reviewed-breaking-change bob: inside a string"""',  # text in a string, not a comment
    "# deploy: reviewed-breaking-changes bob",                          # another word
    "# deploy: Reviewed-Breaking-Change bob",                           # the spelling is exact, for grep
])
def test_only_the_exact_comment_counts_as_a_mark(spelling):
    text = source("drop_column").replace("def upgrade():", f"{spelling}\ndef upgrade():")
    assert ms.analyse("v.py", text).reviewed is False


def test_mark_also_counts_in_a_file_that_does_not_parse():
    text = source("unparsable").replace("def upgrade():", "# deploy: reviewed-breaking-change carol: conflict resolved by hand\ndef upgrade():")
    r = ms.analyse("v.py", text)
    assert (r.review.endswith("carol: conflict resolved by hand"), r.findings[0].reviewed) == (True, True)


# --- the SQL scan (heuristic) ---------------------------------------------------------------

@pytest.mark.parametrize("sql, expected", [
    ("drop table documents", [("execute: DROP TABLE", "documents", "")]),
    ("DROP TABLE IF EXISTS a, Public.B CASCADE", [("execute: DROP TABLE", "a", ""), ("execute: DROP TABLE", "public.b", "")]),
    ('ALTER TABLE "Docs" DROP "Body"', [("execute: DROP COLUMN", "Docs", "Body")]),
    ("ALTER TABLE IF EXISTS ONLY documents RENAME TO docs", [("execute: RENAME TABLE", "documents", "")]),
    ("ALTER TABLE documents RENAME body TO content", [("execute: RENAME COLUMN", "documents", "body")]),
    ("ALTER TABLE documents ALTER COLUMN n SET DATA TYPE numeric(10, 2), DROP COLUMN x",
     [("execute: ALTER COLUMN TYPE", "documents", "n"), ("execute: DROP COLUMN", "documents", "x")]),
    ("ALTER TABLE documents ALTER title SET NOT NULL", [("execute: SET NOT NULL", "documents", "title")]),
    ("ALTER TABLE t ADD COLUMN id int PRIMARY KEY", [("execute: ADD COLUMN NOT NULL", "t", "id")]),
    ("RENAME TABLE documents TO docs", [("execute: RENAME TABLE", "documents", "")]),
    ("DO $$ BEGIN ALTER TABLE documents DROP COLUMN x; END $$", [("execute: DROP COLUMN", "documents", "x")]),
])
def test_scan_sql_finds_breaking_ddl(sql, expected):
    assert [(h.operation, h.table, h.column) for h in scan_sql(sql)] == expected


@pytest.mark.parametrize("sql", [
    "ALTER TABLE documents DROP CONSTRAINT documents_pkey",
    "ALTER TABLE documents ALTER COLUMN title DROP NOT NULL",
    "ALTER TABLE documents ALTER COLUMN title SET DEFAULT 'x'",
    "ALTER TABLE documents ADD CONSTRAINT c CHECK (length(title) > 0)",
    "ALTER TABLE documents ADD COLUMN n int NOT NULL DEFAULT 0",
    "ALTER TABLE documents ADD COLUMN id bigserial NOT NULL",
    "ALTER TABLE documents ADD COLUMN n int GENERATED ALWAYS AS IDENTITY NOT NULL",
    "ALTER TABLE documents ADD COLUMN n int",
    "ALTER TABLE documents RENAME CONSTRAINT a TO b",
    "CREATE INDEX ix ON documents (title); DROP INDEX ix_old",
    "UPDATE documents SET body = 'x; DROP TABLE documents; ALTER TABLE documents DROP COLUMN body'",
    "/* DROP TABLE documents */ SELECT 1 -- ALTER TABLE documents DROP COLUMN body",
])
def test_scan_sql_ignores_safe_sql(sql):
    assert scan_sql(sql) == []


def test_scan_sql_does_not_flag_what_the_same_sql_created_first_but_does_flag_a_recreate():
    assert scan_sql("CREATE TABLE IF NOT EXISTS tmp_ids (id int); ALTER TABLE tmp_ids ADD COLUMN n int NOT NULL;"
                       " ALTER TABLE documents ADD COLUMN lang text; ALTER TABLE documents RENAME lang TO language;"
                       " DROP TABLE tmp_ids") == []
    assert [h.operation for h in scan_sql("DROP TABLE documents; CREATE TABLE documents (id int)")] == [
        "execute: DROP TABLE"]


def test_tables_created_by_raw_sql_count_as_new_for_later_operations():
    text = source("drop_column").replace(
        '    op.drop_column("documents", "legacy_score")\n',
        '    op.execute("CREATE TABLE staging_scores (document_id int, score float)")\n'
        '    op.drop_column("staging_scores", "score")\n'
        '    op.add_column("staging_scores", sa.Column("rank", sa.Integer(), nullable=False))\n')
    r = ms.analyse("v.py", text)
    assert (r.findings, r.created_tables) == ((), {"staging_scores"})


def _kind(operation: str) -> str:
    return {"drop_column": "DROP COLUMN", "drop_table": "DROP TABLE", "rename_table": "RENAME TABLE",
            "alter_column(new_column_name)": "RENAME COLUMN", "alter_column(type_)": "ALTER COLUMN TYPE",
            "alter_column(nullable=False)": "SET NOT NULL", "add_column(nullable=False)": "ADD COLUMN NOT NULL",
            }.get(operation, operation.removeprefix("execute: "))


@pytest.mark.parametrize("sql_file", sorted(p.name for p in OFFLINE_SQL.glob("*.sql")))
def test_scan_of_alembics_own_sql_agrees_with_the_source_analysis(sql_file):
    """Each fixture's DDL as alembic 1.8.1 emits it (captured offline) gives the same breaks."""
    from_sql = [(h.operation.removeprefix("execute: "), h.table, h.column)
                for h in scan_sql((OFFLINE_SQL / sql_file).read_text())]
    name = sql_file.removesuffix(".sql")
    src = V3_0003 if name.startswith("0003_") else FIXTURES / f"{name}.py"
    from_source = [(_kind(f.operation), f.table, f.column) for f in ms.analyse("v.py", src.read_text()).findings]
    assert from_sql == from_source


def test_offline_sql_was_captured_for_every_parsable_fixture():
    fixtures = {p.stem for p in FIXTURES.glob("*.py")} - {"unparsable"} | {V3_0003.stem}
    assert {p.stem for p in OFFLINE_SQL.glob("*.sql")} == fixtures


# --- output for the checklist ---------------------------------------------------------------

def test_summary_line_names_revision_operation_and_table_column():
    assert ms.summary_line([]) == "no pending revision"
    reports = [analyse("drop_column"), analyse("add_column_safe"), analyse("reviewed_comment")]
    assert ms.summary_line(reports) == (
        "3f1c2a9b7d10: drop_column documents.legacy_score; "
        "4b5c6d7e8f90 (reviewed, line 11: alice 2025-03-15: v2 no longer reads legacy_score (since 1.4)): "
        "drop_column documents.legacy_score")


def test_summary_line_stays_short_with_many_findings_and_long_review_notes():
    assert ms.summary_line([analyse("raw_sql")]).endswith(
        "execute: DROP TABLE document_tags, +1 more")
    long_note = source("reviewed_comment").replace("(since 1.4)", "x" * 200)
    line = ms.summary_line([ms.analyse("v.py", long_note)])
    quoted = "line 11: alice 2025-03-15: v2 no longer reads legacy_score "
    quoted += "x" * (77 - len(quoted)) + "..."                 # 80 characters of the note
    assert line == f"4b5c6d7e8f90 (reviewed, {quoted}): drop_column documents.legacy_score"


def test_verdict_warns_under_recreate():
    assert ms.verdict([analyse("drop_column")], "recreate") == ms.Verdict("warn", (
        "breaks the code still serving (the old release serves during the migration): "
        "3f1c2a9b7d10: drop_column documents.legacy_score; review, then mark with "
        "'# deploy: reviewed-breaking-change <who/why>' in the file or REVIEWED_MIGRATIONS=3f1c2a9b7d10"))


def test_verdict_blocks_under_blue_green_and_names_only_unreviewed_revisions():
    v = ms.verdict([analyse("reviewed_comment"), analyse("rename_table"), analyse("drop_table")], "blue-green")
    assert (v.level, v.ok, v.blocks) == ("block", False, True)
    assert v.detail.startswith("breaks the code still serving (the old slot serves during and after the migration): ")
    assert v.detail.endswith("REVIEWED_MIGRATIONS=51aa0c7e9f42,8e2d44c0a1b3")


def test_verdict_refuses_an_unknown_strategy():
    with pytest.raises(ValueError, match="unknown strategy 'rolling'"):
        ms.verdict([], "rolling")


def test_explain_gives_file_line_and_reason_for_each_finding_and_note():
    lines = ms.explain([analyse("reviewed_comment"), analyse("create_index")])
    assert lines == [
        "4b5c6d7e8f90 migrations/versions/reviewed_comment.py:20 drop_column documents.legacy_score: "
        "the code still serving may read or write this column: its queries fail with 'column does not exist' "
        "[reviewed: line 11: alice 2025-03-15: v2 no longer reads legacy_score (since 1.4)]",
        "note: 1f2e3d4c5b6a migrations/versions/create_index.py:18 create_index documents: " + WHY_INDEX.format("ix_documents_title"),
    ]


def test_records_are_json_ready():
    records = ms.as_records([analyse("batch_ops")])
    assert json.loads(json.dumps(records)) == records
    assert records[0]["revision"] == "6d5c4b3a2f1e" and records[0]["reviewed"] is False
    assert [(f["operation"], f["table"], f["column"], f["line"]) for f in records[0]["findings"]][0] == (
        "drop_column", "documents", "summary", 21)
