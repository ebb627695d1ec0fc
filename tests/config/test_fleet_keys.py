"""The fleet keys (docs/fleets.md): defaults, and bad values refused before any SSH."""
import pytest

from config import ConfigError, load_settings

TWO = {"DEPLOY_HOSTS": "web-1.example.com,web-2.example.com"}


def test_fleet_defaults_are_rolling_with_revert():
    s = load_settings("production", TWO)
    assert (s.batch_size, s.batch_wait, s.failure_policy, s.migration_host) == ("1", 0.0, "revert", None)


def test_fleet_values_are_read():
    s = load_settings("production", {**TWO, "DEPLOY_BATCH_SIZE": "50%", "DEPLOY_BATCH_WAIT": "30",
                                     "DEPLOY_FAILURE_POLICY": "stop", "DEPLOY_MIGRATION_HOST": "web-2.example.com"})
    assert (s.batch_size, s.batch_wait, s.failure_policy, s.migration_host) == ("50%", 30.0, "stop", "web-2.example.com")


@pytest.mark.parametrize("key,value,says", [
    ("BATCH_SIZE", "0", "a number of hosts (1 or more) or a percentage"),
    ("BATCH_SIZE", "150%", "a number of hosts (1 or more) or a percentage"),
    ("FAILURE_POLICY", "panic", "must be one of stop, revert, continue"),
    ("MIGRATION_HOST", "db.example.com", "MIGRATION_HOST (environment variable DEPLOY_MIGRATION_HOST): db.example.com is not one of HOSTS"),
])
def test_bad_fleet_values_are_configuration_errors(key, value, says):
    with pytest.raises(ConfigError) as exc:
        load_settings("production", {**TWO, f"DEPLOY_{key}": value})
    assert says in str(exc.value)
