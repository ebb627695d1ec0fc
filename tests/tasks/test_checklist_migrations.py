"""The checklist item migrations_breaking through the task layer (issue 9, target 5), on a scripted
host answering with what the sandbox answered at v2 with v3 offered: the database at 0002, origin
main bringing 0003 (renames documents.summary, which the v2 code selects). Recreate warns, blue-green
blocks with exit 9 and says how to mark it reviewed; a reviewed revision passes."""
import dataclasses

import pytest
from invoke import Result

from tasks import web
from tasks.checklist import checklist
from tests.conftest import captured
from tests.tasks.scripted import flat, run_task
from tests.tasks.test_checklist import alembic_current, production

V3 = "migrations/versions/0003_rename_summary_to_abstract.py"
# git grep of the headers at origin main = v3: the v2 capture plus 0003's two lines, in git's format.
GREP_V3 = captured("git-grep-migration-headers-origin-v2.txt") + (
    f'origin/main:{V3}:revision = "0003"\norigin/main:{V3}:down_revision = "0002"\n')
# The real answer of show_files for 0003 alone: the capture's first block (it also asked a missing file).
SHOW_0003 = captured("git-show-files-origin-v3.txt").split("@@ai-doc-qa-source@@migrations/versions/0009")[0]
MARKED = SHOW_0003.replace('import sqlalchemy as sa\n',
                           "# deploy: reviewed-breaking-change alice: v2 is stopped before this runs\nimport sqlalchemy as sa\n")
SHOW = r"^for f in .*; do echo @@ai-doc-qa-source@@"


def at_v2_with_v3(show=SHOW_0003):
    return production((r" grep -E ", GREP_V3), (r"(?:exec -T backend|^docker exec [0-9a-f]{64}) (?:sh -c .*\|\| )?alembic current", alembic_current("alembic-current-v2.txt")),
                      (SHOW, show))


@pytest.fixture
def stage(mocker, settings):
    """Stage production with the given keys (no TESTED_ON_STAGE: only this host is asked)."""
    mocker.patch.object(web, "request", return_value=web.HttpAnswer("http://monitoring.example.com/dashboard", 200, 0.1))

    def make(**keys):
        mocker.patch("tasks.base.load_settings", return_value=dataclasses.replace(
            settings, tested_on_stage=None, checklist_blocking=(), **keys))
    return make


def row(out: str, check: str = "migrations_breaking") -> tuple[str, str]:
    line = next(line for line in out.splitlines() if f"  {check}  " in line)
    result, detail = line.split(f"  {check}  ", 1)[1].strip().split(None, 1)
    return result, detail


def test_recreate_warns_naming_revision_file_operation_and_why(mocker, capsys, stage):
    stage(strategy="recreate")
    code, out, err, remote = run_task(mocker, capsys, checklist, at_v2_with_v3())
    assert code == 0, err
    assert row(out) == ("warn", "breaks the code still serving (the old release serves during the migration): 0003: "
                                "alter_column(new_column_name) documents.summary; review, then mark with "
                                "'# deploy: reviewed-breaking-change <who/why>' in the file or REVIEWED_MIGRATIONS=0003")
    assert (f"! 0003 {V3}:22 alter_column(new_column_name) documents.summary: renamed to abstract: the code still "
            "serving uses the old column name: its queries fail with 'column does not exist'") in out
    # one command read the pending file at the incoming ref, nothing else was asked for it
    assert [c for c in remote.commands if "@@ai-doc-qa-source@@" in c] == [
        f"for f in {V3}; do echo @@ai-doc-qa-source@@\"$f\"; git -C /app/ai-doc-qa show origin/main:\"$f\" 2>/dev/null "
        "|| echo @@ai-doc-qa-no-source@@\"$f\"; echo; done"]


def test_blue_green_blocks_with_exit_9_and_says_how_to_mark_it_reviewed(mocker, capsys, stage):
    stage(strategy="blue-green", reviewed_migrations=("0001",))
    code, out, err, remote = run_task(mocker, capsys, checklist, at_v2_with_v3())
    assert code == 9
    assert row(out)[0] == "BLOCK"
    block = flat(err)
    assert f"Details: | 0003 {V3}:22 alter_column(new_column_name) documents.summary: renamed to abstract" in block
    assert "Host state: nothing was changed (the checklist runs before any change)" in block
    assert ("Next: review 0003 (the lines above say what breaks the code still serving), then mark each reviewed: the "
            "comment '# deploy: reviewed-breaking-change <who/why>' in its revision file (committed and pushed), or "
            "REVIEWED_MIGRATIONS=0001,0003 in config/production.env; then run: fab deploy --stage production") in block
    assert "Exit code: 9" in block
    assert not [c for c in remote.commands if " up " in c or "merge" in c or "alembic upgrade" in c]


def test_blue_green_passes_a_revision_listed_in_reviewed_migrations(mocker, capsys, stage):
    stage(strategy="blue-green", reviewed_migrations=("0003",))
    code, out, err, remote = run_task(mocker, capsys, checklist, at_v2_with_v3())
    assert code == 0, err
    assert row(out) == ("ok", "0003 (reviewed, listed in REVIEWED_MIGRATIONS): alter_column(new_column_name) documents.summary")
    assert "! 0003" not in out


def test_blue_green_passes_a_revision_marked_reviewed_in_its_file(mocker, capsys, stage):
    stage(strategy="blue-green")
    code, out, err, remote = run_task(mocker, capsys, checklist, at_v2_with_v3(MARKED))
    assert code == 0, err
    assert row(out) == ("ok", "0003 (reviewed, line 12: alice: v2 is stopped before this runs): "
                              "alter_column(new_column_name) documents.summary")


def test_blue_green_blocks_a_pending_file_it_cannot_read(mocker, capsys, stage):
    """The file is missing at the incoming ref (or git failed): nobody can say it is safe."""
    stage(strategy="blue-green")
    missing = f"@@ai-doc-qa-source@@{V3}\n@@ai-doc-qa-no-source@@{V3}\n\n"
    code, out, err, remote = run_task(mocker, capsys, checklist, at_v2_with_v3(missing))
    assert code == 9
    assert row(out)[1].startswith("breaks the code still serving (the old slot serves during and after the migration): "
                                  "0003: cannot analyse")


def test_nothing_pending_reads_no_file(mocker, capsys, stage):
    stage(strategy="blue-green")
    code, out, err, remote = run_task(mocker, capsys, checklist, production(
        (r"(?:exec -T backend|^docker exec [0-9a-f]{64}) (?:sh -c .*\|\| )?alembic current", alembic_current("alembic-current-v2.txt"))))
    assert code == 0, err
    assert row(out) == ("ok", "no pending revision")
    assert not [c for c in remote.commands if "@@ai-doc-qa-source@@" in c]


def test_an_unknown_database_revision_warns_and_does_not_block(mocker, capsys, stage):
    stage(strategy="blue-green")
    code, out, err, remote = run_task(mocker, capsys, checklist, production(
        (r"(?:exec -T backend|^docker exec [0-9a-f]{64}) (?:sh -c .*\|\| )?alembic current", Result(stdout="", stderr="FAILED: Can't locate revision identified by '0009'\n",
                                                      exited=255))))
    assert code == 0, err
    assert row(out) == ("warn", "cannot tell which revisions are pending (alembic current failed: "
                                "FAILED: Can't locate revision identified by '0009')")


def test_a_revision_file_whose_name_cannot_be_quoted_is_left_unread_and_needs_review(mocker, capsys, stage):
    """A name with a quote in the repo: no command is built with it (no traceback); nobody can say it is safe."""
    stage(strategy="blue-green")
    odd = "migrations/versions/0003_it's.py"
    grep = GREP_V3.replace(V3, odd)
    code, out, err, remote = run_task(mocker, capsys, checklist, production(
        (r" grep -E ", grep), (r"(?:exec -T backend|^docker exec [0-9a-f]{64}) (?:sh -c .*\|\| )?alembic current", alembic_current("alembic-current-v2.txt"))))
    assert code == 9 and "Traceback" not in err
    assert row(out)[1].startswith("breaks the code still serving (the old slot serves during and after the migration): "
                                  "0003: cannot analyse")
    assert not [c for c in remote.commands if "@@ai-doc-qa-source@@" in c]
