"""Issue 7 item 11: secrets that live in the stage config itself are known to the redactor before
anything is printed, configuration errors included."""
import pytest

from commands.secrets import Redactor
from config import ConfigError, load_settings

HOOK = "https://hooks.example.com/services/T0/B0/sentinel-hook-path-token"


def test_settings_carry_the_secrets_held_in_the_config():
    st = load_settings("production", {
        "DEPLOY_WEBHOOK_URL": HOOK,
        "DEPLOY_SMOKE_URLS": "http://localhost/health?token=sentinel-smoke-q,http://localhost/x",
        "DEPLOY_MONITORING_URL": "https://grafana.example.com/d?orgId=1&auth_token=sentinel-mon-q",
        "DEPLOY_DB_READY_COMMAND": "PGPASSWORD=sentinel-pg-ready pg_isready -U postgres",
        "DEPLOY_DB_CHECK_COMMAND": "mysqladmin -u root -psentinel-mysql ping",
    })
    values = {v for _, v in st.secrets}
    assert {HOOK, "sentinel-smoke-q", "sentinel-mon-q", "sentinel-pg-ready",
            "sentinel-mysql"} <= values
    assert not any("localhost/x" in v for v in values)


def test_config_without_secrets_holds_none():
    assert load_settings("production", {}).secrets == ()


def test_a_configuration_error_carries_the_secrets_of_the_raw_values():
    with pytest.raises(ConfigError) as exc:
        load_settings("production", {"DEPLOY_WEBHOOK_URL": HOOK + " x", "DEPLOY_SMOKE_TIMEOUT": "never",
                                     "DEPLOY_HEALTH_URL": "https://ops:sentinel-userinfo@h/health"})
    assert len(exc.value.problems) == 3
    redact = Redactor(secrets=exc.value.secrets)
    assert all("sentinel" not in redact(p) for p in exc.value.problems)


def test_short_password_in_a_db_command_is_reported_and_masked_by_its_name():
    st = load_settings("production", {"DEPLOY_DB_READY_COMMAND": "PGPASSWORD=pw pg_isready"})
    r = Redactor(st.secret_key_pattern, st.secrets)
    assert r.too_short == {"DB_READY_COMMAND (PGPASSWORD)"}
    assert r("$ sh -c 'PGPASSWORD=pw pg_isready'") == "$ sh -c 'PGPASSWORD=[REDACTED] pg_isready'"
