"""Issue 9, target 5, on the staging host: migration 0003 (sandbox/app-v3) renames
documents.summary, which the v2 code serving selects. The checklist item migrations_breaking reads
it from origin before anything changes: STRATEGY=blue-green refuses the deploy (exit 9, migration
not run, v2 still serving, lock released) until REVIEWED_MIGRATIONS names 0003; STRATEGY=recreate
warns and deploys. And the checklist's read of the revision is what the migration starts from."""
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from commands import alembic
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


def set_revision(sandbox, revision: str) -> None:
    """Write alembic_version by hand, as someone migrating outside the tool would."""
    sql = f"UPDATE alembic_version SET version_num = '{revision}'"
    r = sandbox.compose("exec", "-T", "backend", "python3", "-c",
                        "import os, psycopg2; c = psycopg2.connect(os.environ['DATABASE_URL']); c.autocommit = True; "
                        f"c.cursor().execute({sql!r})")
    assert r.returncode == 0, r.stdout + r.stderr


class MovesTheDatabase(BaseHTTPRequestHandler):
    """The on-call webhook: when the checklist posts deploy_starting (after it read the database
    revision, before anything changes), the database is moved to 0002 by hand, then it answers."""
    sandbox = None
    moved = threading.Event()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if b"deploy_starting" in body and not self.moved.is_set():
            set_revision(self.sandbox, "0002")
            self.moved.set()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_database_moved_after_the_checklist_read_it_nothing_is_migrated(sandbox):
    """The checklist reads the revision from the alembic_version table (0001: 0002 pending and
    checked). Between the checklist and the migration the database is moved to 0002 by hand: the
    migration refuses (alembic's own `current`, in the upgrading process, is not what was
    checked), nothing is upgraded or restarted, v1 still serves, the lock is released; with the
    database put back, the re-run deploys."""
    sandbox.reset()
    sandbox.ctl("version", "v2")
    MovesTheDatabase.sandbox = sandbox
    MovesTheDatabase.moved.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), MovesTheDatabase)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    backend_before = sandbox.container("backend")["Id"]
    try:
        r = sandbox.fab("deploy", *STAGING, env={"DEPLOY_STAGING_WEBHOOK_URL": f"http://127.0.0.1:{server.server_port}/hook"})
    finally:
        server.shutdown()
    out = flat(r)
    assert MovesTheDatabase.moved.is_set()
    assert r.returncode == 3 and "Traceback" not in out, out
    assert "current 0001 -> head 0002" in out, out          # what the checklist read and checked
    assert ("the database is at revision 0002 (alembic current, in the migrating process), but the checklist checked "
            "the pending migrations from 0001 (read by alembic_version table): nothing was migrated") in out, out
    assert "Running upgrade" not in out
    assert sandbox.version() == "v1" and sandbox.container("backend")["Id"] == backend_before
    assert sandbox.alembic_current() == "0002" and not sandbox.lock_held()
    set_revision(sandbox, "0001")
    r = sandbox.fab("deploy", *STAGING)
    assert r.returncode == 0, flat(r)
    assert sandbox.version() == "v2" and sandbox.alembic_current() == "0002"


def test_the_checklist_reads_the_revision_from_the_table_and_alembic_agrees(sandbox):
    """On the staging host the backend's Python and psycopg2 read alembic_version through the
    app's DATABASE_URL (not the `alembic current` fallback), and the answer is alembic's."""
    sandbox.reset()
    r = sandbox.compose("exec", "-T", "backend", *alembic.REVISION)
    assert r.returncode == 0, r.stdout + r.stderr
    assert alembic.parse_revision(r.stdout) == (["0001"], "alembic_version table"), r.stdout
    assert sandbox.alembic_current() == "0001"
