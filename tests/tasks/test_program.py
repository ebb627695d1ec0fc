"""The project's `fab` (tasks/program.py) in-process: it refuses `fab -H HOST -- CMD`, parses -H
itself, checks the ssh_config before Fabric int()s it, and installs its entry point atomically.
(tests/tasks/test_cli.py runs the same paths as subprocesses; these run in this process.)"""
import os
import stat

import pytest
from fabric import Config
from invoke import Exit
from paramiko import SSHConfig

from tasks import program


def test_ssh_command_for_the_refusal_block():
    assert program.ssh_command("deploy@10.0.0.5:2222", "uptime") == "ssh -p 2222 deploy@10.0.0.5 uptime"
    assert program.ssh_command("[::1]:2222", "df -h") == "ssh -p 2222 ::1 'df -h'"
    assert program.ssh_command("prod", "uptime") == "ssh prod uptime"
    assert program.ssh_command("deploy@host:notaport", "uptime") == "ssh HOST uptime"


def test_fab_dash_h_host_dash_dash_command_is_refused_with_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        program.make_program().run(["fab", "-H", "deploy@10.0.0.5:2222", "--", "rm", "-rf", "/tmp/x"])
    assert exc.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "✗ REFUSED: fab -H HOST -- COMMAND" in err
    assert "which accepts any host key without checking known_hosts (fabric#1804)" in err
    assert "ssh -p 2222 deploy@10.0.0.5 'rm -rf /tmp/x'" in err
    assert "fab -H deploy@10.0.0.5:2222 status" in err


@pytest.mark.parametrize("argv", [["-t", "abc", "plan"], ["--command-timeout", "x", "status"], ["--connect-timeout=1.5", "status"]])
def test_a_bad_value_of_fabs_own_option_is_a_usage_error_not_a_traceback(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        program.make_program().run(["fab", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "USAGE ERROR in fab's own options" in err and "Traceback" not in err
    assert "nothing ran on any host" in " ".join(err.split())


def test_normalize_hosts_parses_ipv6_and_ports_and_refuses_bad_ones(capsys):
    ex = program.CheckedExecutor.__new__(program.CheckedExecutor)
    assert ex.normalize_hosts(["deploy@[::1]:2222", "web1", {"host": "kept"}]) == [
        {"host": "::1", "user": "deploy", "port": 2222}, {"host": "web1"}, {"host": "kept"}]
    assert ex.normalize_hosts(None) == []
    with pytest.raises(Exit) as exc:
        ex.normalize_hosts(["deploy@host:notaport", "ok"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "✗ USAGE ERROR in -H" in err and "notaport" in err


def config_with(text):
    c = Config(overrides={"load_ssh_configs": False})
    ssh = SSHConfig()
    ssh.parse(iter(text.splitlines()))
    c.base_ssh_config = ssh
    return c


def test_a_bad_ssh_config_value_is_a_configuration_error_not_a_traceback(capsys):
    call = program.CheckedConnectionCall(task=lambda c: None, init_kwargs={"host": "prod"})
    with pytest.raises(Exit) as exc:
        call.make_context(config_with("Host prod\n  Port abc\n"))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "✗ CONFIGURATION ERROR in the ssh config" in err and "for host prod:" in err and "abc" in err


def test_a_good_ssh_config_makes_the_connection():
    call = program.CheckedConnectionCall(task=lambda c: None, init_kwargs={"host": "prod"})
    cxn = call.make_context(config_with("Host prod\n  Port 2222\n  User deploy\n"))
    assert (cxn.host, cxn.port, cxn.user) == ("prod", 2222, "deploy")


def test_install_entry_point_writes_an_executable_script_atomically(tmp_path):
    target = tmp_path / "fab"
    target.write_text("old")
    program.install_entry_point(str(target), python="/usr/bin/python3", root="/srv/deploy")
    text = target.read_text()
    assert text.startswith("#!/usr/bin/python3\n")
    assert "return '/srv/deploy'" in text and "from tasks.program import main" in text
    assert os.stat(target).st_mode & stat.S_IXUSR
    assert [p.name for p in tmp_path.iterdir()] == ["fab"]          # no temporary file left behind


def test_duplicate_hosts_are_the_same_sshd_whatever_the_user_case_or_final_dot_but_not_another_port():
    assert program.duplicate_hosts(["deploy@prod", "root@PROD.", "prod:2222", {"host": "prod", "port": 2222}]) == [
        "prod is given twice (deploy@prod, root@PROD.): the task would run twice on it",
        "prod is given twice (prod:2222, {'host': 'prod', 'port': 2222}): the task would run twice on it"]
    # a malformed entry is -H's own error (reported by the parser), not a duplicate
    assert program.duplicate_hosts(["prod:notaport", "prod:notaport", {"hostname": "x"}, "prod"]) == []


def test_an_unreadable_ssh_config_is_a_configuration_error_with_exit_2(tmp_path, capsys):
    bad = tmp_path / "ssh_config"
    bad.write_text("Host prod\n  HostName\n")            # an option without a value: paramiko raises
    with pytest.raises(SystemExit) as exc:
        program.make_program().run(["fab", "-S", str(bad), "-H", "prod", "status"])
    assert exc.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "CONFIGURATION ERROR in the ssh config" in err and "ConfigParseError" in err
    assert "every option needs a value: `HostName 10.0.0.5`" in err
