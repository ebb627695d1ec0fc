"""Issue 11: the operator's own settings outside tracked files (config/local.env, or the directory
$DEPLOY_LOCAL_CONFIG names), where each value came from, and placeholder hosts refused."""
import shutil

import pytest

import config
from config import load as config_load
from tests.conftest import NO_SANDBOX


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    d = tmp_path / "config"
    shutil.copytree(config.CONFIG_DIR, d, ignore=shutil.ignore_patterns("local.env", "__pycache__", "*.py"))
    monkeypatch.setattr(config_load, "CONFIG_DIR", d)     # where the loader reads (config/load.py)
    return d


def test_local_env_overrides_the_stage_file_and_says_so(config_dir):
    (config_dir / "local.env").write_text("PRODUCTION_HOSTS=deploy@prod1.internal\nSTAGING_HOSTS=deploy@stage.internal\n"
                                          "MONITORING_URL=http://grafana.internal/d/1\n")
    s = config.load_settings("production", {})
    assert s.hosts == ("deploy@prod1.internal",)                    # the other stage's key is not production's
    assert s.sources["HOSTS"] == "config/local.env" and s.sources["MONITORING_URL"] == "config/local.env"
    assert s.sources["APP_DIR"] == "config/production.env"
    assert config.load_settings("staging", NO_SANDBOX).hosts == ("deploy@stage.internal",)


def test_local_env_is_not_a_stage(config_dir):
    (config_dir / "local.env").write_text("LOG_TAIL=5\n")
    assert "local" not in config.available_stages()
    with pytest.raises(config.ConfigError):
        config.load_settings("local", {})


def test_a_directory_named_by_the_environment_overrides_local_env_and_the_environment_wins(config_dir, tmp_path):
    (config_dir / "local.env").write_text("LOG_TAIL=5\nLOCK_WAIT=3\n")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "production.env").write_text("LOG_TAIL=6\nHOSTS=deploy@prod2.internal\n")
    env = {"DEPLOY_LOCAL_CONFIG": str(mine), "DEPLOY_PRODUCTION_LOCK_WAIT": "4"}
    s = config.load_settings("production", env)
    assert (s.log_tail, s.hosts, s.lock_wait) == (6, ("deploy@prod2.internal",), 4.0)
    assert s.sources["LOG_TAIL"] == f"{mine / 'production.env'} ($DEPLOY_LOCAL_CONFIG)"
    assert s.sources["LOCK_WAIT"] == "environment variable DEPLOY_PRODUCTION_LOCK_WAIT"


def test_placeholders_are_named_with_their_source():
    s = config.load_settings("production", {})
    assert config.placeholder_problems(s) == [
        "HOSTS (config/production.env): deploy@ai-doc-qa.example.com is a placeholder, not your server",
        "MONITORING_URL (config/production.env): http://monitoring.example.com/dashboard is a placeholder, not your server"]
    real = config.load_settings("production", {"DEPLOY_PRODUCTION_HOSTS": "deploy@10.0.0.5",
                                               "DEPLOY_PRODUCTION_MONITORING_URL": "https://grafana.corp.net/d/1"})
    assert config.placeholder_problems(real) == []
    assert config.placeholder_problems(config.load_settings("staging", NO_SANDBOX)) == []
