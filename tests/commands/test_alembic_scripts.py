"""The shell scripts commands/alembic.py runs in the backend container, run here for real by
``sh`` with this test's Python as the container's ``python3``: stand-in Postgres drivers
(psycopg2 / psycopg modules on PYTHONPATH) and a stand-in ``alembic`` (a package for the
one-process path, an executable for the CLI path) record what they were asked. The real driver,
alembic and database are proved on the staging host (tests/integration/test_migration_safety_staging.py)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from commands import alembic

SECRET_URL = "postgresql+psycopg2://app:s3cr3t-pw@127.0.0.1:5433/docqa?sslmode=disable"

DRIVER = '''
import os
def connect(dsn, connect_timeout=None, options=None):
    with open(os.environ["T_LOG"], "a") as f:
        f.write(f"connect {dsn} timeout={connect_timeout} options={options}\\n")
    if os.environ.get("T_FAIL") == "connect":
        raise RuntimeError("could not connect to " + dsn)
    return Conn()
class Conn:
    def cursor(self):
        return Cursor()
    def close(self):
        pass
class Cursor:
    def execute(self, sql):
        if os.environ.get("T_FAIL") == "table":
            raise RuntimeError('relation "alembic_version" does not exist')
        self.sql = sql
    def fetchall(self):
        return [(None if r == "NULL" else r,) for r in os.environ.get("T_ROWS", "").split()]
'''

# The stand-in alembic: `current` prints T_CURRENT (stdout) and a log line (stderr); `upgrade`
# writes "upgraded" to T_LOG. Like alembic's Config, print() targets the sys.stdout of import time.
ALEMBIC_CONFIG = '''
import os, sys
class Config:
    def __init__(self, stdout=sys.stdout):
        self.stdout = stdout
def main(argv=None, prog=None):
    cfg = Config()
    with open(os.environ["T_LOG"], "a") as f:
        f.write(" ".join(argv) + "\\n")
    if argv == ["current"]:
        print("INFO  [alembic.runtime.migration] Context impl PostgresqlImpl.", file=sys.stderr)
        if os.environ.get("T_CURRENT_FAILS"):
            sys.exit(255)
        cfg.stdout.writelines([os.environ.get("T_CURRENT", "")])
    elif argv == ["upgrade", "head"]:
        cfg.stdout.write("upgraded\\n")
'''

ALEMBIC_CLI = '''#!/bin/sh
echo "$*" >> "$T_LOG"
case "$1" in
  current) echo "INFO  [alembic.runtime.migration] Context impl PostgresqlImpl." >&2
           [ -n "$T_CURRENT_FAILS" ] && exit 255; printf '%b' "$T_CURRENT" ;;
  upgrade) echo upgraded ;;
esac
'''


@pytest.fixture
def container(tmp_path):
    """(run, log): run(script, *args, **env) -> CompletedProcess; log() -> the calls recorded."""
    bin_dir, lib = tmp_path / "bin", tmp_path / "lib"
    bin_dir.mkdir()
    lib.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    cli = bin_dir / "alembic"
    cli.write_text(ALEMBIC_CLI)
    cli.chmod(0o755)
    log = tmp_path / "calls"
    log.write_text("")

    def install(*, driver: str | None = "psycopg2", alembic_package: bool = True) -> None:
        for name in ("psycopg2", "psycopg"):
            (lib / f"{name}.py").unlink(missing_ok=True)
        if driver:
            (lib / f"{driver}.py").write_text(DRIVER)
        package = lib / "alembic"
        if alembic_package:
            package.mkdir(exist_ok=True)
            (package / "__init__.py").write_text("")
            (package / "config.py").write_text(ALEMBIC_CONFIG)
        elif package.exists():
            for f in package.iterdir():
                f.unlink()
            package.rmdir()

    def run(script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
        full = {"PATH": f"{bin_dir}:/usr/bin:/bin", "PYTHONPATH": str(lib), "T_LOG": str(log), **env}
        return subprocess.run(["sh", "-c", script, "sh", *args], capture_output=True, text=True, env=full, timeout=60)

    install()
    run.install = install
    return run, lambda: log.read_text().splitlines()


def test_the_revision_is_read_from_the_table_through_the_apps_url(container):
    run, calls = container
    r = run(alembic.REVISION_SCRIPT, DATABASE_URL=SECRET_URL, T_ROWS="0002")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "@@alembic_version\n0002\n" and r.stderr == ""
    assert alembic.parse_revision(r.stdout) == (["0002"], "alembic_version table")
    # the SQLAlchemy driver suffix is dropped: libpq reads the rest (query included) as is
    # 2 s to connect, 2 s for a lock on the table, 5 s for the query: then alembic current answers
    assert calls() == ["connect postgresql://app:s3cr3t-pw@127.0.0.1:5433/docqa?sslmode=disable timeout=2 "
                       "options=-c lock_timeout=2000 -c statement_timeout=5000"]


def test_several_heads_and_an_empty_table(container):
    run, _ = container
    assert alembic.parse_revision(run(alembic.REVISION_SCRIPT, DATABASE_URL=SECRET_URL, T_ROWS="a1 b2").stdout)[0] == ["a1", "b2"]
    assert alembic.parse_revision(run(alembic.REVISION_SCRIPT, DATABASE_URL=SECRET_URL, T_ROWS="").stdout) == \
        ([], "alembic_version table")
    assert run(alembic.REVISION_SCRIPT, DATABASE_URL=SECRET_URL, T_ROWS="NULL 0003").stdout == "@@alembic_version\n0003\n"


def test_psycopg_3_is_used_when_psycopg2_is_missing(container):
    run, calls = container
    run.install(driver="psycopg")
    r = run(alembic.REVISION_SCRIPT, DATABASE_URL="postgres://u@h/db", T_ROWS="0001")
    assert r.stdout == "@@alembic_version\n0001\n" and calls()[0].startswith("connect postgresql://u@h/db timeout=2 ")


@pytest.mark.parametrize("why, env, driver", [
    ("no driver", {"DATABASE_URL": SECRET_URL}, None),
    ("no DATABASE_URL", {}, "psycopg2"),
    ("not a Postgres URL", {"DATABASE_URL": "sqlite:////tmp/app.db"}, "psycopg2"),
    ("no connection", {"DATABASE_URL": SECRET_URL, "T_FAIL": "connect"}, "psycopg2"),
    ("no alembic_version table", {"DATABASE_URL": SECRET_URL, "T_FAIL": "table"}, "psycopg2"),
])
def test_anything_unexpected_falls_back_to_alembic_current_and_prints_nothing_of_its_own(container, why, env, driver):
    run, calls = container
    run.install(driver=driver)
    r = run(alembic.REVISION_SCRIPT, T_CURRENT="0001 (head)\n", **env)
    assert r.returncode == 0, why
    assert r.stdout == "0001 (head)\n", why                      # alembic current's answer alone
    assert "s3cr3t" not in r.stdout + r.stderr and "Traceback" not in r.stderr, why
    assert alembic.parse_revision(r.stdout) == (["0001"], "alembic current")
    assert calls()[-1] == "current"


def test_a_failing_fallback_keeps_alembics_exit_code_and_message(container):
    run, _ = container
    r = run(alembic.REVISION_SCRIPT, T_CURRENT_FAILS="1")
    assert r.returncode == 255 and "Context impl" in r.stderr


def migrate(run, *args, **env):
    r = run(alembic.MIGRATE_SCRIPT, *args, **env)
    return r, alembic.parse_migrate(r.stdout)


@pytest.mark.parametrize("path", ["one process", "cli"])
def test_the_migration_runs_from_the_revisions_the_checklist_read(container, path):
    run, calls = container
    run.install(alembic_package=path == "one process")
    r, out = migrate(run, *alembic.migrate_argv(["0001"])[4:], T_CURRENT="0001 (head)\n")
    assert r.returncode == 0, r.stdout
    assert out.before == ["0001"] and "upgraded" in out.upgrade
    assert calls() == ["current", "upgrade head", "current", "history"]


@pytest.mark.parametrize("path", ["one process", "cli"])
def test_a_database_at_other_revisions_is_not_upgraded(container, path):
    run, calls = container
    run.install(alembic_package=path == "one process")
    r, out = migrate(run, "--expect", "0001", T_CURRENT="0002 (head)\n")
    assert r.returncode == alembic.MOVED, r.stdout
    assert "@@moved" in r.stdout.splitlines() and out.before == ["0002"] and out.after is None
    assert calls() == ["current"]                                  # nothing upgraded


@pytest.mark.parametrize("path", ["one process", "cli"])
def test_expectations_compare_as_sets_of_heads_and_base_is_none(container, path):
    run, calls = container
    run.install(alembic_package=path == "one process")
    assert migrate(run, "--expect", "b2", "a1", T_CURRENT="a1 (head)\nb2 (head)\n")[0].returncode == 0
    assert migrate(run, "--expect", T_CURRENT="")[0].returncode == 0                 # empty database, as read
    assert migrate(run, "--expect", T_CURRENT="0001 (head)\n")[0].returncode == alembic.MOVED
    assert migrate(run, "--expect", "0001", T_CURRENT="")[0].returncode == alembic.MOVED
    assert migrate(run, "--expect", "0001", T_CURRENT="0001 (head)\n0002\n")[0].returncode == alembic.MOVED


@pytest.mark.parametrize("path", ["one process", "cli"])
def test_without_an_expectation_or_when_current_fails_the_upgrade_runs_as_before(container, path):
    run, calls = container
    run.install(alembic_package=path == "one process")
    assert migrate(run, T_CURRENT="0009 (head)\n")[0].returncode == 0
    assert migrate(run, "--expect", "0001", T_CURRENT_FAILS="1")[0].returncode == 0     # upgrade names the real error
    assert calls().count("upgrade head") == 2


def test_the_arguments_the_tool_passes():
    assert alembic.migrate_argv() == ["sh", "-c", alembic.MIGRATE_SCRIPT]
    assert alembic.migrate_argv([]) == ["sh", "-c", alembic.MIGRATE_SCRIPT, "sh", "--expect"]
    assert alembic.migrate_argv(["a1", "b2"])[3:] == ["sh", "--expect", "a1", "b2"]
    assert alembic.REVISION == ["sh", "-c", alembic.REVISION_SCRIPT]
    assert "\n" not in alembic.REVISION_SCRIPT + alembic.MIGRATE_SCRIPT       # one line each (plan, echo)

