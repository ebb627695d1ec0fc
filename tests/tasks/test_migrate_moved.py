"""The migration runs only from the revisions the checklist read (tasks/migrate.py, exit 98 of
MIGRATE_SCRIPT): the error it gives, and what is not taken for it."""
import pytest
from invoke import Result

from commands import alembic as alembic_cmd
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
