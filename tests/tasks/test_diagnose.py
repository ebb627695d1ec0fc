"""Common Issues through the task layer: check-restarts, check-db, check-model-server and diagnose,
on a scripted host that answers with real captured output (tests/fixtures/captured/README.md).
Each test asserts what the operator reads (the findings, the error block's Next line), the exit
code, and the commands issued (only --fix changes anything)."""
import json

import pytest
from invoke import Result

from tasks import diagnose as diagnose_mod
from tasks.diagnose import check_db, check_model_server, check_restarts, diagnose
from tests.conftest import captured
from tests.tasks.scripted import Containers, container, flat, run_task

HOST = "deploy@ai-doc-qa.example.com"
CONTEXT_ADVICE = ("If OOM, increase the memory limit or reduce the context size: edit CONTEXT_SIZE (now {ctx}) "
                  "or mem_limit for model_server in docker-compose.production.yml, then redeploy")


def stats(fixture):
    """`docker stats ... -- NAMES`: the captured lines of the names asked for."""
    def answer(command):
        names = command.split(" -- ", 1)[1].split()
        return "".join(line + "\n" for line in captured(fixture).splitlines()
                       if json.loads(line)["Name"] in names)
    return answer


def logs(fixture):
    return Result(stdout=captured(fixture), stderr=captured(fixture + ".stderr"), exited=0)


def db_check_fails():
    name = "compose-v2-exec-backend-db-check-postgres-down.txt"
    return Result(stdout=captured(name), stderr=captured(name + ".stderr"), exited=1)


DB_CHECK = r"exec -T backend sh -c"
CONNECTED = (DB_CHECK, Result(stdout="", exited=0))


@pytest.fixture
def degraded():
    """The captured degraded host: backend unhealthy, model_server in an OOM restart loop."""
    return Containers(container("docker-inspect-backend-unhealthy.json"),
                      container("docker-inspect-model-server-oom.json"))


# ---- check-restarts -----------------------------------------------------------------------------------

def test_check_restarts_names_the_oom_loop_with_its_limit_and_context_size(mocker, capsys, degraded):
    code, out, err, remote = run_task(mocker, capsys, check_restarts, [
        *degraded.script(), (r"^docker stats", stats("docker-stats-no-stream-json-degraded.txt")),
        (r"logs --no-color --tail=200 -- model_server", logs("compose-v2-logs-model-server-oom.txt"))])
    assert code == 3
    assert ("  [PROBLEM] restart loop: model_server was OOM-killed (exit code 137), restarted 4 times; "
            "memory limit 64.0 MiB; CONTEXT_SIZE=200000") in out
    assert ("            means: the container needs more memory than its limit allows, so the kernel kills it "
            "and Docker restarts it") in out
    assert ("            do:    raise mem_limit for model_server in docker-compose.production.yml or reduce "
            "CONTEXT_SIZE, then redeploy (fab deploy)") in out
    # the table: docker stats only for the running container; a restarting one has no memory figure
    backend_row = next(line for line in out.splitlines() if line.startswith("backend "))
    assert backend_row.split()[1:6] == ["running", "unhealthy", "0", "no", "0"] and "26.0 MiB / 23.5 GiB" in backend_row
    model_row = next(line for line in out.splitlines() if line.startswith("model_server "))
    assert model_row.split()[1:] == ["restarting", "unhealthy", "4", "yes", "137", "-"]
    assert "docker stats --no-stream --format '{{json .}}' -- ai-doc-qa-backend-1" in remote.commands
    # logs are read only for the container in trouble, and nothing is changed
    assert [c for c in remote.commands if " logs " in c] == [
        "cd /app/ai-doc-qa && docker compose -f docker-compose.production.yml logs --no-color --tail=200 -- model_server"]
    assert not [c for c in remote.commands if any(w in c for w in (" up ", " restart ", "docker stop", "docker tag"))]
    assert "restart loop check: 1 problem(s) found: model_server was OOM-killed" in flat(err)
    assert "Next: raise mem_limit for model_server" in flat(err)
    assert "Escalate: Infrastructure down -> Platform Team" in flat(err)


def test_check_restarts_on_a_healthy_host_finds_nothing_and_exits_0(mocker, capsys):
    host = Containers(container("docker-inspect-backend-healthy.json"))
    code, out, err, remote = run_task(mocker, capsys, check_restarts, [
        *host.script(), (r"^docker stats", stats("docker-stats-no-stream-json.txt"))])
    assert code == 0 and err == ""
    assert "  [ok     ] restart loop: no container is restarting, OOM-killed or exited" in out
    assert out.rstrip().endswith("restart loop check: no problem found")
    assert not [c for c in remote.commands if " logs " in c]


def test_check_restarts_prints_the_restart_signal_lines_of_the_log(mocker, capsys, degraded):
    lines = "".join(f"model_server-1  | line {i}\n" for i in range(30)) + \
        "model_server-1  | Killed\nmodel_server-1  | worker exited: Signal 9\n"
    code, out, err, remote = run_task(mocker, capsys, check_restarts, [
        *degraded.script(), (r"^docker stats", ""), (r"logs --no-color", lines)])
    assert code == 3
    assert "      model_server log: model_server-1  | Killed" in out
    assert "      model_server log: model_server-1  | worker exited: Signal 9" in out
    assert "line 29" not in out


def test_check_restarts_says_a_stopped_container_is_not_restarted(mocker, capsys):
    host = Containers(container("docker-inspect-backend-healthy.json"),
                      container("docker-inspect-model-server-stopped.json"))
    code, out, err, remote = run_task(mocker, capsys, check_restarts, [*host.script(), (r"^docker stats", "")])
    assert code == 3
    assert "  [PROBLEM] restart loop: model_server is exited with exit code 0" in out
    assert "means: the process stopped and Docker is not restarting it" in out
    assert (f"do:    read its logs (fab -H {HOST} diagnose shows the last lines); start it with "
            "docker compose up -d model_server") in out


def test_a_container_that_restarted_but_runs_now_is_a_warning_not_a_failure(mocker, capsys):
    host = Containers(container("docker-inspect-backend-healthy.json"))
    host.by_service["backend"]["RestartCount"] = 2
    code, out, err, remote = run_task(mocker, capsys, check_restarts, [*host.script(), (r"^docker stats", "")])
    assert code == 0
    assert "  [WARN   ] restart loop: backend: status running, 2 restarts, last exit code 0" in out
    assert "means: the process keeps exiting; Docker restarts it (restart policy)" in out


# ---- check-db -------------------------------------------------------------------------------------

def postgres_down_host():
    return Containers(container("docker-inspect-backend-unhealthy.json"),
                      container("docker-inspect-postgres-exited.json"))


def test_check_db_reports_stopped_postgres_and_the_backends_real_connection_error(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, check_db, [
        *postgres_down_host().script(),
        (r"logs --no-color --tail=15 -- postgres", logs("compose-v2-logs-postgres-stopped.txt")),
        (DB_CHECK, db_check_fails())])
    assert code == 3
    assert "      postgres: exited, health unhealthy, 0 restarts" in out
    assert "      postgres log: postgres-1  | 2026-11-28 06:29:57.528 UTC [1] LOG:  database system is shut down" in out
    assert "  [PROBLEM] database: postgres is exited, health unhealthy, 0 restarts" in out
    assert "means: the backend cannot reach the database: requests fail with 'connection refused'" in out
    assert f"do:    fab -H {HOST} check-db --fix  (restarts postgres; data is in its volume)" in out
    assert "Escalate: Database corruption / database failure -> DBA Team" in flat(err)
    assert f"Next: fab -H {HOST} check-db --fix" in flat(err)
    assert not [c for c in remote.commands if " up " in c or " restart " in c]


def test_check_db_names_the_exception_not_the_last_line_of_the_traceback(mocker, capsys):
    """Defect: the connection check showed the traceback's last line, sqlalchemy's "(Background on
    this error at: https://sqlalche.me/...)", instead of the error that says what went wrong."""
    code, out, err, remote = run_task(mocker, capsys, check_db, [
        *postgres_down_host().script(), (r"logs --no-color", ""), (DB_CHECK, db_check_fails())])
    finding = next(line for line in out.splitlines() if "connection from backend failed" in line)
    assert "sqlalchemy.exc.OperationalError" in finding and "Connection refused" in finding
    assert "Background on this error" not in finding


def test_check_db_on_a_healthy_database_exits_0(mocker, capsys):
    pg = container("docker-inspect-postgres-exited.json", Status="running", Health={"Status": "healthy", "Log": []})
    host = Containers(container("docker-inspect-backend-healthy.json"), pg)
    code, out, err, remote = run_task(mocker, capsys, check_db, [*host.script(), CONNECTED])
    assert code == 0
    assert "  [ok     ] database: postgres is running, health healthy, 0 restarts" in out
    assert "  [ok     ] database: connection from backend: connected" in out
    assert out.rstrip().endswith("database check: no problem found")
    [check] = [c for c in remote.commands if DB_CHECK.replace("\\", "") in c]
    assert check == ("cd /app/ai-doc-qa && docker compose -f docker-compose.production.yml exec -T backend "
                     "sh -c 'python -c \"from app.db import engine; engine.connect()\"'")


def test_check_db_without_a_running_backend_does_not_exec_into_it(mocker, capsys):
    pg = container("docker-inspect-postgres-exited.json", Status="running", Health={"Status": "healthy", "Log": []})
    code, out, err, remote = run_task(mocker, capsys, check_db, [*Containers(pg).script()])
    assert code == 3
    assert ("  [PROBLEM] database: connection from backend failed: backend is not running, so the connection "
            "from it cannot be tested") in out
    assert not [c for c in remote.commands if " exec " in c]


class FakeLock:
    taken = []

    def __init__(self, s, task, message="", wait=None):
        self.task, self.released = task, 0
        FakeLock.taken.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.released += 1


@pytest.fixture
def fake_lock(mocker):
    FakeLock.taken = []
    mocker.patch.object(diagnose_mod, "DeployLock", FakeLock)
    return FakeLock.taken


def test_check_db_fix_starts_stopped_postgres_under_the_lock_and_waits_until_healthy(mocker, capsys, fake_lock):
    host = postgres_down_host()

    def up(command):
        host.by_service["postgres"] = container("docker-inspect-postgres-exited.json", Status="running",
                                                Health={"Status": "healthy", "Log": []})
        return ""
    code, out, err, remote = run_task(mocker, capsys, check_db, [
        *host.script(), (r" up -d -- postgres$", up), CONNECTED], fix=True)
    assert code == 0, err
    assert [lk.task for lk in fake_lock] == ["check-db --fix"] and fake_lock[0].released == 1
    assert "      --fix: starting postgres" in out
    assert "cd /app/ai-doc-qa && docker compose -f docker-compose.production.yml up -d -- postgres" in remote.commands
    assert not [c for c in remote.commands if " restart " in c]
    assert "  [ok     ] database: postgres was exited, health unhealthy, 0 restarts; restarted and now healthy" in out


def test_check_db_fix_restarts_a_running_but_unhealthy_postgres(mocker, capsys, fake_lock):
    sick = container("docker-inspect-postgres-exited.json", Status="running")
    host = Containers(container("docker-inspect-backend-healthy.json"), sick)

    def restart(command):
        host.by_service["postgres"] = container("docker-inspect-postgres-exited.json", Status="running",
                                                Health={"Status": "healthy", "Log": []})
        return ""
    code, out, err, remote = run_task(mocker, capsys, check_db, [
        *host.script(), (r" restart -- postgres$", restart), CONNECTED], fix=True)
    assert code == 0, err
    assert "      --fix: restarting postgres" in out
    assert not [c for c in remote.commands if " up -d" in c]


def test_check_db_fix_that_fails_is_a_database_error_block(mocker, capsys, fake_lock):
    code, out, err, remote = run_task(mocker, capsys, check_db, [
        *postgres_down_host().script(),
        (r" up -d -- postgres$", Result(stdout="", stderr="Error response from daemon: no space left on device", exited=1))],
        fix=True)
    assert code == 3
    assert "✗ FAILED at check-db › fix" in err
    assert "restarting postgres failed: exited with code 1" in flat(err)
    assert "no space left on device" in err
    assert "Host state: postgres is down" in flat(err)
    assert "Escalate: Database corruption / database failure -> DBA Team" in flat(err)
    assert fake_lock[0].released == 1


def test_check_db_fix_when_postgres_stays_down_pages_the_dba_team_as_its_next_line_says(mocker, capsys, fake_lock):
    """Defect: the health wait's error kept the default kind, so the block said "Next: escalate to
    the DBA team" and "Escalate: Infrastructure down -> Platform Team"."""
    code, out, err, remote = run_task(mocker, capsys, check_db, [
        *postgres_down_host().script(), (r" up -d -- postgres$", "")], fix=True)
    assert code == 4
    assert "postgres did not become healthy after the restart" in flat(err)
    assert "Next: escalate to the DBA team with the postgres logs above" in flat(err)
    assert "Escalate: Database corruption / database failure -> DBA Team" in flat(err)
    assert fake_lock[0].released == 1


# ---- check-model-server -------------------------------------------------------------------------------

def test_check_model_server_oom_gives_the_context_size_advice(mocker, capsys, degraded):
    code, out, err, remote = run_task(mocker, capsys, check_model_server, [
        *degraded.script(), (r"logs --no-color --tail=200 -- model_server", logs("compose-v2-logs-model-server-oom.txt"))])
    assert code == 3
    assert "      model_server: restarting, health unhealthy, memory n/a, CONTEXT_SIZE=200000" in out
    assert "model_server log: model_server-1  | 2026-11-28T06:30:05 model_server starting with CONTEXT_SIZE=200000" in out
    assert "  [PROBLEM] model server: model_server was OOM-killed with CONTEXT_SIZE=200000 (4 restarts)" in out
    assert "means: its memory need at this context size exceeds the limit" in out
    assert "do:    " + CONTEXT_ADVICE.format(ctx=200000) in out
    assert "  [PROBLEM] model server: model_server is unhealthy: no output" in out
    # a restarting container is neither measured nor probed
    assert not [c for c in remote.commands if c.startswith("docker stats") or "curl" in c]
    assert "Next: " + CONTEXT_ADVICE.format(ctx=200000) in flat(err)


def test_check_model_server_that_hangs_names_the_timeout(mocker, capsys, settings):
    import dataclasses
    staged = dataclasses.replace(settings, model_health_url="http://127.0.0.1:8001/health")
    mocker.patch("tasks.base.load_settings", return_value=staged)
    hang = Containers(container("docker-inspect-model-server-hang.json"))
    code, out, err, remote = run_task(mocker, capsys, check_model_server, [
        *hang.script(), (r"^docker stats", stats("docker-stats-model-server-hang.txt")),
        (r"curl .*8001/health", Result(stdout=captured("curl-model-server-hang.txt"),
                                       stderr=captured("curl-model-server-hang.txt.stderr"), exited=28))])
    assert code == 3
    assert "      model_server: running, health unhealthy, memory 11.6 MiB of 64.0 MiB (18%), CONTEXT_SIZE=2048" in out
    assert ("  [PROBLEM] model server: model_server is unhealthy: curl: (28) Operation timed out after 2006 "
            "milliseconds with 0 bytes received") in out
    assert "  [PROBLEM] model server: http://127.0.0.1:8001/health: timed out: the request hung" in out
    assert "means: requests hang and eventually time out (runbook symptom)" in out
    assert "model server check: 2 problem(s) found" in flat(err)


def test_check_model_server_close_to_its_limit_warns_but_passes(mocker, capsys):
    healthy = container("docker-inspect-model-server-hang.json", Health={"Status": "healthy", "Log": []})
    line = json.loads(captured("docker-stats-model-server-hang.txt"))
    line.update(MemPerc="93.75%", MemUsage="60MiB / 64MiB")
    code, out, err, remote = run_task(mocker, capsys, check_model_server, [
        *Containers(healthy).script(), (r"^docker stats", json.dumps(line) + "\n")])
    assert code == 0
    assert ("  [WARN   ] model server: model_server uses 94% of its memory limit (CONTEXT_SIZE=2048)") in out
    assert "means: close to being OOM-killed; requests may slow down" in out
    assert out.rstrip().endswith("model server check: no problem found")


def test_check_model_server_healthy(mocker, capsys):
    healthy = container("docker-inspect-model-server-hang.json", Health={"Status": "healthy", "Log": []})
    code, out, err, remote = run_task(mocker, capsys, check_model_server, [
        *Containers(healthy).script(), (r"^docker stats", stats("docker-stats-model-server-hang.txt"))])
    assert code == 0
    assert "  [ok     ] model server: model_server healthy, memory 11.6 MiB of 64.0 MiB (18%), CONTEXT_SIZE=2048" in out


def test_check_model_server_without_a_container_warns(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, check_model_server, [
        *Containers(container("docker-inspect-backend-healthy.json")).script()])
    assert code == 0
    assert "  [WARN   ] model server: no model_server container" in out


# ---- diagnose: all three ------------------------------------------------------------------------------

def test_diagnose_reports_every_section_and_pages_the_dba_team_for_a_database_problem(mocker, capsys):
    host = Containers(container("docker-inspect-backend-unhealthy.json"),
                      container("docker-inspect-postgres-exited.json"),
                      container("docker-inspect-model-server-oom.json"))
    code, out, err, remote = run_task(mocker, capsys, diagnose, [
        *host.script(), (r"^docker stats", stats("docker-stats-no-stream-json-degraded.txt")),
        (r"logs --no-color", ""), (DB_CHECK, db_check_fails())])
    assert code == 3
    sections = [line for line in out.splitlines() if line.startswith("== ")]
    assert sections == ["== restart loop ==", "== database connection ==", "== model server timeout =="]
    assert "[PROBLEM] restart loop: model_server was OOM-killed" in out
    assert "[PROBLEM] restart loop: postgres is exited with exit code 0" in out
    assert "[PROBLEM] database: postgres is exited" in out
    assert "[PROBLEM] model server: model_server was OOM-killed with CONTEXT_SIZE=200000" in out
    assert "diagnose found 6 problem(s)" in flat(err)
    assert "Escalate: Database corruption / database failure -> DBA Team" in flat(err)
    # the first problem's action is the next step
    assert "Next: raise mem_limit for model_server" in flat(err)
    assert not [c for c in remote.commands if " up " in c or " restart " in c]


def test_diagnose_on_a_healthy_host(mocker, capsys):
    pg = container("docker-inspect-postgres-exited.json", Status="running", Health={"Status": "healthy", "Log": []})
    ms = container("docker-inspect-model-server-hang.json", Health={"Status": "healthy", "Log": []})
    host = Containers(container("docker-inspect-backend-healthy.json"), pg, ms)
    code, out, err, remote = run_task(mocker, capsys, diagnose, [
        *host.script(), (r"^docker stats", stats("docker-stats-no-stream-json.txt")), CONNECTED])
    assert code == 0 and err == ""
    assert out.rstrip().endswith("diagnose: no problem found")
    assert out.count("[ok     ]") == 4


def test_diagnose_without_a_database_problem_pages_the_platform_team(mocker, capsys, degraded):
    pg = container("docker-inspect-postgres-exited.json", Status="running", Health={"Status": "healthy", "Log": []})
    degraded.by_service["postgres"] = pg
    degraded.by_service["backend"] = container("docker-inspect-backend-healthy.json")
    code, out, err, remote = run_task(mocker, capsys, diagnose, [
        *degraded.script(), (r"^docker stats", ""), (r"logs --no-color", ""), CONNECTED])
    assert code == 3
    assert "Escalate: Infrastructure down -> Platform Team" in flat(err)
