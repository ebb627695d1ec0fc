import dataclasses

import pytest

from config import ConfigError, available_stages, choose_stage, load_settings

NO_SANDBOX = {"DEPLOY_SSH_CONFIG": "", "DEPLOY_KNOWN_HOSTS": ""}


def test_stages():
    assert {"staging", "production"} <= set(available_stages())


def test_production_defaults():
    s = load_settings("production", {})
    assert s.hosts == ("deploy@ai-doc-qa.example.com",)
    assert s.app_dir == "/app/ai-doc-qa" and s.compose_file == "docker-compose.production.yml"
    assert s.services == ("backend", "model_server", "proxy") and s.dependency_services == ("postgres", "redis")
    assert s.auto_rollback is True and s.tested_on_stage == "staging"
    assert "migrations_untested" in s.checklist_blocking
    assert s.contact("database").team == "DBA Team" and s.contact("database").response == "15 minutes"
    assert s.contact("security").response == "Immediate"
    assert s.releases_file == "/app/ai-doc-qa/.deploy/releases.jsonl"
    assert s.lock_dir == "/app/ai-doc-qa/.deploy/lock"


def test_environment_overrides_and_stage_specific_wins():
    env = {"DEPLOY_HEALTH_TIMEOUT": "30", "DEPLOY_PRODUCTION_HEALTH_TIMEOUT": "45", "DEPLOY_AUTO_ROLLBACK": "false"}
    s = load_settings("production", env)
    assert s.health_timeout == 45 and s.auto_rollback is False
    assert s.sources["HEALTH_TIMEOUT"] == "environment variable DEPLOY_PRODUCTION_HEALTH_TIMEOUT"
    assert load_settings("staging", {**env, **NO_SANDBOX}).health_timeout == 30


def test_errors_name_every_bad_key_and_its_source():
    env = {"DEPLOY_HEALTH_TIMEOUT": "soon", "DEPLOY_GIT_BRANCH": "main;rm -rf /", "DEPLOY_SERVICES": "backend,-x",
           "DEPLOY_APP_DIR": "relative/dir", "DEPLOY_AUTO_ROLLBACK": "maybe", "DEPLOY_HEALTH_URL": "http://x/$(id) y"}
    with pytest.raises(ConfigError) as exc:
        load_settings("production", env)
    text = str(exc.value)
    for key in ("HEALTH_TIMEOUT", "GIT_BRANCH", "SERVICES", "APP_DIR", "AUTO_ROLLBACK", "HEALTH_URL"):
        assert f"{key} (environment variable DEPLOY_{key})" in text
    assert "must be a number of seconds, got 'soon'" in text
    assert "must be an absolute path" in text


def test_cross_field_checks():
    with pytest.raises(ConfigError, match="DEPENDENCY_SERVICES both list postgres"):
        load_settings("production", {"DEPLOY_SERVICES": "backend,postgres"})
    with pytest.raises(ConfigError, match="BACKEND_SERVICE"):
        load_settings("production", {"DEPLOY_BACKEND_SERVICE": "api"})
    with pytest.raises(ConfigError, match="twice LOCK_HEARTBEAT"):
        load_settings("production", {"DEPLOY_LOCK_HEARTBEAT": "100"})


def test_missing_files_and_hint():
    env = {"DEPLOY_SSH_CONFIG": "/nonexistent/ssh_config", "DEPLOY_KNOWN_HOSTS": "/nonexistent/known_hosts"}
    with pytest.raises(ConfigError) as exc:
        load_settings("staging", env)
    assert any("SSH_CONFIG" in p and "does not exist" in p for p in exc.value.problems)
    assert exc.value.problems[-1].startswith("hint: the staging host is the local sandbox")


def test_unknown_stage_and_bad_name():
    with pytest.raises(ConfigError, match="unknown stage 'qa'"):
        load_settings("qa", {})
    with pytest.raises(ConfigError, match="not a valid stage name"):
        load_settings("../etc", {})


def test_unknown_checklist_item():
    with pytest.raises(ConfigError, match="unknown checklist item"):
        load_settings("production", {"DEPLOY_CHECKLIST_BLOCKING": "monitoring,coffee"})


def test_choose_stage():
    assert choose_stage("production", "whatever", {}) == ("production", "--stage")
    assert choose_stage(None, "ai-doc-qa.example.com", {})[0] == "production"
    assert choose_stage(None, "deploy@ai-doc-qa-staging:22", {})[0] == "staging"
    stage, why = choose_stage(None, None, {})
    assert stage == "staging" and "DEFAULT_STAGE" in why
    assert choose_stage(None, None, {"DEPLOY_STAGE": "production"})[0] == "production"


def test_a_dash_h_host_that_no_stage_lists_is_refused_not_given_the_default_stage():
    # issue 7.9: `fab -H deploy@prod deploy` used staging's app dir, URLs and ssh config
    with pytest.raises(ConfigError) as exc:
        choose_stage(None, "deploy@prod", {})
    text = "\n".join(exc.value.problems)
    assert "-H host prod is listed in no stage's HOSTS" in text
    assert "config/production.env: HOSTS=deploy@ai-doc-qa.example.com" in text
    assert "add prod to HOSTS in config/<stage>.env" in exc.value.next_step and "--stage" in exc.value.next_step
    # DEPLOY_STAGE chooses the stage of a bare task only; it does not adopt unknown hosts
    with pytest.raises(ConfigError):
        choose_stage(None, "deploy@prod", {"DEPLOY_STAGE": "production"})
    # with --stage the host is used with that stage's settings
    assert choose_stage("production", "deploy@prod", {}) == ("production", "--stage")
    # a stage that lists the host (through DEPLOY_<STAGE>_HOSTS) adopts it
    assert choose_stage(None, "deploy@prod", {"DEPLOY_PRODUCTION_HOSTS": "prod"})[0] == "production"


def test_settings_are_frozen():
    s = load_settings("production", {})
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'app_dir'"):
        s.app_dir = "/tmp"


def test_an_empty_stage_option_is_a_bad_stage_not_the_default_stage():
    # `fab deploy --stage ''` went to the default stage (found by the hostile-inputs test)
    assert choose_stage("", None, {}) == ("", "--stage")
    with pytest.raises(ConfigError, match="is not a valid stage name"):
        load_settings("", {})
