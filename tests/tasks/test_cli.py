"""The task wrapper end to end with a scripted remote: error block, exit codes, no traceback."""
import os
import subprocess
import sys

import pytest
from invoke import Exit, MockContext, Result
from invoke.exceptions import ParseError

from tasks import base
from tasks.cli import CheckedArgument
from tasks.conftest import Remote, hermetic_config
from tasks.escalation import contacts
from tasks.verify import smoke

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


# ---- issue 7: stage and host selection, usage errors, output, escalation ------------------------

def collection_tasks():
    """Every task of the collection, as `fab --list` shows it: (name, parser context)."""
    import fabfile
    return [(ctx.name, ctx) for ctx in fabfile.ns.to_contexts()]


def test_stage_has_the_same_short_flag_on_every_task():
    # `-s` was --show on deploy, prepare and env-diff and --stage elsewhere (-t there, --to on rollback)
    tasks = collection_tasks()
    import re
    listed = {m.group(1) for m in re.finditer(r"^  (\S+)", fab("--list").stdout, re.M)}
    assert {name for name, _ in tasks} == listed
    meaning = {}
    for name, ctx in tasks:
        if name == "version":           # reads no stage: it must work with a broken config too
            assert not ctx.args, "fab version takes no options"
            continue
        stage = ctx.flags["--stage"]
        assert stage.names == ("stage", "s"), name
        for arg in ctx.args.values():
            for short in arg.nicknames:
                assert short != "h", f"{name} --{arg.names[0]} takes -h (help)"
                meaning.setdefault(short, set()).add(arg.names[0])
    assert {short: names for short, names in meaning.items() if len(names) > 1} == {}, "a short flag means different options"


def test_fab_deploy_dash_s_means_stage(monkeypatch):
    from tasks.test_hostile_inputs import run_fab
    # Nothing listens on 127.0.0.1:1: before the fix `-s` was --show here and this deployed the default stage.
    for k, v in {"DEPLOY_STAGING_HOSTS": "127.0.0.1:1", "DEPLOY_STAGING_SSH_CONFIG": "", "DEPLOY_CONNECT_TIMEOUT": "2"}.items():
        monkeypatch.setenv(k, v)
    for task in ("deploy", "prepare", "env-diff", "rollback"):
        code, out, err = run_fab(["-r", ROOT, task, "-s", "no-such-stage"])
        assert code == 2 and "unknown stage 'no-such-stage'" in err, (task, err)


def test_unknown_task_option_is_a_usage_error_with_exit_2():
    from tasks.test_hostile_inputs import run_fab
    r = fab("deploy", "--bogus")                        # the real `fab` console script
    assert r.returncode == 2 and "✗ USAGE ERROR" in r.stderr and "No idea what '--bogus' is!" in r.stderr, r.stderr
    for args, problem in ((["history", "--limit", "abc"], "--limit 'abc' is not accepted: --limit takes a whole number"),
                          (["deploy", "--lock-wait", "nan"], "--lock-wait must be zero or a positive number of seconds"),
                          (["deploy", "--message"], "Flag --message needed value"),
                          (["no-such-task"], "No idea what 'no-such-task' is!")):
        code, out, err = run_fab(["-r", ROOT, *args])
        assert code == 2, (args, err)
        assert "✗ USAGE ERROR" in err and problem in err and "Traceback" not in err, err


@pytest.mark.parametrize("args", [["plan", "--stage", "production"], ["--list"]])
def test_fab_plan_into_a_closed_pipe_ends_quietly(args):
    # `fab plan | head`: the reader is gone before the first write, so every write fails (EPIPE)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "fab"), *args],
                           cwd=ROOT, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr and r.stderr == ""


def test_fab_history_into_a_closed_pipe_ends_quietly(remote_task, monkeypatch):
    from tasks.status import history
    read_end, write_end = os.pipe()
    os.close(read_end)
    broken = os.fdopen(write_end, "w")
    monkeypatch.setattr(sys, "stdout", broken)
    c, remote = remote_task([])
    history(c, stage="production")                     # no BrokenPipeError
    assert any("releases.jsonl" in cmd for cmd in remote.commands)


def test_a_dash_h_host_in_no_stage_is_refused_with_a_configuration_error():
    r = fab("-H", "deploy@prod", "status")
    assert r.returncode == 2, r.stderr
    assert "-H host prod is listed in no stage's HOSTS" in r.stderr and "Traceback" not in r.stderr
    assert "add prod to HOSTS in config/<stage>.env" in " ".join(r.stderr.split())


def test_a_bare_task_says_its_host_comes_from_the_stage_hosts(remote_task, capsys):
    from tasks.status import status
    c, remote = remote_task([])
    with pytest.raises(Exit):
        status(c, stage="production")       # the scripted remote has no Compose; the first line is printed before
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("stage: production (--stage)   host: deploy@ai-doc-qa.example.com (from HOSTS of stage production")


def test_a_stage_ssh_config_applies_only_to_that_stage_hosts(mocker, tmp_path, monkeypatch):
    # `fab -H deploy@prod --stage staging`: staging's SSH_CONFIG replaced ~/.ssh/config for prod,
    # losing the operator's alias, user and ProxyJump
    from fabric import Connection

    from tasks.status import status
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host ai-doc-qa-staging\n  HostName 127.0.0.1\n  Port 2222\n")
    monkeypatch.setenv("DEPLOY_STAGING_SSH_CONFIG", str(cfg))
    monkeypatch.setenv("DEPLOY_STAGING_KNOWN_HOSTS", "")
    seen = {}

    def fake_connect(c, host, settings, accept_new=False):
        seen[host] = settings.ssh_config
        raise base.DeployError("stop here", code=base.ExitCode.CONNECTION)
    mocker.patch.object(base, "connect", side_effect=fake_connect)
    for host in ("deploy@prod", "ai-doc-qa-staging"):
        with pytest.raises(Exit):
            status(Connection(host, config=hermetic_config()), stage="staging")
    assert seen == {"deploy@prod": None, "ai-doc-qa-staging": str(cfg)}


def _key():
    import paramiko
    return paramiko.RSAKey.generate(1024)


@pytest.mark.parametrize("failure, pages", [
    ("unknown host key", False), ("no known_hosts file", False), ("name resolution", False),
    ("authentication", False), ("connection refused", False), ("changed host key", True)])
def test_setup_errors_page_nobody_and_a_changed_host_key_stays_a_security_incident(mocker, tmp_path, capsys, monkeypatch,
                                                                                 failure, pages):
    import socket

    import paramiko
    from fabric import Connection

    from tasks import hostkeys
    from tasks.status import status
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    monkeypatch.setenv("HOME", str(tmp_path))            # no ~/.ssh/known_hosts: KNOWN_HOSTS="" falls back to it
    os.environ["DEPLOY_KNOWN_HOSTS"] = str(kh) if failure != "no known_hosts file" else ""
    os.environ["DEPLOY_HOST_KEY_POLICY"] = "strict"
    errors = {
        "unknown host key": lambda: hostkeys.UnknownHostKey("prod", _key(), str(kh)),
        "name resolution": lambda: socket.gaierror(-2, "Name or service not known"),
        "authentication": lambda: paramiko.AuthenticationException("Authentication failed."),
        "connection refused": lambda: ConnectionRefusedError(111, "Connection refused"),
        "changed host key": lambda: paramiko.BadHostKeyException("prod", _key(), _key()),
    }
    mocker.patch("tasks.ssh.tcp_connect", return_value=mocker.Mock())      # no real name lookup
    if failure in errors:
        mocker.patch.object(Connection, "open", side_effect=errors[failure]())
    try:
        with pytest.raises(Exit) as exc:
            status(MockContext(config=hermetic_config()), stage="production")
    finally:
        del os.environ["DEPLOY_KNOWN_HOSTS"], os.environ["DEPLOY_HOST_KEY_POLICY"]
    err = " ".join(capsys.readouterr().err.split())
    assert exc.value.code == 5 and "Traceback" not in err
    if pages:
        assert "Escalate: Security incident -> Security Team" in err
    else:
        assert "Escalate: nobody: a setup problem" in err, err
        assert "Security incident" not in err and "Platform Team" not in err


def test_paramiko_banner_error_goes_to_the_run_log_not_the_terminal(tmp_path):
    # A listener that answers like a web server, not sshd: paramiko logs "Exception (client): Error
    # reading SSH protocol banner" and a traceback, which reached the terminal.
    import socket
    import threading
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]

    def answer():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
            conn.close()
    threading.Thread(target=answer, daemon=True).start()
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    state = tmp_path / "state"
    try:
        r = fab("-H", f"deploy@127.0.0.1:{port}", "status", "--stage", "production",
                env={"DEPLOY_KNOWN_HOSTS": str(kh), "DEPLOY_CONNECT_TIMEOUT": "5", "XDG_STATE_HOME": str(state)})
    finally:
        server.close()
    assert r.returncode == 5, r.stderr
    assert "Traceback" not in r.stderr and "Exception (client)" not in r.stderr, r.stderr
    assert "Escalate: nobody" in " ".join(r.stderr.split())
    logs = list((state / "ai-doc-qa-deploy" / "logs").glob("*-status-*.log"))
    assert len(logs) == 1 and "Error reading SSH protocol banner" in logs[0].read_text()
    assert str(logs[0]) in "".join(r.stderr.split())        # the block names the log (wrapped lines joined)


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


@pytest.mark.parametrize("kind, text, value", [(int, "3", 3), (float, "2.5", 2.5), (float, "0", 0.0)])
def test_a_checked_number_option_takes_its_value(kind, text, value):
    arg = CheckedArgument(names=("retries",), kind=kind)
    arg.set_value(text)
    assert arg.value == value and type(arg.value) is kind


@pytest.mark.parametrize("kind, text, problem", [
    (int, "three", "--retries must be a whole number, got 'three'"),
    (int, "0", "--retries must be 1 or more, got '0'"),
    (float, "soon", "--retries must be a number of seconds, got 'soon'"),
    (float, "inf", "--retries must be zero or a positive number of seconds, got 'inf'"),
    (float, "-1", "--retries must be zero or a positive number of seconds, got '-1'"),
])
def test_a_bad_number_option_is_a_parse_error_naming_the_flag(kind, text, problem):
    with pytest.raises(ParseError) as exc:
        CheckedArgument(names=("retries",), kind=kind).set_value(text)
    assert str(exc.value) == problem
