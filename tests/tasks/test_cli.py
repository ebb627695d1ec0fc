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


def test_fab_H_with_a_non_numeric_port_is_a_usage_error_not_a_traceback():
    """Issue 7 #16: fabric raised ValueError (exit 1) while building the task's Connection."""
    r = fab("-H", "deploy@prod.example.com:notaport", "status", "--stage", "production")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert "host 'deploy@prod.example.com:notaport': port 'notaport' is not a port number" in r.stderr


def test_fab_H_bracketed_ipv6_is_host_and_port(tmp_path):
    """Issue 7 #16: `-H '[::1]:1'` was host `[::1]:1` on port 22. The missing known_hosts file
    stops it before any connection, naming the parsed host and port."""
    r = fab("-H", "[::1]:1", "status", "--stage", "production", env={"HOME": str(tmp_path)})
    assert r.returncode == 5, r.stderr
    assert "host: [::1]:1" in r.stdout
    assert "ssh-keyscan -p 1 ::1 >>" in " ".join(r.stderr.split()) and "Traceback" not in r.stderr


@pytest.mark.parametrize("text, message", [
    ("Host *\n  Port abc\n", "Port 'abc' is not a port number"),
    ("Host *\n  HostName\n", "Unparsable line HostName"),
])
def test_fab_stage_ssh_config_with_port_abc_or_bare_hostname_is_a_config_error(tmp_path, text, message):
    """Issue 7 #16, through the stage's SSH_CONFIG."""
    cfg = tmp_path / "ssh_config"
    cfg.write_text(text)
    r = fab("status", "--stage", "production", env={"DEPLOY_SSH_CONFIG": str(cfg)})
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and message in r.stderr


def test_fab_S_ssh_config_with_port_abc_is_a_config_error(tmp_path):
    """Issue 7 #16, through fab's own -S file: checked before fabric int()s it."""
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host *\n  Port abc\n")
    r = fab("-S", str(cfg), "-H", "prod.example.com", "status", "--stage", "production")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "for host prod.example.com: Port 'abc' is not a port number" in r.stderr


def test_fab_task_with_an_adhoc_remainder_command_is_refused_before_anything_runs(tmp_path):
    """Issue 7 #13: `-- CMD` runs over a connection with no host-key check; with a task named,
    fabric.yaml's executor refuses it before the task or the command runs."""
    marker = tmp_path / "ran"
    r = fab("-H", "127.0.0.1:1", "contacts", "--stage", "production", "--", f"touch {marker}")
    assert r.returncode == 2, r.stderr
    assert "REFUSED: fab -H HOST -- COMMAND" in r.stderr and "DBA Team" not in r.stdout
    assert "ssh -p 1 127.0.0.1" in " ".join(r.stderr.split())
    assert not marker.exists()
