"""Issue 9, target 5, on the staging host: migration 0003 (sandbox/app-v3) renames
documents.summary, which the v2 code serving selects. The checklist item migrations_breaking reads
it from origin before anything changes: STRATEGY=blue-green refuses the deploy (exit 9, migration
not run, v2 still serving, lock released) until REVIEWED_MIGRATIONS names 0003; STRATEGY=recreate
warns and deploys."""
from tests.integration.conftest import flat

STAGING = ["--stage", "staging"]
BLUE_GREEN = {"DEPLOY_STRATEGY": "blue-green"}
FILE = "migrations/versions/0003_rename_summary_to_abstract.py"


def at_v2_with_v3_offered(sandbox) -> None:
    """v2 deployed (database at 0002), then origin main and backend:latest at v3."""
    sandbox.reset("v2")
    sandbox.ctl("version", "v2")
    r = sandbox.fab("deploy", *STAGING)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sandbox.alembic_current() == "0002"
    sandbox.ctl("version", "v3")


def revision_in(sandbox, slot: str) -> str:
    """``alembic current`` through the given backend slot (under blue-green the new one serves)."""
    r = sandbox.compose("exec", "-T", slot, "alembic", "current")
    return r.stdout.strip().splitlines()[-1].split()[0] if r.stdout.strip() else ""


def test_blue_green_refuses_a_migration_breaking_the_old_slot_until_it_is_reviewed(sandbox):
    at_v2_with_v3_offered(sandbox)
    head = sandbox.head()
    r = sandbox.fab("deploy", *STAGING, env=BLUE_GREEN)
    out = flat(r)
    assert r.returncode == 9, r.stdout + r.stderr
    assert "Traceback" not in out
    assert "migrations_breaking BLOCK" in out
    assert f"0003 {FILE}:22 alter_column(new_column_name) documents.summary" in out      # revision, file, operation
    assert "the code still serving uses the old column name" in out                        # why it breaks
    assert "REVIEWED_MIGRATIONS=0003 in config/staging.env" in out                        # how to mark it reviewed
    assert "Exit code: 9" in out
    assert sandbox.alembic_current() == "0002"                   # the migration did not run
    assert sandbox.head() == head                                # nor the pull
    assert sandbox.version() == "v2" and "summary" in sandbox.documents()[0]
    assert not sandbox.lock_held()

    r = sandbox.fab("deploy", *STAGING, env={**BLUE_GREEN, "DEPLOY_REVIEWED_MIGRATIONS": "0003"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0003 (reviewed, listed in REVIEWED_MIGRATIONS): alter_column(new_column_name) documents.summary" in flat(r)
    assert revision_in(sandbox, "backend_green") == "0003" and sandbox.version() == "v3"
    assert "abstract" in sandbox.documents()[0]


def test_recreate_warns_about_a_breaking_migration_and_deploys(sandbox):
    at_v2_with_v3_offered(sandbox)
    r = sandbox.fab("deploy", *STAGING)
    out = flat(r)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "migrations_breaking warn" in out
    assert (f"! 0003 {FILE}:22 alter_column(new_column_name) documents.summary: renamed to abstract: "
            "the code still serving uses the old column name") in out
    assert sandbox.alembic_current() == "0003" and sandbox.version() == "v3"
