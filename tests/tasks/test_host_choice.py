"""Which host and which stage a task runs with, as an operator types -H (breaks found by trying):
an explicit user or port that equals a default was dropped; a host listed twice ran the task
twice; an alias or address of one stage's host ran with another stage's settings."""
import paramiko
import pytest
from fabric import Connection
from invoke import Exit

from tasks import base
from tasks.conftest import hermetic_config
from tasks.program import CheckedConnectionCall, CheckedExecutor


def operator_config(text: str = ""):
    """A fab config whose ssh config (~/.ssh/config or -S) is ``text``."""
    config = hermetic_config()
    config._set(base_ssh_config=paramiko.SSHConfig.from_text(text))
    return config


def dash_h(host: str, config) -> Connection:
    """The Connection fab builds for `-H host` (the project's executor and call)."""
    [kwargs] = CheckedExecutor.normalize_hosts(None, [host])
    return CheckedConnectionCall(task=None, init_kwargs=kwargs).make_context(config)


@pytest.mark.parametrize("given", ["ai-doc-qa-staging:22", "root@ai-doc-qa-staging", "root@ai-doc-qa-staging:22"])
def test_explicit_user_or_port_in_dash_h_is_kept_even_when_it_equals_the_default(given, monkeypatch):
    """`-H host:22` connected to the stage ssh config's Port 2222, and `-H root@host` (root being the
    local user) as the ssh config's User: the value equal to fab's default was taken as not given."""
    monkeypatch.setattr("getpass.getuser", lambda: "root")
    c = dash_h(given, operator_config())
    assert base.host_strings(c, None) == [given]


def test_a_host_given_twice_with_dash_h_is_refused(capsys):
    """`fab -H prod,prod rollback` ran the task twice: the second bare rollback went one release
    further back."""
    with pytest.raises(Exit) as exc:
        CheckedExecutor.normalize_hosts(None, ["deploy@prod.example.com", "root@PROD.example.com.", "other"])
    assert exc.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "prod.example.com is given twice (deploy@prod.example.com, root@PROD.example.com.)" in err
    assert len(CheckedExecutor.normalize_hosts(None, ["prod", "prod:2200"])) == 2      # other port: another sshd


@pytest.fixture
def stages(tmp_path, monkeypatch):
    """staging: the alias ai-doc-qa-staging in its own ssh config (127.0.0.1:2222, as the sandbox);
    production: deploy@ai-doc-qa.example.com through the operator's ssh config."""
    cfg = tmp_path / "staging_ssh_config"
    cfg.write_text("Host ai-doc-qa-staging\n  HostName 127.0.0.1\n  Port 2222\n  User deploy\n")
    monkeypatch.setenv("DEPLOY_STAGING_SSH_CONFIG", str(cfg))
    monkeypatch.setenv("DEPLOY_STAGING_KNOWN_HOSTS", "")
    reached = []

    def fake_connect(c, host, settings, accept_new=False):
        reached.append((host, settings.stage))
        raise base.DeployError("stop here", code=base.ExitCode.CONNECTION)
    monkeypatch.setattr(base, "connect", fake_connect)
    return reached


def run_status(c, stage):
    from tasks.status import status
    with pytest.raises(Exit) as exc:
        status(c, stage=stage)
    return exc.value.code


@pytest.mark.parametrize("host, ssh_config, stage, owner", [
    # an alias of the production server, run with staging's settings
    ("prod", "Host prod\n  HostName ai-doc-qa.example.com\n", "staging", "production"),
    ("prod", "Host prod\n  HostName AI-DOC-QA.example.com.\n", "staging", "production"),
    # the address the staging alias stands for, run with production's settings
    ("127.0.0.1:2222", "", "production", "staging"),
    ("deploy@127.0.0.1:2222", "", "production", "staging"),
    # the staging host by its own name, with --stage production
    ("ai-doc-qa-staging", "", "production", "staging"),
])
def test_dash_h_host_that_another_stage_lists_is_refused_with_the_wrong_stage(stages, capsys, host, ssh_config, stage, owner):
    """With --stage, a -H host in no stage's HOSTS was allowed, compared by the name typed: an alias
    of the production server (or the address behind the staging alias) ran with the other stage's
    app dir, branch and URLs."""
    code = run_status(dash_h(host, operator_config(ssh_config)), stage)
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and stages == [], err
    assert f"config/{owner}.env" in err and f"--stage {owner}" in err


def test_dash_h_alias_of_a_listed_host_without_stage_still_names_its_stage(stages, capsys):
    code = run_status(dash_h("prod", operator_config("Host prod\n  HostName ai-doc-qa.example.com\n")), None)
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and stages == []
    assert "prod is ai-doc-qa.example.com:22, which HOSTS of config/production.env lists" in err


@pytest.mark.parametrize("host, ssh_config, stage", [
    ("10.9.9.9", "", "production"),                          # in no stage: allowed with --stage, as documented
    ("ai-doc-qa-staging", "", "staging"),
    ("deploy@ai-doc-qa.example.com:2200", "", "production"),  # the stage's own host on another port
    ("prod", "Host prod\n  HostName ai-doc-qa.example.com\n", "production"),
])
def test_dash_h_host_with_its_own_stage_or_in_no_stage_is_not_refused(stages, host, ssh_config, stage):
    assert run_status(dash_h(host, operator_config(ssh_config)), stage) == 5
    assert stages == [(host, stage)]


def test_stage_hosts_listing_a_host_twice_is_a_configuration_error():
    """A bare task runs once per HOSTS entry: the same host twice ran the task twice."""
    from config import ConfigError, load_settings
    with pytest.raises(ConfigError) as exc:
        load_settings("production", {"DEPLOY_PRODUCTION_HOSTS": "deploy@a.example.com,b.example.com,A.example.com."})
    assert "HOSTS (environment variable DEPLOY_PRODUCTION_HOSTS): lists a.example.com twice (deploy@a.example.com, A.example.com.)" in exc.value.problems[0]
    assert load_settings("production", {"DEPLOY_PRODUCTION_HOSTS": "a.example.com,a.example.com:2200"}).hosts == (
        "a.example.com", "a.example.com:2200")
