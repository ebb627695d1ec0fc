"""Runbook 2 (fab migrate) through the task layer and the real flow on a scripted host: the
commands in order, the revision before and after (from captured alembic output), and the state a
failure leaves (services never touched)."""
import os
import shlex
import signal
import time

import pytest
from invoke import Result

from commands import alembic as alembic_cmd
from tasks import migrate as migrate_mod
from tasks.errors import DeployError
from tasks.migrate import migrate
from tests.conftest import CAPTURED, captured
from tests.tasks.scripted import COMPOSE_V2, IMAGE_INSPECT, LOCK, Containers, all_of, flat, records, run_task

COMPOSE = "cd /app/ai-doc-qa && docker compose -f docker-compose.production.yml"
BACKEND_ID = "1412bcba4a5367de5f3d065e470ffd7aa735bb7a075b1c908c04cc45bf43f989"     # in docker-inspect-all-v1-healthy.json
POSTGRES_ID = "708ab6e153a820fa55333f0c1e9e10a8321d63563bfa4b2670a68b1617d18d4f"
MIGRATE = r"(exec -T backend|^docker exec [0-9a-f]{64}) sh -c 'py=\$\(command -v python3"
FIRST_DEPLOY = r"run --rm -T backend sh -c 'py=\$\(command -v python3"


def alembic(name):
    """A captured alembic command as MIGRATE_SCRIPT sees it: its log lines (stderr in the capture,
    ``2>&1`` in the script) before its output; Compose's own warning stays on the host's stderr."""
    stderr = captured(name + ".stderr") if os.path.exists(os.path.join(CAPTURED, name + ".stderr")) else ""
    return "".join(line for line in stderr.splitlines(True) if line.startswith("INFO")) + captured(name)

WARNING = captured("alembic-current-v2.txt.stderr").splitlines()[0]


def migrate_output(before, upgrade, after, history):
    return Result(stdout=("@@before\n" + alembic(before) + "@@upgrade\n" + alembic(upgrade) + "@@after\n" + alembic(after)
                          + "@@history\n" + alembic(history)), stderr=WARNING + "\n", exited=0)


V1_TO_V2 = migrate_output("alembic-current-v1.txt", "alembic-upgrade-head-v2.txt", "alembic-current-v2.txt",
                          "alembic-history-v2.txt")
NOTHING_PENDING = migrate_output("alembic-current-v1.txt", "alembic-upgrade-head-v2.txt", "alembic-current-v1.txt",
                                 "alembic-history-v1.txt")


def host(*first, running=True):
    containers = Containers(*all_of()) if running else Containers()
    return [*LOCK, *first, *containers.script(), (IMAGE_INSPECT, ""),
            (r"curl ", Result(stdout='{"version": "v1"}\n@@status 200 0.01\n', exited=0))]


def test_migrate_starts_the_database_waits_and_upgrades_in_one_round_trip(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, migrate, host((MIGRATE, V1_TO_V2)))
    assert code == 0, err
    steps = [c for c in remote.commands if c.startswith((f"{COMPOSE} up ", "docker exec "))]
    assert steps[0] == f"{COMPOSE} up -d -- postgres redis"
    # `docker exec` into the one running container of each service (found by Compose's labels, no
    # Compose start), as `compose exec -T` would pick it.
    assert steps[1] == f"docker exec {POSTGRES_ID} sh -c 'pg_isready -U postgres'"
    assert steps[2] == f"docker exec {BACKEND_ID} sh -c {shlex.quote(alembic_cmd.MIGRATE_SCRIPT)}"
    assert "      migrations applied: database at revision 0002 (was 0001)" in out
    assert "      alembic history (newest first):" in out
    assert "        0001 -> 0002 (head)  add summary column to documents" in out
    assert "        <base> -> 0001  create documents table" in out
    evs = records(remote)
    assert [e for e in evs if e["event"] == "migrations"][0] | {"at": 0} == {
        "v": 1, "release": evs[0]["release"], "event": "migrations", "at": 0, "before": ["0001"], "after": ["0002"], "early": False}
    assert evs[-1]["outcome"] == "success"
    assert not [c for c in remote.commands if " pull " in c or "docker tag" in c or " up -d --no-deps" in c]


def test_migrate_with_nothing_pending_says_so(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, migrate, host((MIGRATE, NOTHING_PENDING)))
    assert code == 0, err
    assert "      database at revision 0001 (no pending migrations)" in out
    assert "        <base> -> 0001 (head)  create documents table" in out


def test_a_first_deploy_migrates_through_run_rm(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, migrate, host((FIRST_DEPLOY, V1_TO_V2), running=False))
    assert code == 0, err
    assert "      no running backend container: using `run --rm` (first deploy)" in out
    assert not [c for c in remote.commands if "exec -T backend" in c or c.startswith("docker exec ")]


def test_a_failed_migration_reports_the_revision_the_database_is_at_and_touches_no_service(mocker, capsys):
    failed = Result(stdout=("@@before\n" + alembic("alembic-current-v1.txt") + "@@upgrade\n"
                            + alembic("alembic-upgrade-head-v2.txt").replace("0001 -> 0002, add summary column to documents",
                                                                             "0002 -> 0003, bad")
                            + 'sqlalchemy.exc.ProgrammingError: relation "no_such_table" does not exist\n'),
                    stderr=WARNING + "\n", exited=1)
    current = Result(stdout=captured("alembic-current-v1.txt"), stderr=captured("alembic-current-v1.txt.stderr"), exited=0)
    code, out, err, remote = run_task(mocker, capsys, migrate, host((MIGRATE, failed), (r"alembic current$", current)))
    assert code == 3
    assert "✗ FAILED at migrate › alembic" in err
    assert "alembic upgrade head failed: exited with code 1" in flat(err)
    output = err.split("Output (last lines):")[1].split("Host state:")[0]
    assert 'relation "no_such_table" does not exist' in output and "Running upgrade 0002 -> 0003, bad" in output
    assert "@@" not in output and "0001 (head)" not in output      # the upgrade's own output, not the whole script's
    assert "migration failed: database at revision 0001 (was 0001); services not changed" in flat(err)
    assert "fix the migration and re-run fab deploy (the services were not changed)" in flat(err)
    assert "Escalate: Database corruption / database failure -> DBA Team" in flat(err)
    end = records(remote)[-1]
    assert end["outcome"] == "failed" and end["error"]["step"] == "migrate › alembic"


def test_a_failed_migration_whose_revision_cannot_be_read_says_unknown(mocker, capsys):
    failed = Result(stdout="@@before\n0001 (head)\n@@upgrade\nboom\n", exited=1)
    code, out, err, remote = run_task(mocker, capsys, migrate, host(
        (MIGRATE, failed), (r"alembic current$", Result(stdout="", stderr="container is restarting", exited=1))))
    assert code == 3
    assert "migration failed: database at revision unknown (was 0001)" in flat(err)


def test_postgres_that_does_not_start_is_a_database_error(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, migrate, host(
        (r" up -d -- postgres redis$", Result(stdout="", stderr="Error response from daemon: driver failed", exited=1))))
    assert code == 3
    assert "✗ FAILED at migrate › deps up" in err
    assert "starting postgres, redis failed: exited with code 1" in flat(err)
    assert "Next: fab -H deploy@ai-doc-qa.example.com check-db" in flat(err)
    assert not [c for c in remote.commands if "alembic" in c]


# ---- the pieces, on a session -------------------------------------------------------------------------

@pytest.fixture
def session(make_session):
    def make(*script, **kw):
        return make_session([COMPOSE_V2, *script], **kw)
    return make


def test_wait_db_polls_until_postgres_accepts_connections(session, mocker):
    answers = iter([Result(stdout="127.0.0.1:5433 - no response", exited=2), Result(stdout="accepting", exited=0)])
    s, remote = session((r"pg_isready", lambda cmd: next(answers)))
    sleep = mocker.patch.object(migrate_mod.time, "sleep")
    migrate_mod.wait_db(s)
    assert sleep.call_count == 1 and sum("pg_isready" in c for c in remote.commands) == 2


def test_wait_db_gives_up_at_its_deadline(session, mocker):
    now = [0.0]
    mocker.patch.object(migrate_mod.time, "monotonic", side_effect=lambda: now[0])
    mocker.patch.object(migrate_mod.time, "sleep", side_effect=lambda t: now.__setitem__(0, now[0] + t))
    s, remote = session((r"pg_isready", Result(stdout="127.0.0.1:5433 - no response", exited=2)))
    with pytest.raises(DeployError) as exc:
        migrate_mod.wait_db(s)
    err = exc.value
    assert err.what == "postgres did not accept connections within 60 s"
    assert err.kind == "database" and err.step == "migrate › db ready" and err.output == "127.0.0.1:5433 - no response"
    assert err.next_step == "fab -H deploy@prod check-db   (add --fix to restart postgres)"


def test_dry_run_reads_the_revision_and_changes_nothing(session, capsys):
    s, remote = session(*Containers(*all_of()).script(),
                        (r"alembic current$", Result(stdout=captured("alembic-current-v1.txt"), exited=0)), dry=True)
    migrate_mod.deps_up(s)
    migrate_mod.wait_db(s)
    migrate_mod.upgrade(s)
    out = capsys.readouterr().out
    assert f"[dry] would run: {COMPOSE} up -d -- postgres redis" in out
    assert "[dry] would poll until postgres accepts connections" in out
    assert "[dry] database at 0001; would run alembic upgrade head" in out
    assert not [c for c in remote.commands if " up " in c or "pg_isready" in c or "upgrade" in c]


def test_no_dependency_services_means_nothing_to_start(session, settings):
    import dataclasses
    s, remote = session(settings=dataclasses.replace(settings, dependency_services=()))
    migrate_mod.deps_up(s)
    assert remote.commands == []


def test_migrate_step_times_each_part(session):
    from tasks.steps import RunOptions
    s, remote = session(*Containers(*all_of()).script(), (MIGRATE, V1_TO_V2))
    migrate_mod.migrate_step(s, RunOptions("migrate"))
    assert [(t.step, t.sub) for t in s.timer.timings] == [("migrate", "deps up"), ("migrate", "db ready"),
                                                         ("migrate", "alembic")]
    assert s.state.migrations == "migrations applied: database at revision 0002 (was 0001)"


def test_ctrl_c_during_the_migration_lets_it_finish_and_the_outcome_says_where_the_database_is(mocker, capsys):
    """Adversary, this session: the migration was let finish after Ctrl-C, but the outcome named
    the code and the images, not the database (left at 0002)."""
    def interrupted(command):
        os.kill(os.getpid(), signal.SIGINT)         # Ctrl-C while the migration runs on the host
        time.sleep(0.3)
        return V1_TO_V2
    current = Result(stdout=captured("alembic-current-v2.txt"), stderr=captured("alembic-current-v2.txt.stderr"), exited=0)
    code, out, err, remote = run_task(mocker, capsys, migrate, host((MIGRATE, interrupted), (r"alembic current$", current)))
    assert code == 130, out + err
    state = "alembic upgrade head was let finish after the interrupt: database at revision 0002; services not changed"
    assert state in flat(out)
    assert records(remote)[-1]["outcome"] == "aborted" and records(remote)[-1]["migrations"] == state


def test_a_lost_connection_during_the_migration_once_back_names_the_revision_it_left(mocker, capsys):
    """The connection went during the migration and came back: the migration was let finish on
    the host (kill_running), then the database's revision is read (it said "may be at the new
    revision")."""
    def lost(command):
        raise OSError("Socket is closed")
    current = Result(stdout=captured("alembic-current-v2.txt"), stderr=captured("alembic-current-v2.txt.stderr"), exited=0)
    kill = mocker.spy(migrate_mod.Session, "kill_running")
    code, out, err, remote = run_task(mocker, capsys, migrate, host((MIGRATE, lost), (r"alembic current$", current)))
    assert code == 5, out + err
    state = ("alembic upgrade head was let finish after the SSH connection was lost and came back: database at revision "
             "0002; services not changed")
    assert f"Host state: still serving the old version: v1 (backend 54108187d377, model_server 5ea9bf2b66a1, proxy 08bad6c75c0b); {state}" in flat(err), flat(err)
    assert "the SSH connection was re-established" in flat(err)
    assert kill.call_count == 1 and out.count("letting this run's commands that change the host finish") == 1
    assert records(remote)[-1]["migrations"] == state
    assert [c for c in remote.commands if "stop_tagged" in c or "-keep" in c]


def test_a_second_loss_during_the_revision_read_leaves_the_flow_to_stop_the_runs_commands(mocker, capsys):
    """Adversary: the read of the revision cut off by a second loss still marked the error as
    reconnected, so the flow did not stop the run's commands (its `alembic current` ran on) while
    the block said they were stopped."""
    def lost(command):
        raise OSError("Socket is closed")
    kill = mocker.spy(migrate_mod.Session, "kill_running")
    code, out, err, remote = run_task(mocker, capsys, migrate, host((MIGRATE, lost), (r"alembic current$", lost)))
    assert code == 5, out + err
    assert kill.call_count == 2         # the step's, then the flow's after the second loss
    assert ("alembic upgrade head was let finish after the SSH connection was lost and came back; database revision "
            "unknown: fab -H deploy@ai-doc-qa.example.com check-db") in flat(err)


def test_a_lost_connection_during_the_migration_says_the_database_may_have_moved(mocker, capsys):
    def lost(command):
        raise OSError("Socket is closed")
    mocker.patch.object(migrate_mod.Session, "kill_running", return_value=False)      # the host stays unreachable
    code, out, err, remote = run_task(mocker, capsys, migrate, host((MIGRATE, lost)))
    assert code == 5, out + err
    assert ("Host state: unknown: the last command may or may not have finished on the host; alembic upgrade head was "
            "started: the database may be at the new revision (fab -H deploy@ai-doc-qa.example.com check-db)") in flat(err)
