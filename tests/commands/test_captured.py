"""Parsers on real outputs captured from the staging host (tests/fixtures/captured/README.md)."""
import os
import re
from pathlib import Path

from commands import alembic, compose, docker, health
from tests.conftest import CAPTURED, captured

TESTS = Path(__file__).resolve().parent.parent

SECRETS = ("sentinel-pg-5d1f8a3c9e", "sentinel-redis-b7e2c4f06a", "sentinel-secret-3a9c71d2e8", "sentinel-sk-0f4b6d8e2a1c")


def test_inspect_healthy_backend():
    [c] = docker.parse_inspect(captured("docker-inspect-backend-healthy.json"))
    assert c.service == "backend" and c.status == "running" and c.health == "healthy"
    assert c.image_ref == "127.0.0.1:5000/ai-doc-qa/backend:latest" and c.image_id.startswith("sha256:")
    assert c.restart_count == 0 and not c.oom_killed
    assert health.evaluate(["backend"], [c]).ready


def test_inspect_drops_the_environment_and_its_secrets():
    raw = captured("docker-inspect-backend-healthy.json")
    assert any(s in raw for s in SECRETS)          # the capture really holds them...
    [c] = docker.parse_inspect(raw)
    assert not any(s in repr(c) for s in SECRETS)  # ...and the parsed state does not
    [c] = docker.parse_inspect(raw, env_keys=["APP_ENV"])
    assert c.env == {"APP_ENV": "production"}


def test_inspect_unhealthy_backend_fails_fast_with_the_check_output():
    [c] = docker.parse_inspect(captured("docker-inspect-backend-unhealthy.json"))
    assert c.health == "unhealthy"
    v = health.evaluate(["backend"], [c])
    assert v.failed and "returned error: 500" in v.problems[0]


def test_inspect_oom_restart_loop_of_model_server():
    [c] = docker.parse_inspect(captured("docker-inspect-model-server-oom.json"), env_keys=["CONTEXT_SIZE"])
    assert c.service == "model_server" and c.oom_killed and c.exit_code == 137 and c.status == "restarting"
    assert c.restart_count >= 3 and c.memory_limit == 64 * 1024 * 1024 and c.env == {"CONTEXT_SIZE": "200000"}
    v = health.evaluate(["model_server"], [c])
    assert v.failed and "OOM-killed (memory limit 64 MiB)" in v.problems[0]


def test_ps_q_both_generations():
    v2 = compose.parse_ps_ids(captured("compose-v2-ps-q.txt") + captured("compose-v2-ps-q.txt.stderr"))
    v1 = compose.parse_ps_ids(captured("compose-v1-ps-q.txt"))
    assert len(v2) == 5 and len(v1) == 5
    assert all(len(i) == 64 for i in v1 + v2)


def test_alembic_current_and_history():
    assert alembic.parse_current(captured("alembic-current-v1.txt") + captured("alembic-current-v1.txt.stderr")) == ["0001"]
    assert alembic.parse_current(captured("alembic-current-v2.txt")) == ["0002"]
    h = alembic.parse_history(captured("alembic-history-v2.txt"))
    assert [(e.down, e.up, e.flags) for e in h] == [("0001", "0002", "head"), ("<base>", "0001", "")]
    assert h[0].message == "add summary column to documents"


def test_migrate_script_output():
    out = ("@@before\nINFO  [alembic.runtime.migration] Context impl PostgresqlImpl.\n" + captured("alembic-current-v1.txt")
           + "@@upgrade\n" + captured("alembic-upgrade-head-v2.txt.stderr")
           + "@@after\n" + captured("alembic-current-v2.txt")
           + "@@history\n" + captured("alembic-history-v2.txt"))
    m = alembic.parse_migrate(out)
    assert m.before == ["0001"] and m.after == ["0002"]
    assert "Running upgrade 0001 -> 0002" in m.upgrade
    assert [e.up for e in m.history] == ["0002", "0001"]
    failed = alembic.parse_migrate("@@before\n0001 (head)\n@@upgrade\nsqlalchemy.exc.ProgrammingError: boom\n")
    assert failed.after is None and "ProgrammingError" in failed.upgrade


def test_migrate_script_output_of_one_python_process():
    """Captured on the sandbox (v1 -> v2): MIGRATE_SCRIPT running the four alembic commands in one
    Python process prints what the four CLI calls printed: the same sections, log lines, revisions."""
    m = alembic.parse_migrate(captured("alembic-migrate-one-process-v1-to-v2.txt"))
    assert m.before == ["0001"] and m.after == ["0002"]
    assert "Running upgrade 0001 -> 0002, add summary column to documents" in m.upgrade
    assert [(e.down, e.up, e.flags) for e in m.history] == [("0001", "0002", "head"), ("<base>", "0001", "")]
    # The database refused connections (exit 1): the failed upgrade's traceback, no revision after.
    failed = alembic.parse_migrate(captured("alembic-migrate-one-process-db-refused.txt"))
    assert failed.before == [] and failed.after is None and failed.history == []
    assert "sqlalchemy.exc.OperationalError" in failed.upgrade and "Connection refused" in failed.upgrade


def test_stats():
    stats = docker.parse_stats(captured("docker-stats-no-stream-json.txt"))
    names = {s.name for s in stats}
    assert "ai-doc-qa-backend-1" in names
    backend = [s for s in stats if s.name == "ai-doc-qa-backend-1"][0]
    assert backend.mem_usage == int(26.27 * 1024 * 1024) and backend.mem_limit == int(23.54 * 1024 ** 3)


def test_sizes():
    assert docker.parse_size("26.27MiB") == int(26.27 * 1024 * 1024)
    assert docker.parse_size("64MiB") == 64 * 1024 * 1024
    assert docker.parse_size("1.5kB") == 1500
    assert docker.parse_size("garbage") == 0
    assert docker.human_bytes(64 * 1024 * 1024) == "64.0 MiB"


def test_every_captured_fixture_is_read_by_a_test():
    """A fixture no test reads proves nothing and goes stale: each file is named in a test (quoted),
    or is the ``.stderr`` of one, which the helpers read beside its stdout (test_diagnose, test_migrate)."""
    sources = "".join(p.read_text(encoding="utf-8") for p in Path(TESTS).rglob("*.py"))
    named = set(re.findall(r"[\"']([\w.-]+\.(?:txt|json|jsonl|stderr))[\"']", sources))
    files = {f for f in os.listdir(CAPTURED) if f != "README.md"}
    unread = sorted(f for f in files if f not in named and not (f.endswith(".stderr") and f[:-len(".stderr")] in named))
    assert unread == []
