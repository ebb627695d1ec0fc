"""The task wrapper end to end with a scripted remote: error block, exit codes, no traceback."""
import os
import subprocess
import sys

import pytest
from invoke import Exit, MockContext, Result

from tasks import base
from tasks.conftest import Remote, hermetic_config
from tasks.verify import smoke
from tasks.escalation import contacts

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SENTINEL = "sentinel-cli-secret-9f8e7d"


def env_files_answer(cmd):
    return ("@@ai-doc-qa-file@@/app/ai-doc-qa/.env.production\n"
            f"SECRET_KEY={SENTINEL}\n\n")


@pytest.fixture
def remote_task(mocker):
    def make(script):
        remote = Remote([("@@ai-doc-qa-file@@", env_files_answer), *script])
        cxn = mocker.Mock()
        cxn.run.side_effect = remote
        mocker.patch.object(base, "connect", return_value=cxn)
        c = MockContext(config=hermetic_config())
        return c, remote
    return make


def test_failed_smoke_prints_the_error_block_and_exits_4(remote_task, capsys):
    body = f"Internal error: secret {SENTINEL} leaked in a stack trace"
    c, remote = remote_task([(r"curl .*api/v1/documents", Result(stdout=f"{body}\n@@status 500 0.01\n", exited=0)),
                             (r"curl .*health", Result(stdout='{"version":"v2"}\n@@status 200 0.01\n', exited=0))])
    with pytest.raises(Exit) as exc:
        smoke(c, stage="production")
    assert exc.value.code == 4
    err = capsys.readouterr().err
    assert "✗ FAILED at smoke on deploy@ai-doc-qa.example.com (stage production)" in err
    for label in ("What:", "Command:", "Output (last lines):", "Host state:", "Next:", "Escalate:", "Exit code:"):
        assert label in err
    assert "http://localhost/api/v1/documents from the host: HTTP 500" in err
    assert "Infrastructure down -> Platform Team, response 5 minutes" in err
    assert "fab -H deploy@ai-doc-qa.example.com diagnose" in err
    assert SENTINEL not in err and "[REDACTED]" in err


def test_passing_smoke(remote_task, capsys):
    c, remote = remote_task([(r"curl ", Result(stdout='ok\n@@status 200 0.01\n', exited=0))])
    smoke(c, stage="production")
    assert "smoke tests passed" in capsys.readouterr().out
    assert [cmd for cmd in remote.commands if "curl" in cmd][0].startswith("out=$(curl")


def test_config_error_exits_2_before_any_connection(mocker, capsys):
    connect = mocker.patch.object(base, "connect")
    c = MockContext(config=hermetic_config())
    os.environ["DEPLOY_SMOKE_TIMEOUT"] = "never"
    try:
        with pytest.raises(Exit) as exc:
            smoke(c, stage="production")
    finally:
        del os.environ["DEPLOY_SMOKE_TIMEOUT"]
    assert exc.value.code == 2
    connect.assert_not_called()
    err = capsys.readouterr().err
    assert "CONFIGURATION ERROR for stage production" in err and "SMOKE_TIMEOUT (environment variable DEPLOY_SMOKE_TIMEOUT)" in err


def test_offline_task_needs_no_host(mocker, capsys):
    connect = mocker.patch.object(base, "connect")
    contacts(MockContext(config=hermetic_config()), stage="production")
    connect.assert_not_called()
    assert "DBA Team" in capsys.readouterr().out


def fab(*args, env=None):
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "fab"), *args], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=60)


def test_fab_list_shows_every_task_with_help():
    r = fab("--list")
    assert r.returncode == 0
    lines = {l.split()[0]: l for l in r.stdout.splitlines() if l.startswith("  ") and l.strip()}
    for name in ("deploy", "checklist", "prepare", "env-diff", "migrate", "services", "verify", "smoke", "rollback",
                 "diagnose", "check-restarts", "check-db", "check-model-server", "contacts", "status", "history",
                 "lock", "unlock", "plan"):
        assert name in lines, name
        assert len(lines[name].split()) > 2, f"{name} has no help line"


def test_fab_bad_config_is_a_clean_error_not_a_traceback():
    r = fab("smoke", "--stage", "production", env={"DEPLOY_HEALTH_URL": "http://x/ y"})
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "HEALTH_URL (environment variable DEPLOY_HEALTH_URL)" in r.stderr


def test_fab_unknown_host_key_and_unreachable_host_are_clean_errors(tmp_path):
    # Nothing listens on 127.0.0.1:1, so this proves the connect error path without any server.
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    r = fab("-H", "deploy@127.0.0.1:1", "status", "--stage", "production",
            env={"DEPLOY_KNOWN_HOSTS": str(kh), "DEPLOY_CONNECT_TIMEOUT": "2"})
    assert r.returncode == 5, r.stderr
    assert "Traceback" not in r.stderr and "cannot connect to deploy@127.0.0.1:1" in r.stderr
