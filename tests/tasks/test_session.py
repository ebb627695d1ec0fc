import pytest
from invoke import Result
from invoke.exceptions import CommandTimedOut

from tasks.errors import CommandFailed, DeployError
from tasks.hostsecrets import learn_secrets
from tasks.session import Session


def test_run_wraps_in_remote_timeout_and_passes_warn_explicitly(settings, mocker):
    cxn = mocker.Mock()
    cxn.run.return_value = Result(stdout="ok\n", exited=0)
    s = Session(settings, "h", cxn)
    r = s.run("echo 'a b'", timeout=30)
    assert r.stdout == "ok\n" and r.ok
    cmd = cxn.run.call_args.args[0]
    assert cmd == f"timeout -k 5 30 sh -c 'echo '\"'\"'a b'\"'\"'' {s.run_tag} </dev/null"
    kw = cxn.run.call_args.kwargs
    assert kw["warn"] is True and kw["hide"] is True and kw["pty"] is False and kw["in_stream"] is False
    assert kw["timeout"] == 45


def test_a_command_that_must_finish_carries_the_keep_tag_reads_and_pulls_do_not(settings, mocker):
    """After a lost connection, the processes tagged run_tag-keep are let finish before the rest
    are stopped (kill_running): compose up and migrations, not reads or an interruptible pull."""
    cxn = mocker.Mock()
    cxn.run.return_value = Result(stdout="", exited=0)
    s = Session(settings, "h", cxn)
    s.run("docker compose up -d", mutating=True, timeout=300)
    s.run("mkdir .deploy/lock && echo acquired", mutating=True)
    s.run("docker compose pull", mutating=True, interruptible=True, timeout=300)
    s.run("docker ps")
    tags = [c.args[0].rsplit(" </dev/null", 1)[0].rsplit(" ", 1)[1] for c in cxn.run.call_args_list]
    assert tags == [s.run_tag + "-keep", s.run_tag + "-keep", s.run_tag, s.run_tag]
    up, lock, pull, ps = (c.args[0] for c in cxn.run.call_args_list)
    # Only a must-finish command with a timeout of its own (it writes progress as it works) keeps
    # its output on the host; a quick one (the lock) writes its one line at the end, after its work.
    assert "mktemp" in up and "mktemp" not in lock + pull + ps


def test_kill_running_after_a_lost_connection_lets_the_must_finish_commands_end_first(settings, mocker):
    cxn = mocker.Mock(is_connected=True)
    s = Session(settings, "h", cxn)
    assert s.kill_running() and s.kill_running(let_finish=True)
    plain, letting = (c.args[0] for c in cxn.run.call_args_list)
    assert "-keep" not in plain and plain.startswith("pkill -TERM")
    wait = max(settings.command_timeout, settings.up_timeout, settings.migrate_timeout) + 5
    assert letting.startswith(f"i=0; while pgrep -f -- '[a]{s.run_tag[1:]}-keep' >/dev/null && [ $i -lt {int(wait) * 5} ]")
    assert cxn.run.call_args.kwargs["timeout"] >= wait + 10


def test_non_zero_raises_command_failed_with_output(settings, mocker):
    cxn = mocker.Mock()
    cxn.run.return_value = Result(stdout="out", stderr="boom", exited=3)
    s = Session(settings, "h", cxn)
    with pytest.raises(CommandFailed) as exc:
        s.run("false")
    assert exc.value.exit_code == 3 and exc.value.output == "out\nboom"
    assert s.run("false", check=False).exited == 3
    assert s.run("grep x", ok_codes=(0, 3)).exited == 3


def test_remote_timeout_exit_124_and_local_backstop(settings, mocker):
    cxn = mocker.Mock()
    cxn.run.return_value = Result(stdout="", exited=124)
    s = Session(settings, "h", cxn)
    with pytest.raises(CommandFailed) as exc:
        s.run("sleep 100", timeout=5)
    assert exc.value.timed_out and "timed out after 5 s" in str(exc.value)
    cxn.run.side_effect = CommandTimedOut(Result(stdout="partial"), 20)
    with pytest.raises(CommandFailed) as exc:
        s.run("sleep 100", timeout=5)
    assert exc.value.timed_out


def test_lost_connection_becomes_a_deploy_error(settings, mocker):
    cxn = mocker.Mock()
    cxn.run.side_effect = EOFError("socket closed")
    s = Session(settings, "deploy@prod", cxn)
    s.state.serving = "still serving v1"
    with pytest.raises(DeployError) as exc:
        s.run("docker compose up -d")
    assert exc.value.code == 5 and "lost the SSH connection" in exc.value.what
    assert "unknown" in exc.value.state


def test_dry_run_prints_mutating_commands_and_runs_reads(settings, mocker, capsys):
    cxn = mocker.Mock()
    cxn.run.return_value = Result(stdout="read", exited=0)
    s = Session(settings, "h", cxn, dry=True)
    assert s.run("docker compose up -d", mutating=True).stdout == ""
    assert cxn.run.call_count == 0
    assert "[dry] would run: docker compose up -d" in capsys.readouterr().out
    assert s.run("docker compose ps -q").stdout == "read"


def test_learn_secrets_reads_env_files_in_one_round_trip(make_session):
    out = ("@@ai-doc-qa-file@@/app/ai-doc-qa/.env.production\nSECRET_KEY=sentinel-prod-secret\nLOG_LEVEL=info\n\n"
           "@@ai-doc-qa-file@@/app/ai-doc-qa/.env.staging\nSECRET_KEY=sentinel-staging-secret\n\n"
           "@@ai-doc-qa-file@@/app/ai-doc-qa/.env\n\n")
    s, remote = make_session([("@@ai-doc-qa-file@@", out)])
    learn_secrets(s)
    assert len(remote.commands) == 1
    assert s.redactor("x sentinel-prod-secret sentinel-staging-secret info") == "x [REDACTED] [REDACTED] info"


def test_compose_detection(make_session):
    s, _ = make_session([("docker compose version", "v1 1.29.2\n")])
    assert s.compose.command == "docker-compose" and s.compose_version == "1.29.2"
    s, _ = make_session([("docker compose version", "none\n")])
    with pytest.raises(DeployError, match="neither `docker compose` nor `docker-compose`"):
        s.compose


def test_host_keys_are_enforced_on_the_target_and_every_jump_host(tmp_path, settings):
    import dataclasses

    import paramiko
    from fabric import Connection

    from tasks.conftest import hermetic_config
    from tasks.hostkeys import AcceptNewPolicy, StrictPolicy
    from tasks.ssh import harden

    kh = tmp_path / "known_hosts"
    kh.write_text("")
    st = dataclasses.replace(settings, known_hosts=str(kh))
    hop2 = Connection("jump2.example.com", config=hermetic_config())
    hop1 = Connection("jump1.example.com", gateway=hop2, config=hermetic_config())
    target = Connection("prod.example.com", gateway=hop1, config=hermetic_config())
    assert isinstance(target.client._policy, paramiko.AutoAddPolicy)      # Fabric's default: accept anything
    assert harden(target, st, accept_new=False) == [str(kh)] * 3
    for c in (target, hop1, hop2):
        assert isinstance(c.client._policy, StrictPolicy)
    harden(target, st, accept_new=True)
    assert all(isinstance(c.client._policy, AcceptNewPolicy) for c in (target, hop1, hop2))


def test_missing_known_hosts_file_is_refused_when_strict(tmp_path, settings):
    import dataclasses

    from fabric import Connection

    from tasks.conftest import hermetic_config
    from tasks.ssh import harden

    st = dataclasses.replace(settings, known_hosts=str(tmp_path / "absent"))
    with pytest.raises(DeployError) as exc:
        harden(Connection("prod.example.com", config=hermetic_config()), st, accept_new=False)
    assert exc.value.code == 5 and "no known_hosts file" in exc.value.what and exc.value.kind == "setup"


def test_ctrl_c_lands_in_the_waiting_thread_never_inside_ssh_io():
    """off_main_thread: the interrupt is raised while the main thread waits; the I/O it was waiting
    for still runs to completion in its own thread (so no paramiko lock is left held)."""
    import os
    import signal
    import threading
    import time

    from tasks.worker import off_main_thread

    finished = threading.Event()

    def io():
        time.sleep(0.6)
        finished.set()
        return "done"

    # This test relies on SIGINT raising KeyboardInterrupt: say so, whatever pytest's parent set
    # (a parent that ignores SIGINT makes Python install no handler at all).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        with pytest.raises(KeyboardInterrupt):
            off_main_thread(io)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert not finished.is_set()            # interrupted while the I/O was still running...
    assert finished.wait(2)                 # ...which then completed undisturbed
    assert off_main_thread(lambda: 42) == 42
    with pytest.raises(ValueError):
        off_main_thread(lambda: (_ for _ in ()).throw(ValueError("boom")))


def test_after_ctrl_c_a_mutating_command_is_allowed_to_finish(settings, mocker, capsys):
    import threading

    from tasks.session import Session
    from tasks.worker import Job

    gate = threading.Event()
    job = Job(lambda: gate.wait(5))
    s = Session(settings, "h", mocker.Mock())
    s.interrupted.append((job, "docker compose up -d", 30, True))
    threading.Timer(0.3, gate.set).start()
    s.settle_after_interrupt()
    assert job.done.is_set() and s.interrupted == []
    assert "letting the running command finish first" in capsys.readouterr().out
    # an interruptible one (compose pull) is not waited for
    gate2 = threading.Event()
    job2 = Job(lambda: gate2.wait(5))
    s.interrupted.append((job2, "docker compose pull", 600, False))
    s.settle_after_interrupt()
    assert not job2.done.is_set()
    gate2.set()


def test_sub_second_timeout_is_never_timeout_0_on_the_host(settings, mocker):
    """Issue 7 #15: COMMAND_TIMEOUT=0.5 became `timeout 0`, which coreutils reads as no limit."""
    cxn = mocker.Mock()
    cxn.run.return_value = Result(stdout="", exited=0)
    s = Session(settings, "h", cxn)
    s.run("sleep 100", timeout=0.4)
    assert cxn.run.call_args.args[0].startswith("timeout -k 5 1 sh -c ")
    s.run("sleep 100", timeout=2.5)
    assert cxn.run.call_args.args[0].startswith("timeout -k 5 3 sh -c ")


def test_sub_second_connect_timeout_is_not_dropped_by_fabric(settings):
    """Issue 7 #15: fabric int()s timeouts.connect, so CONNECT_TIMEOUT=0.5 meant no connect timeout."""
    import dataclasses

    from tasks.conftest import hermetic_config
    from tasks.sshconfig import stage_config

    class C:
        config = hermetic_config()

    config = stage_config(C(), dataclasses.replace(settings, connect_timeout=0.5))
    assert config.timeouts.connect == 1
    assert config.connect_kwargs["banner_timeout"] == 0.5


def test_an_env_file_not_learned_at_the_start_is_read_once_and_its_secrets_are_hidden(make_session):
    """The env diff compares a file outside ENV_FILES/SECRET_FILES (e.g. .env.staging): it is read
    when first asked for, its secret values join the redactor, and it is not read again."""
    from tasks.hostsecrets import env_file
    secret = "s3cr3t-value-for-the-test-0123456789"
    s, remote = make_session([(r"\.env\.staging", f"DATABASE_PASSWORD={secret}\nDEBUG=0\n"),
                              (r"\.env\.gone", Result(stdout="", exited=3))])
    assert env_file(s, ".env.staging") == {"DATABASE_PASSWORD": secret, "DEBUG": "0"}
    assert env_file(s, ".env.staging") == {"DATABASE_PASSWORD": secret, "DEBUG": "0"}
    assert env_file(s, ".env.gone") is None and env_file(s, ".env.gone") is None
    assert len(remote.commands) == 2 and ".env.staging" in remote.commands[0] and ".env.gone" in remote.commands[1]
    assert secret not in s.redactor(f"connecting with {secret}")
