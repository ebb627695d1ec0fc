"""The Common Issues rules (commands/diagnosis.py) on parsed states, exact wording: what the
operator reads for each state the runbook names."""
import pytest

from commands import diagnosis, docker
from commands.diagnosis import Finding
from commands.health import HttpCheck
from commands.secrets import Redactor
from tests.conftest import captured, state

MiB = 1024 * 1024


def stats(name="app-model_server-1", used=11 * MiB, limit=64 * MiB, pct=17.2):
    return docker.Stats(name, "abc", "1%", used, limit, pct)


def model(**kw):
    return diagnosis.model_findings(kw.pop("c"), kw.pop("m", None), kw.pop("probe", None), service="model_server",
                                    context_key="CONTEXT_SIZE", compose_file="docker-compose.production.yml", **kw)


# ---- rendering and the conclusion -----------------------------------------------------------------

def test_render_prints_meaning_and_action_under_the_finding():
    lines = diagnosis.render([Finding("database", "problem", "postgres is exited", "it stopped", "start it"),
                              Finding("restart loop", "ok", "nothing"), Finding("model server", "warn", "high")])
    assert lines == ["  [PROBLEM] database: postgres is exited",
                     "            means: it stopped",
                     "            do:    start it",
                     "  [ok     ] restart loop: nothing",
                     "  [WARN   ] model server: high"]


def test_only_problems_fail_and_a_database_problem_pages_the_dba_team():
    fs = [Finding("restart loop", "warn", "a"), Finding("model server", "problem", "b"), Finding("database", "ok", "c")]
    assert diagnosis.problems(fs) == [fs[1]]
    assert diagnosis.escalation_kind(diagnosis.problems(fs)) == "infrastructure"
    assert diagnosis.escalation_kind([Finding("model server", "problem", "b"), Finding("database", "problem", "d")]) == "database"


def test_summary_wording_of_one_check_and_of_diagnose():
    found = [Finding("database", "problem", "postgres is exited"), Finding("database", "problem", "no connection")]
    assert diagnosis.summary("database check", found) == "database check: 2 problem(s) found: postgres is exited; no connection"
    assert diagnosis.summary("diagnose", found, diagnosis.DIAGNOSE_SUMMARY) == \
        "diagnose found 2 problem(s): postgres is exited; no connection"


# ---- restart loop ----------------------------------------------------------------------------------

@pytest.mark.parametrize("c, trouble", [
    (state(), False),
    (state(status="created", health=None), False),
    (state(restarts=1), True),                            # running again, but it restarted
    (state(status="restarting"), True),
    (state(oom=True), True),
    (state(status="exited", health=None), True),
    (state(status="paused"), True),
], ids=["running", "created", "restarted once", "restarting", "oom", "exited", "paused"])
def test_which_containers_are_in_trouble(c, trouble):
    assert diagnosis.in_trouble(c) is trouble


def test_oom_killed_container_on_captured_inspect_gets_the_memory_and_context_advice():
    [c] = docker.parse_inspect(captured("docker-inspect-model-server-oom.json"), env_keys=["CONTEXT_SIZE"])
    f = diagnosis.restart_finding(c, context_key="CONTEXT_SIZE", compose_file="docker-compose.production.yml",
                                  diagnose_cmd="fab -H h diagnose")
    assert f == Finding(
        "restart loop", "problem",
        "model_server was OOM-killed (exit code 137), restarted 4 times; memory limit 64.0 MiB; CONTEXT_SIZE=200000",
        "the container needs more memory than its limit allows, so the kernel kills it and Docker restarts it",
        "raise mem_limit for model_server in docker-compose.production.yml or reduce CONTEXT_SIZE, then redeploy (fab deploy)")


def test_sigkill_without_a_context_key_or_a_limit_says_so():
    c = state("backend", status="restarting", exit_code=137, restarts=2)
    c = docker.ContainerState(**{**c.__dict__, "memory_limit": 0})
    f = diagnosis.restart_finding(c, context_key="CONTEXT_SIZE", compose_file="dc.yml", diagnose_cmd="x")
    assert f.what == "backend was OOM-killed (exit code 137), restarted 2 times; memory limit none"
    assert f.action == "raise mem_limit for backend in dc.yml, then redeploy (fab deploy)"


def test_stopped_container_on_captured_inspect_is_told_how_to_start_it():
    [c] = docker.parse_inspect(captured("docker-inspect-postgres-exited.json"))
    f = diagnosis.restart_finding(c, context_key="CONTEXT_SIZE", compose_file="dc.yml", diagnose_cmd="fab -H h diagnose")
    assert (f.severity, f.what) == ("problem", "postgres is exited with exit code 0")
    assert f.action == "read its logs (fab -H h diagnose shows the last lines); start it with docker compose up -d postgres"


@pytest.mark.parametrize("status, severity", [("restarting", "problem"), ("running", "warn")])
def test_a_looping_container_is_a_problem_while_restarting_and_a_warning_once_it_runs(status, severity):
    f = diagnosis.restart_finding(state("proxy", status=status, restarts=3, exit_code=1), context_key="CONTEXT_SIZE",
                                  compose_file="dc.yml", diagnose_cmd="x")
    assert (f.severity, f.what) == (severity, f"proxy: status {status}, 3 restarts, last exit code 1")
    assert f.action == "read the log lines below for the cause"


def test_restart_signals_are_the_last_five_lines_the_runbook_grep_would_show():
    lines = ["  starting  ", *[f" worker {i} Killed " for i in range(7)], "Signal 15 received", "EXIT code 3", "ok"]
    assert diagnosis.restart_signals(lines) == ["worker 4 Killed", "worker 5 Killed", "worker 6 Killed",
                                                "Signal 15 received", "EXIT code 3"]
    # the captured OOM loop's log has no such line: the kernel kills silently
    assert diagnosis.restart_signals(captured("compose-v2-logs-model-server-oom.txt").splitlines()) == []


def test_restart_table_row_with_and_without_stats():
    c = state("backend", restarts=1, exit_code=1)
    [m] = [x for x in docker.parse_stats(captured("docker-stats-no-stream-json.txt")) if x.id == "1c5a6f2e44d9"]
    assert diagnosis.restart_row(c, m) == ["backend", "running", "healthy", 1, "no", 1, "26.3 MiB / 23.5 GiB"]
    assert diagnosis.restart_row(state("redis", health=None, oom=True), None) == ["redis", "running", "-", 0, "yes", 0, "-"]


# ---- database ------------------------------------------------------------------------------------

def test_postgres_states():
    assert diagnosis.describe(None) == "no container"
    [exited] = docker.parse_inspect(captured("docker-inspect-postgres-exited.json"))
    assert diagnosis.describe(exited) == "exited, health unhealthy, 0 restarts"
    assert diagnosis.postgres_healthy(state("postgres"))
    assert diagnosis.postgres_healthy(state("postgres", health=None))           # no healthcheck: running is enough
    for sick in (None, exited, state("postgres", health="starting"), state("postgres", health="unhealthy"),
                 state("postgres", status="restarting")):
        assert not diagnosis.postgres_healthy(sick)


@pytest.mark.parametrize("pg, up, verb", [
    (None, True, "starting"),
    (state("postgres", status="exited"), True, "starting"),
    (state("postgres", status="created"), True, "starting"),
    (state("postgres", status="dead"), True, "starting"),
    (state("postgres", health="unhealthy"), False, "restarting"),
    (state("postgres", status="restarting"), False, "starting"),
], ids=["none", "exited", "created", "dead", "unhealthy", "restarting"])
def test_fix_starts_a_stopped_postgres_and_restarts_a_sick_one(pg, up, verb):
    assert diagnosis.fix_needs_up(pg) is up
    assert diagnosis.fix_verb(pg) == verb


def test_postgres_finding_offers_the_fix_only_when_needed():
    fix = "fab -H h check-db --fix"
    ok = diagnosis.postgres_finding("postgres", state("postgres"), fix)
    assert ok == Finding("database", "ok", "postgres is running, health healthy, 0 restarts")
    bad = diagnosis.postgres_finding("postgres", None, fix)
    assert bad == Finding("database", "problem", "postgres is no container",
                          "the backend cannot reach the database: requests fail with 'connection refused'",
                          "fab -H h check-db --fix  (restarts postgres; data is in its volume)")
    assert diagnosis.fixed_finding("postgres", "exited, health n/a, 0 restarts").what == \
        "postgres was exited, health n/a, 0 restarts; restarted and now healthy"


def test_connection_detail_of_the_captured_traceback_is_its_exception_line():
    text = captured("compose-v2-exec-backend-db-check-postgres-down.txt.stderr")
    assert diagnosis.connection_detail(1, text.splitlines()) == (
        'sqlalchemy.exc.OperationalError: (psycopg2.OperationalError) connection to server at "127.0.0.1", '
        "port 5433 failed: Connection refused")


def test_connection_detail_without_a_traceback():
    assert diagnosis.connection_detail(2, ["", "could not translate host name \"db\"", "  "]) == \
        'could not translate host name "db"'
    assert diagnosis.connection_detail(137, ["", " "]) == "exit code 137"


def test_connection_findings():
    assert diagnosis.connection_finding("backend", "postgres", True, "connected") == \
        Finding("database", "ok", "connection from backend: connected")
    f = diagnosis.connection_finding("backend", "postgres", False, diagnosis.backend_not_running("backend"))
    assert f.what == "connection from backend failed: backend is not running, so the connection from it cannot be tested"
    assert f.action == ("check DATABASE_URL in the env file and postgres's logs; escalate to the DBA team "
                        "if data looks damaged")


# ---- model server -------------------------------------------------------------------------------

ADVICE = ("If OOM, increase the memory limit or reduce the context size: edit CONTEXT_SIZE (now {}) or mem_limit "
          "for model_server in docker-compose.production.yml, then redeploy")


def test_no_model_server_container_is_a_warning():
    assert model(c=None) == [Finding("model server", "warn", "no model_server container")]


def test_oom_killed_model_server_from_captured_inspect():
    [c] = docker.parse_inspect(captured("docker-inspect-model-server-oom.json"), env_keys=["CONTEXT_SIZE"])
    assert diagnosis.model_line(c, None, "CONTEXT_SIZE") == \
        "model_server: restarting, health unhealthy, memory n/a, CONTEXT_SIZE=200000"
    oom, unhealthy = model(c=c)
    assert oom == Finding("model server", "problem", "model_server was OOM-killed with CONTEXT_SIZE=200000 (4 restarts)",
                          "its memory need at this context size exceeds the limit", ADVICE.format(200000))
    assert unhealthy.what == "model_server is unhealthy: no output"


def test_hung_model_server_from_captured_inspect_stats_and_curl():
    [c] = docker.parse_inspect(captured("docker-inspect-model-server-hang.json"), env_keys=["CONTEXT_SIZE"])
    [m] = docker.parse_stats(captured("docker-stats-model-server-hang.txt"))
    from commands.health import parse_curl
    probe = parse_curl("http://127.0.0.1:8001/health", 28, captured("curl-model-server-hang.txt"),
                       captured("curl-model-server-hang.txt.stderr"))
    assert diagnosis.model_line(c, m, "CONTEXT_SIZE") == \
        "model_server: running, health unhealthy, memory 11.6 MiB of 64.0 MiB (18%), CONTEXT_SIZE=2048"
    unhealthy, hang = model(c=c, m=m, probe=probe)
    assert unhealthy == Finding("model server", "problem",
                                "model_server is unhealthy: curl: (28) Operation timed out after 2006 milliseconds with 0 bytes received",
                                "its healthcheck fails: requests to it hang or error", ADVICE.format(2048))
    assert hang == Finding("model server", "problem", "http://127.0.0.1:8001/health: timed out: the request hung",
                           "requests hang and eventually time out (runbook symptom)", ADVICE.format(2048))


def test_memory_close_to_the_limit_warns_from_90_percent():
    c = state("model_server", env={"CONTEXT_SIZE": "4096"})
    assert model(c=c, m=stats(pct=89.9))[0].severity == "ok"
    [warn] = model(c=c, m=stats(used=58 * MiB, pct=90.0))
    assert warn == Finding("model server", "warn", "model_server uses 90% of its memory limit (CONTEXT_SIZE=4096)",
                           "close to being OOM-killed; requests may slow down", ADVICE.format(4096))


def test_healthy_model_server_reports_memory_context_and_answer_time():
    c = state("model_server")
    probe = HttpCheck("http://localhost:8001/health", True, 200, 0.0421)
    assert model(c=c, m=stats(), probe=probe) == [Finding(
        "model server", "ok", "model_server healthy, memory 11.0 MiB of 64.0 MiB (17%), CONTEXT_SIZE=not set, answered in 0.04 s")]
    assert model(c=c)[0].what == "model_server healthy, memory n/a, CONTEXT_SIZE=not set"


def test_healthcheck_output_is_redacted_before_it_is_cut():
    secret = "sentinel-model-5e3a9d1c77"
    c = state("model_server", health="unhealthy", health_log=["x" * 150 + secret + " tail"])
    r = Redactor()
    r.add(secret, "MODEL_TOKEN")
    [f] = model(c=c, redact=r)
    assert len(f.what) <= len("model_server is unhealthy: ") + 160
    assert secret[:4] not in f.what.split("x" * 150, 1)[1]
