"""Issue 7, items 10-12: secrets never reach the output, whatever happens to the text on its way
(cut to length, wrapped, printed line by line, JSON-escaped, echoed by a config error, a plan or a
traceback), and host text reaches the terminal without escape sequences."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import requests
from invoke import Exit, MockContext, Result

from commands import health as health_cmd
from commands.compose import Compose
from commands.secrets import Redactor
from config import load_settings
from tasks import checklist, diagnose, ui, verify
from tasks.conftest import hermetic_config
from tasks.errors import DeployError
from tasks.hostsecrets import learn_secrets
from tests.conftest import state

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PATTERN = r"(?i)(PASS|SECRET|TOKEN|KEY|DATABASE_URL)"
CUT_SECRET = "Q7xk-sentinel-cut-4f7a9c2e1b"
SPACED = "Q7xk sentinel correct horse battery staple"
ESC = "\x1b"


def leaked_prefix(text: str, secret: str = CUT_SECRET, shortest: int = 4) -> str | None:
    """The longest prefix of ``secret`` (at least ``shortest`` characters) found in ``text``."""
    found = [secret[:n] for n in range(shortest, len(secret) + 1) if secret[:n] in text]
    return found[-1] if found else None


def line_cut_at(limit: int, prefix: str = "ERROR ") -> str:
    """A line whose first ``limit`` characters end 8 characters into CUT_SECRET."""
    return prefix + "x" * (limit - len(prefix) - 8) + CUT_SECRET + " tail of the line"


@pytest.fixture
def session(make_session):
    def make(script=()):
        s, remote = make_session(script)
        s.redactor = Redactor(PATTERN)
        s.redactor.add_env({"SECRET_KEY": CUT_SECRET, "SMTP_PASSWORD": SPACED})
        s._compose = Compose("docker compose", s.settings.app_dir, s.settings.compose_file, None)
        ui.set_redactor(s.redactor)                 # as the task wrapper does
        return s, remote
    return make


# ---- item 10: redact first, then cut ----------------------------------------------------------------

def test_log_scan_cut_to_200_characters_prints_no_prefix_of_a_secret(session, capsys):
    s, _ = session([(r"logs --no-color", Result(stdout=line_cut_at(200) + "\n", exited=0))])
    findings = verify.scan_logs(s)
    out = capsys.readouterr().out
    assert findings and "ERROR xxx" in out
    assert leaked_prefix(out) is None and leaked_prefix(str(findings)) is None


def test_diagnose_log_lines_cut_to_160_characters_print_no_prefix_of_a_secret(session, mocker, capsys):
    s, _ = session()
    mocker.patch.object(diagnose, "postgres_state", return_value=state("postgres"))
    mocker.patch.object(diagnose, "logs_tail", return_value="ok line\n" + line_cut_at(160, "FATAL "))
    mocker.patch.object(diagnose, "backend_db_check", return_value=(True, "connected"))
    diagnose.check_database(s)
    out = capsys.readouterr().out
    assert "postgres log: FATAL xxx" in out and leaked_prefix(out) is None


def test_unhealthy_model_server_output_cut_to_160_characters_prints_no_prefix_of_a_secret(session, mocker):
    s, _ = session()
    sick = state("model_server", health="unhealthy", health_log=[line_cut_at(160, "probe: ")])
    mocker.patch.object(diagnose, "containers", return_value=[sick])
    mocker.patch.object(diagnose, "stats_by_name", return_value={})
    mocker.patch.object(diagnose, "logs_tail", return_value="")
    findings = diagnose.check_model(s)
    text = " ".join(f.what for f in findings)
    assert "unhealthy: probe: xxx" in text and leaked_prefix(text) is None


def test_health_wait_cuts_the_healthcheck_output_after_redacting(session):
    s, _ = session()
    sick = state("backend", health="unhealthy", health_log=[line_cut_at(200, "hc: ")])
    verdict = health_cmd.evaluate(["backend"], [sick], redact=s.redactor)
    assert "last healthcheck said: hc: xxx" in verdict.problems[0]
    assert leaked_prefix(verdict.problems[0]) is None


def test_checklist_alembic_error_cut_to_120_characters_prints_no_prefix_of_a_secret(session, mocker):
    s, _ = session([(r"alembic current", Result(stdout="", stderr=line_cut_at(120, "E: ") + "\n", exited=1))])
    backend = mocker.Mock(service=s.settings.backend_service, status="running")
    mocker.patch.object(checklist, "inspect_ids", return_value=[backend])
    mocker.patch.object(checklist, "exec_command", return_value="docker exec c alembic current")
    revisions, why = checklist.current_db_revision(s)
    assert revisions is None and "alembic current failed: E: xxx" in why
    assert leaked_prefix(why) is None


def test_smoke_from_the_operator_cuts_the_body_after_redacting(session, mocker):
    s, _ = session()
    body = "x" * (2000 - 10) + CUT_SECRET
    mocker.patch.object(verify.web, "request",
                        return_value=verify.web.HttpAnswer("http://localhost/health", 500, 0.1, body))
    check = verify.operator_check("http://localhost/health", 2)
    assert check.body.startswith("xxx") and leaked_prefix(check.body) is None


def test_smoke_from_the_operator_never_prints_the_request_error_message(session, mocker):
    """requests' messages repeat the URL (and a token in its query); only the class name is kept."""
    session()
    mocker.patch("tasks.web._fetch", side_effect=requests.ConnectionError("x" * 100 + CUT_SECRET))
    check = verify.operator_check("http://localhost/health", 2)
    assert check.error == "request failed: ConnectionError" and leaked_prefix(check.error) is None


# ---- item 11: wrapping, line-by-line printing, JSON, config-held secrets, env files, tracebacks ------

def test_error_block_wraps_a_secret_with_spaces_only_after_redacting_it(session, capsys):
    session()
    ui.block("✗ FAILED", [("What", "y" * 70 + f" the SMTP login with {SPACED} was refused by the relay")])
    err = capsys.readouterr().err
    assert "sentinel" not in err and "horse battery" not in err and "[REDACTED]" in err


def test_pem_key_in_a_log_is_redacted_when_printed_line_by_line(make_session, mocker, capsys):
    pem = ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCsentinelPEM1\n"
           "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789sentinelPEM2\n-----END PRIVATE KEY-----")
    s, _ = make_session([("@@ai-doc-qa-file@@", "@@ai-doc-qa-file@@/app/ai-doc-qa/.env.production\n"
                                                 f'TLS_PRIVATE_KEY="{pem}"\n\n')])
    learn_secrets(s)
    ui.set_redactor(s.redactor)
    mocker.patch.object(diagnose, "postgres_state", return_value=state("postgres"))
    mocker.patch.object(diagnose, "logs_tail", return_value="FATAL: bad key\n" + pem.split("\n", 1)[1])
    mocker.patch.object(diagnose, "backend_db_check", return_value=(True, "connected"))
    diagnose.check_database(s)
    assert "sentinelPEM" not in capsys.readouterr().out


def test_json_output_redacts_the_json_escaped_form_of_a_secret(capsys):
    quoted = 'Q7xk-sentinel-q"uo\\te'
    r = Redactor(PATTERN)
    r.add_env({"API_TOKEN": quoted})
    ui.set_redactor(r)
    ui.emit_json({"error": f"the API said: token {quoted} is revoked"})
    out = capsys.readouterr().out
    assert "sentinel" not in out and json.loads(out)["error"] == "the API said: token [REDACTED] is revoked"


def test_too_short_secret_is_reported_at_once_and_masked_where_its_name_comes_with_it(make_session, capsys):
    s, _ = make_session([("@@ai-doc-qa-file@@", "@@ai-doc-qa-file@@/app/ai-doc-qa/.env.production\n"
                                                 "PIN_PASSWORD=x7q\nLOG_LEVEL=info\n\n")])
    learn_secrets(s)
    out = capsys.readouterr().out
    assert "too short" in out and "PIN_PASSWORD" in out
    assert s.redactor("docker inspect: PIN_PASSWORD=x7q") == "docker inspect: PIN_PASSWORD=[REDACTED]"


def test_unreadable_env_file_stops_the_run_naming_the_file_and_why(make_session):
    out = ("@@ai-doc-qa-file@@/app/ai-doc-qa/.env.production\n\n@@ai-doc-qa-unreadable@@/app/ai-doc-qa/.env.production\n\n"
           "@@ai-doc-qa-file@@/app/ai-doc-qa/.env.staging\nSECRET_KEY=sentinel-staging\n\n")
    err = "cat: /app/ai-doc-qa/.env.production: Permission denied\n"
    s, _ = make_session([("@@ai-doc-qa-file@@", Result(stdout=out, stderr=err, exited=0))])
    with pytest.raises(DeployError) as exc:
        learn_secrets(s)
    assert "cannot read /app/ai-doc-qa/.env.production (Permission denied)" in exc.value.what
    assert "DEPLOY_SECRET_FILES" in exc.value.next_step and "nothing was changed" in exc.value.state


def test_env_file_that_is_not_a_regular_file_is_reported_by_the_real_shell_command(make_session, tmp_path):
    (tmp_path / ".env.production").write_text("SECRET_KEY=sentinel-real-shell\n")
    (tmp_path / ".env.staging").mkdir()
    settings = load_settings("production", {"DEPLOY_APP_DIR": str(tmp_path)})

    def real_shell(cmd):
        r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=10)
        return Result(stdout=r.stdout, stderr=r.stderr, exited=r.returncode)

    s, _ = make_session([("@@ai-doc-qa-file@@", real_shell)], settings=settings)
    with pytest.raises(DeployError) as exc:
        learn_secrets(s)
    assert f"{tmp_path}/.env.staging (not a regular file)" in exc.value.what
    assert s.redactor("x sentinel-real-shell") == "x [REDACTED]"          # what could be read was learned


def test_config_error_does_not_echo_secrets_held_in_the_config(mocker, monkeypatch, capsys):
    from tasks import base
    from tasks.verify import smoke
    mocker.patch.object(base, "connect")
    monkeypatch.setenv("DEPLOY_WEBHOOK_URL", "https://hooks.example.com/services/T0/B0/sentinel hook token")
    monkeypatch.setenv("DEPLOY_SMOKE_URLS", "http://localhost/health?token=sentinel-smoke-token|bad")
    monkeypatch.setenv("DEPLOY_MONITORING_URL", "https://ops:sentinel-monitor-pw@grafana/ d")
    with pytest.raises(Exit) as exc:
        smoke(MockContext(config=hermetic_config()), stage="production")
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "WEBHOOK_URL (environment variable DEPLOY_WEBHOOK_URL)" in err
    assert "sentinel" not in err and "hook token" not in err


def test_plan_does_not_print_secrets_held_in_the_config(monkeypatch, capsys):
    from tasks.plan import plan
    monkeypatch.setenv("DEPLOY_DB_READY_COMMAND", "PGPASSWORD='sentinel pg ready' pg_isready -U postgres")
    monkeypatch.setenv("DEPLOY_SMOKE_URLS", "http://localhost/health?token=sentinel-smoke-token,http://localhost/x?api_key=sentinel-k2")
    monkeypatch.setenv("DEPLOY_HEALTH_URL", "http://localhost/health?sig=1&access_token=sentinel-health")
    plan(MockContext(config=hermetic_config()), stage="production")
    out = capsys.readouterr().out
    assert "pg_isready -U postgres" in out and "http://localhost/x?api_key=" in out
    assert "sentinel" not in out


CRASH = textwrap.dedent("""
    from fabric import Config
    from invoke import MockContext
    from tasks.base import operator_task

    @operator_task(connects=False)
    def crash(o):
        \"\"\"A task with a bug.\"\"\"
        raise RuntimeError("could not parse " + o.settings.webhook_url + " \\x1b]0;owned\\x07")

    crash(MockContext(config=Config(overrides={"load_ssh_configs": False})), stage="production")
""")


def test_a_traceback_from_a_bug_is_redacted_and_free_of_escape_codes():
    r = subprocess.run([sys.executable, "-c", CRASH], cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": ROOT,
                            "DEPLOY_WEBHOOK_URL": "https://hooks.example.com/services/T0/B0/sentinelcrashtoken"})
    assert r.returncode == 1
    assert "Traceback (most recent call last)" in r.stderr and "RuntimeError: could not parse [REDACTED]" in r.stderr
    assert "sentinel" not in r.stderr and ESC not in r.stderr


# ---- item 12: host text reaches the terminal without escape sequences ---------------------------------

HOSTILE = "mallory\x1b]0;owned\x07\x1b[2J\x1b[1A\rfake line\x08\u202eevil"


def test_host_text_is_printed_without_escape_sequences_or_control_characters(capsys):
    from commands import lock as lock_cmd
    ui.set_redactor(Redactor(PATTERN))
    holder = lock_cmd.LockState(True, {"who": HOSTILE, "message": HOSTILE}, 100, 99)
    ui.say(f"deploy lock: {lock_cmd.describe(holder)}")
    ui.warn(HOSTILE)
    ui.table([[HOSTILE, 1]], ["who", "n"])
    ui.block("✗ FAILED", [("What", HOSTILE), ("Output (last lines)", ui.tail(HOSTILE))])
    captured = capsys.readouterr()
    for text in (captured.out, captured.err):
        assert "mallory" in text
        assert not any(ch in text for ch in (ESC, "\x07", "\r", "\x08", "\u202e")), repr(text)
