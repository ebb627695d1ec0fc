import re

from commands import envdiff

SENTINEL = "sentinel-Zq8v-never-print-me"
SECRET_KEYS = re.compile(r"(?i)(PASS|SECRET|TOKEN|KEY|DATABASE_URL)")

PROD = f"""# production
export APP_ENV=production
SECRET_KEY="{SENTINEL}"
DATABASE_URL=postgresql://app:{SENTINEL}@db:5432/app
LOG_LEVEL=info
ONLY_PROD=1
MULTI="line one
line two"
"""
STAGING = """APP_ENV=staging
SECRET_KEY=staging-secret
DATABASE_URL=postgresql://app:stg@db:5432/app
LOG_LEVEL=info
ONLY_STAGING=yes
MULTI="line one
line two"
"""


def test_parse_env_handles_export_quotes_comments_multiline():
    env = envdiff.parse_env(PROD)
    assert env["APP_ENV"] == "production"
    assert env["SECRET_KEY"] == SENTINEL
    assert env["MULTI"] == "line one\nline two"
    assert "production" not in env


def test_diff_by_key():
    d = envdiff.diff(envdiff.parse_env(PROD), envdiff.parse_env(STAGING), ".env.production", ".env.staging")
    assert d.only_left == ("ONLY_PROD",)
    assert d.only_right == ("ONLY_STAGING",)
    assert d.changed == ("APP_ENV", "DATABASE_URL", "SECRET_KEY")
    assert d.same == ("LOG_LEVEL", "MULTI")
    assert d.differs


def test_rows_never_contain_values_even_when_asked_for_secret_keys():
    left, right = envdiff.parse_env(PROD), envdiff.parse_env(STAGING)
    d = envdiff.diff(left, right, "l", "r")
    rows = envdiff.render_rows(d, left, right, show=frozenset({"SECRET_KEY", "DATABASE_URL"}), secret_key=SECRET_KEYS)
    text = repr(rows)
    assert SENTINEL not in text
    assert "staging-secret" not in text
    assert ["changed", "SECRET_KEY", "****** (secret)", "****** (secret)"] in rows


def test_show_prints_a_non_secret_key_only():
    left, right = envdiff.parse_env(PROD), envdiff.parse_env(STAGING)
    d = envdiff.diff(left, right, "l", "r")
    rows = envdiff.render_rows(d, left, right, show=frozenset({"APP_ENV"}), secret_key=SECRET_KEYS)
    assert ["changed", "APP_ENV", "production", "staging"] in rows
    rows = envdiff.render_rows(d, left, right, secret_key=SECRET_KEYS)
    app_env = [r for r in rows if r[1] == "APP_ENV"][0]
    assert "production" not in app_env[2] and app_env[2].startswith("****** (10 chars, sha256:")


def test_without_a_pattern_everything_counts_as_secret():
    d = envdiff.diff({"A": "x1"}, {"A": "x2"}, "l", "r")
    assert envdiff.render_rows(d, {"A": "x1"}, {"A": "x2"}, show=frozenset({"A"})) == [["changed", "A", "****** (secret)", "****** (secret)"]]


def test_empty_values():
    assert envdiff.mask("") == "(empty)"
