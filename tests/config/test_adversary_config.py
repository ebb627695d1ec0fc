"""The stage files and overrides, tried as a careless operator would (adversary pass, issue 7):
each defect found ends in a configuration error naming the file, line or key, never a traceback
and never a silent fallback."""
import os
import shutil

import pytest

import config
from config import ConfigError, choose_stage, load_settings
from config import load as config_load


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    """A copy of config/ that a test may break."""
    for name in ("defaults.env", "production.env", "staging.env"):
        shutil.copy(config.CONFIG_DIR / name, tmp_path / name)
    monkeypatch.setattr(config_load, "CONFIG_DIR", tmp_path)     # where the loader reads
    return tmp_path


def test_stage_file_that_is_not_utf8_is_a_config_error_not_a_traceback(config_dir):
    (config_dir / "evil.env").write_bytes(b"HOSTS=deploy@evil\nAPP_DIR=/srv/\xff\xfe\n")
    with pytest.raises(ConfigError) as exc:
        load_settings("evil", {})
    assert exc.value.problems == ["config/evil.env: not UTF-8 text (byte 31 is not valid UTF-8); save it as UTF-8"]
    with pytest.raises(ConfigError):            # -H looks at every stage's HOSTS: the same error, no traceback
        choose_stage(None, "deploy@somewhere", {})


def test_defaults_file_that_cannot_be_read_is_a_config_error(config_dir):
    os.unlink(config_dir / "defaults.env")
    (config_dir / "defaults.env").mkdir()
    with pytest.raises(ConfigError) as exc:
        load_settings("production", {})
    assert exc.value.problems == ["config/defaults.env: cannot be read (not a regular file)"]


def test_a_line_dotenv_cannot_parse_is_an_error_not_a_silent_fallback_to_defaults(config_dir):
    (config_dir / "evil.env").write_text('HOSTS=deploy@evil\nAPP_DIR="/srv/evil app\nHEALTH_TIMEOUT=5\n')
    with pytest.raises(ConfigError) as exc:
        load_settings("evil", {})            # before: app dir /app/ai-doc-qa from defaults.env, and a logged warning
    assert exc.value.problems == [
        "config/evil.env line 2: not a KEY=value line python-dotenv can parse (an unclosed quote?)"]


def test_a_key_set_twice_in_one_file_is_an_error(config_dir):
    (config_dir / "evil.env").write_text("HOSTS=deploy@evil\nAPP_DIR=/srv/a\n# later\nAPP_DIR=/srv/b\n")
    with pytest.raises(ConfigError) as exc:
        load_settings("evil", {})
    assert exc.value.problems == ["config/evil.env line 4: APP_DIR is already set on line 2; keep one"]


def test_values_with_equals_hash_and_quotes_keep_their_dotenv_meaning(config_dir):
    (config_dir / "evil.env").write_text(
        "HOSTS=deploy@evil\nSETUP_HINT='a=b # not a comment'\nMONITORING_URL=http://m/d#panel=2 # a comment\n")
    s = load_settings("evil", {})
    assert s.setup_hint == "a=b # not a comment" and s.monitoring_url == "http://m/d#panel=2"


def test_whole_number_too_large_for_a_float_is_a_config_error_not_a_traceback():
    with pytest.raises(ConfigError) as exc:
        load_settings("production", {"DEPLOY_LOG_TAIL": "9" * 400})
    assert exc.value.problems == [f"LOG_TAIL (environment variable DEPLOY_LOG_TAIL): must be at most 1e+06, got {'9' * 400!r}"]


def test_empty_secret_key_pattern_is_refused_it_would_make_every_secret_printable():
    with pytest.raises(ConfigError) as exc:
        load_settings("production", {"DEPLOY_SECRET_KEY_PATTERN": ""})
    assert exc.value.problems[0].startswith("SECRET_KEY_PATTERN (environment variable DEPLOY_SECRET_KEY_PATTERN): "
                                            "must not be empty")
    assert load_settings("production", {"DEPLOY_SECRET_KEY_PATTERN": "(?!)"}).secret_key_pattern == "(?!)"


def test_a_host_name_too_long_for_dns_is_a_config_error():
    with pytest.raises(ConfigError) as exc:
        load_settings("production", {"DEPLOY_HOSTS": "deploy@" + "x" * 64 + ".example.com"})
    assert "is too long for DNS (labels of at most 63 characters, 253 in all)" in exc.value.problems[0]
