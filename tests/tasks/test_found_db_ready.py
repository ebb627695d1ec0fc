"""(Found by an adversary pass.) db ready is polled with DB_READY_COMMAND even while Docker's
healthcheck says healthy (988a352 trusted that status; reverted for what follows).

Docker's `healthy` is the result of the LAST healthcheck, which may be up to interval x retries
old (30 s x 3 with Docker's defaults, 2 s x 5 in the sandbox). A postgres that is in crash
recovery (a backend was OOM-killed: the postmaster restarts all backends and replays WAL, the
container keeps running and is NOT restarted, so Docker does not reset the status to
`starting`) rejects connections while Docker still says `healthy`. Before 988a352 the deploy
polled DB_READY_COMMAND (pg_isready: "rejecting connections", exit 1) and waited for the
recovery; now it migrates at once, and the migration fails, blamed on the migration.
"""
from __future__ import annotations

import threading
import time

from invoke import Result

from config import load_settings
from tests.tasks.scripted import flat
from tests.tasks.scripted_host import NEW, ScriptedHost
from tests.tasks.test_prefetch import deploy_on

RECOVERS_AFTER = 1.5      # seconds after `up -d -- postgres redis`; DB_READY_TIMEOUT is 60, HEALTH_INTERVAL 1


def recovering_database(host: ScriptedHost):
    """postgres in crash recovery for RECOVERS_AFTER s from the deps' `up`; Docker still says healthy."""
    since: dict = {}
    lock = threading.Lock()

    def up(command):
        with lock:
            since.setdefault("t", time.monotonic())
        return host.up(command)

    def recovered():
        return "t" in since and time.monotonic() - since["t"] >= RECOVERS_AFTER

    def pg_isready(command):
        if recovered():
            return Result(stdout="/var/run/postgresql:5432 - accepting connections\n", exited=0)
        return Result(stdout="/var/run/postgresql:5432 - rejecting connections\n", exited=1)

    def migrate(command):
        if recovered():
            return host.migrate(command)
        return Result(stdout="@@before\n", stderr="sqlalchemy.exc.OperationalError: (psycopg2.OperationalError) "
                      "connection to server at \"postgres\" (172.18.0.2), port 5432 failed: FATAL:  the database "
                      "system is in recovery mode\n", exited=1)

    def current(command):
        if recovered():
            return host.current(command)
        return Result(stdout="", stderr="FATAL:  the database system is in recovery mode\n", exited=1)
    return [
        (r" up -d -- postgres redis$", up),
        (r"( exec -T postgres|^docker exec [0-9a-f]{64}) sh -c 'pg_isready", pg_isready),
        (r"( (exec|run --rm) -T backend|^docker exec [0-9a-f]{64}) sh -c 'py=\$\(command -v python3", migrate),
        (r"( (exec|run --rm) -T backend|^docker exec [0-9a-f]{64}) alembic current$", current),
    ]


def test_a_database_in_crash_recovery_that_docker_still_calls_healthy_is_waited_for(mocker, capsys):
    """Docker's last healthcheck passed (healthy) but postgres rejects connections for 1.5 s: the
    deploy must wait for DB_READY_COMMAND (as it did before 988a352), not migrate into it."""
    st = load_settings("production", {})
    host = ScriptedHost(st.services, st.dependency_services)
    code, out, err, commands = deploy_on(mocker, capsys, host, [
        (r" diff --quiet ", Result(stdout=NEW + "\n", exited=0)), *recovering_database(host)])
    assert code == 0, flat(err)
    assert any("pg_isready" in c for c in commands), "DB_READY_COMMAND was never polled"


def test_when_the_database_is_not_ready_the_error_does_not_blame_the_migration(mocker, capsys):
    """A database that rejects connections (and never recovers here) must not be reported as a
    broken migration ("fix the migration and re-run") of a database "at revision unknown (was
    base)" (it is at 0001: the read before failed). Before 988a352: "postgres did not accept
    connections within 0.5 s", next step fab check-db --fix."""
    mocker.patch("tasks.migrate.time.sleep")          # (the old poll: give up fast)
    mocker.patch.dict("os.environ", {"DEPLOY_DB_READY_TIMEOUT": "0.5"})
    st = load_settings("production", {})
    host = ScriptedHost(st.services, st.dependency_services)
    global RECOVERS_AFTER
    saved, RECOVERS_AFTER = RECOVERS_AFTER, 3600.0
    try:
        code, out, err, commands = deploy_on(mocker, capsys, host, [
            (r" diff --quiet ", Result(stdout=NEW + "\n", exited=0)), *recovering_database(host)])
    finally:
        RECOVERS_AFTER = saved
    text = flat(err)
    assert code != 0
    assert not any(" up -d" in c and "postgres" not in c for c in commands)      # safe: nothing switched
    assert any("echo released" in c for c in commands)                         # safe: the lock was released
    assert "still serving the old version" in text                              # safe: and says so
    assert "fix the migration" not in text, text
    assert "(was base)" not in text, text        # the database was at 0001: its read failed, it is not at base


def test_a_configured_db_ready_command_that_checks_more_than_docker_is_still_run(mocker, capsys):
    """(design risk) DB_READY_COMMAND is the operator's definition of "ready" (here: the app's
    database exists and answers with the app's role, which the compose file's healthcheck,
    pg_isready -h 127.0.0.1 -U postgres, does not check). It is skipped whenever Docker says healthy."""
    cmd = "psql -U app -d app -tAc 'select 1'"
    mocker.patch.dict("os.environ", {"DEPLOY_DB_READY_COMMAND": cmd})
    st = load_settings("production", {})
    host = ScriptedHost(st.services, st.dependency_services)
    code, out, err, commands = deploy_on(mocker, capsys, host, [
        (r" diff --quiet ", Result(stdout=NEW + "\n", exited=0)),
        (r"( exec -T postgres|^docker exec [0-9a-f]{64}) sh -c 'psql -U app", Result(stdout="1\n", exited=0))])
    assert code == 0, flat(err)
    assert any("psql -U app -d app" in c for c in commands), "the configured DB_READY_COMMAND was never run"
