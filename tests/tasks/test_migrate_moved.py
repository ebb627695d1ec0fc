"""The migration runs only from the revisions the checklist read (tasks/migrate.py, exit 98 of
MIGRATE_SCRIPT): the error it gives, and what is not taken for it."""
import dataclasses
import shlex

import pytest
from invoke import Result

from commands import alembic as alembic_cmd
from config import ConfigError, load_settings
from tasks import checklist
from tasks import migrate as migrate_mod
from tasks.errors import DeployError
from tests.tasks.scripted import COMPOSE_V2, Containers, all_of

MIGRATE = r"sh -c 'py=\$\(command -v python3.*@@upgrade"


def upgrade(make_session, answer, source="alembic_version table"):
    containers = Containers(*all_of())
    s, remote = make_session([COMPOSE_V2, (MIGRATE, answer), (r"alembic current'?$", Result(stdout="0002 (head)\n", exited=0)),
                              *containers.script()])
    s.state.checked_revision, s.state.checked_revision_source = ["0001"], source
    migrate_mod.upgrade(s)
    return s, remote


def test_a_database_moved_since_the_checklist_is_not_migrated_and_the_block_says_both_reads(make_session):
    with pytest.raises(DeployError) as exc:
        upgrade(make_session, Result(stdout="@@before\n0002 (head)\n@@moved\n", exited=alembic_cmd.MOVED))
    err = exc.value
    assert "the database is at revision 0002 (alembic current, in the migrating process), but the checklist checked " \
           "the pending migrations from 0001 (read by alembic_version table): nothing was migrated" in err.what
    assert "env.py uses another database or version table" in err.next_step
    assert len(err.command) < 400 and err.command.endswith("sh --expect 0001") and "import" not in err.command
    assert "@@" not in str(err.output)


def test_exit_98_after_the_upgrade_began_is_a_failed_migration_not_a_moved_database(make_session):
    """A migration that exits 98 itself: the upgrade ran, so "nothing was migrated" would be false."""
    answer = Result(stdout="@@before\n0001 (head)\n@@upgrade\nINFO  Running upgrade 0001 -> 0002\n", exited=alembic_cmd.MOVED)
    with pytest.raises(DeployError) as exc:
        upgrade(make_session, answer)
    assert "alembic upgrade head failed" in exc.value.what and "nothing was migrated" not in exc.value.what


def test_the_migration_passes_what_the_checklist_read(make_session):
    ok = Result(stdout="@@before\n0001 (head)\n@@upgrade\n@@after\n0002 (head)\n@@history\n", exited=0)
    s, remote = upgrade(make_session, ok)
    assert [c for c in remote.commands if "@@upgrade" in c][0].endswith(" sh --expect 0001")


@pytest.mark.parametrize("read, expected", [("table", alembic_cmd.REVISION), ("alembic", alembic_cmd.CURRENT)])
def test_db_revision_read_chooses_how_the_checklist_reads_the_revision(make_session, settings, read, expected):
    """DB_REVISION_READ=alembic: the way out for an app whose env.py migrates another database or
    version table than DATABASE_URL's alembic_version (the table read would disagree for good)."""
    containers = Containers(*all_of())
    answer = Result(stdout="@@alembic_version\n0001\n" if read == "table" else "0001 (head)\n", exited=0)
    s, remote = make_session([COMPOSE_V2, (r"alembic current'?$", answer), *containers.script()],
                             settings=dataclasses.replace(settings, db_revision_read=read))
    assert checklist.current_db_revision(s) == (["0001"], "")
    assert remote.commands[-1].endswith(" " + shlex.join(expected))
    assert s.state.checked_revision_source == ("alembic_version table" if read == "table" else "alembic current")


def test_db_revision_read_accepts_only_table_or_alembic():
    assert load_settings("production", {"DEPLOY_DB_REVISION_READ": "alembic"}).db_revision_read == "alembic"
    with pytest.raises(ConfigError):
        load_settings("production", {"DEPLOY_DB_REVISION_READ": "psql"})
