from commands.secrets import REDACTED, Redactor

PATTERN = r"(?i)(PASS|SECRET|TOKEN|KEY|DATABASE_URL)"


def test_redacts_values_of_secret_keys_everywhere():
    r = Redactor(PATTERN)
    r.add_env({"SECRET_KEY": "s3cr3t-value-1", "LOG_LEVEL": "info", "OPENAI_API_KEY": "sk-abcdef"})
    assert r("error: token s3cr3t-value-1 rejected (sk-abcdef)") == f"error: token {REDACTED} rejected ({REDACTED})"
    assert r("log level info") == "log level info"


def test_longest_secret_first():
    r = Redactor(PATTERN)
    r.add("abcd")
    r.add("abcdefgh")
    assert r("x abcdefgh y abcd") == f"x {REDACTED} y {REDACTED}"


def test_url_passwords_are_redacted_even_if_never_seen():
    r = Redactor(PATTERN)
    assert r("connect postgresql://app:hunter22@db:5432/x failed") == f"connect postgresql://app:{REDACTED}@db:5432/x failed"


def test_password_inside_a_dsn_is_also_learned_alone():
    r = Redactor(PATTERN)
    r.add_env({"DATABASE_URL": "postgresql://app:pg-pass-123@db/x"})
    assert r("FATAL: password pg-pass-123 wrong") == f"FATAL: password {REDACTED} wrong"


def test_non_secret_key_with_credentials_in_url():
    r = Redactor(PATTERN)
    r.add_env({"CACHE": "redis://:redis-pass-9@cache:6379/0"})
    assert "redis-pass-9" not in r("using redis-pass-9")


def test_short_values_are_reported_not_redacted():
    r = Redactor(PATTERN)
    r.add_env({"DB_PASSWORD": "abc"})
    assert r.too_short == {"DB_PASSWORD"}
    assert r("abc") == "abc"


def test_obj_redacts_nested_structures():
    r = Redactor(PATTERN)
    r.add("top-secret-value")
    data = {"a": ["x top-secret-value", {"b": "top-secret-value"}], "n": 3, "top-secret-value": True}
    assert r.obj(data) == {"a": [f"x {REDACTED}", {"b": REDACTED}], "n": 3, REDACTED: True}


def test_none_and_non_strings():
    r = Redactor(PATTERN)
    assert r(None) is None
    assert r(42) == "42"
