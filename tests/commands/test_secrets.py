import base64
import json
from urllib.parse import quote, quote_plus

from commands.secrets import REDACTED, Redactor
from config.secrets import command_secrets

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


# ---- issue 7, items 10 and 11: every form a secret takes in text -----------------------------------


PEM = ("-----BEGIN PRIVATE KEY-----\n"
       "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7sentinelPEMline1\n"
       "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789sentinelPEMline2xyzXYZ\n"
       "-----END PRIVATE KEY-----")
SPACED = "sentinel correct horse battery staple"
QUOTED = 'sentinel-q"uo\\te/9d2c'


def learned(**values):
    r = Redactor(PATTERN)
    r.add_env(values)
    return r


def test_pem_key_printed_line_by_line_is_redacted_line_by_line():
    r = learned(TLS_PRIVATE_KEY=PEM)
    for line in PEM.splitlines()[1:3]:
        assert r(f"log: {line}") == f"log: {REDACTED}"
    assert "sentinelPEM" not in r(PEM.replace("\n", "\r\n"))


def test_json_escaped_form_of_a_secret_is_redacted():
    r = learned(API_TOKEN=QUOTED, TLS_PRIVATE_KEY=PEM)
    for value in (QUOTED, PEM):
        for text in (json.dumps({"out": f"x {value} y"}), json.dumps(json.dumps({"out": value})),
                     json.dumps({"out": value}, ensure_ascii=False), repr(value)):
            out = r(text)
            assert "sentinel" not in out, out
    assert json.loads(r(json.dumps({"out": QUOTED}))) == {"out": REDACTED}     # still valid JSON


def test_base64_of_user_colon_secret_in_basic_auth_is_redacted_whatever_the_user():
    r = learned(SMTP_PASSWORD=SPACED, API_TOKEN=QUOTED)
    for user in ("", "a", "ab", "admin", "deploy-bot"):        # every byte alignment of the secret
        for secret in (SPACED, QUOTED):
            encoded = base64.b64encode(f"{user}:{secret}".encode()).decode()
            # An unlabelled dump (no "Basic" in front): only the value-based rule can catch it.
            out = r(f"dump {encoded} end")
            assert REDACTED in out, (user, secret)
            kept_head = out.partition(REDACTED)[0].removeprefix("dump ")
            kept_tail = out.partition(REDACTED)[2].removesuffix(" end").rstrip("=")
            assert encoded.startswith(kept_head)
            # Characters kept on either side may not fully encode a single byte of the secret.
            assert (6 * len(kept_head)) // 8 <= len(user) + 1, (user, kept_head)
            assert len(kept_tail) <= 1, (user, kept_tail)


def test_basic_and_authorization_headers_are_redacted_by_shape_even_for_unknown_passwords():
    r = Redactor(PATTERN)
    token = base64.b64encode(b"someone:never-seen-pw").decode()
    assert r(f"> Authorization: Basic {token}\r\n") == f"> Authorization: {REDACTED}\r\n"
    assert r('headers={"Authorization": "Bearer abcdefghijklmnopqrstuvwx"}') == 'headers={"Authorization": "[REDACTED]"}'
    assert r(f"curl said Basic {token} was refused") == f"curl said Basic {REDACTED} was refused"
    assert r("Basic information about Bearer tokens") == "Basic information about Bearer tokens"


def test_url_encoded_secret_is_redacted():
    r = learned(SMTP_PASSWORD=SPACED, API_TOKEN=QUOTED)
    for secret in (SPACED, QUOTED):
        for encoded in (quote(secret, safe=""), quote_plus(secret), quote(secret)):
            assert "sentinel" not in r(f"GET /login?x={encoded}&y=1"), encoded


def test_secret_query_values_and_secret_assignments_are_redacted_by_shape():
    r = Redactor(PATTERN)
    assert r("GET /hook?token=abc123xyz&page=2 500") == f"GET /hook?token={REDACTED}&page=2 500"
    assert r("PGPASSWORD=hunter2 pg_isready") == f"PGPASSWORD={REDACTED} pg_isready"
    assert r("mysql --password=hunter2 -h db") == f"mysql --password={REDACTED} -h db"
    assert r('{"db_password": "hunter2", "user": "bob"}') == '{"db_password": "[REDACTED]", "user": "bob"}'
    assert r("CONTEXT_SIZE=2048 LOG_LEVEL=info") == "CONTEXT_SIZE=2048 LOG_LEVEL=info"


def test_short_secret_is_masked_where_its_key_names_it_and_reported():
    r = learned(PIN_PASSWORD="x7q")
    assert r.too_short == {"PIN_PASSWORD"}
    assert r("env: PIN_PASSWORD=x7q") == f"env: PIN_PASSWORD={REDACTED}"
    assert r('["PIN_PASSWORD=x7q", "LOG_LEVEL=info"]') == f'["PIN_PASSWORD={REDACTED}", "LOG_LEVEL=info"]'
    assert r('{"PIN_PASSWORD": "x7q"}') == f'{{"PIN_PASSWORD": "{REDACTED}"}}'


def test_redact_then_cut_never_shows_the_start_of_a_secret():
    r = learned(SECRET_KEY="sentinel-abcdefghijkl")
    line = "x" * 190 + " sentinel-abcdefghijkl trailing"
    naive = line[:200]                                  # the old order: cut, then redact
    assert "sentinel-" in r(naive)
    out = r.excerpt(line, 200)
    assert "sentinel" not in out and len(out) <= 200 and out.startswith("x" * 190)


def test_secret_with_a_control_character_inside_is_redacted_in_its_displayed_form():
    r = learned(SECRET_KEY="sentinel-\x1b[0mhidden")
    assert r("x sentinel-hidden y") == f"x {REDACTED} y"


def test_command_secrets_finds_passwords_in_db_commands():
    found = set(v for _, v in command_secrets(
        "PGPASSWORD='pg pw 1' psql -U app --password=pw2 -h db && mysql -u root -ppw3 "
        "&& curl -u admin:pw4 http://h/ && tool --token pw5 postgresql://u:pw6@db/x"))
    assert sorted(found) == ["pg pw 1", "pw2", "pw3", "pw4", "pw5", "pw6"]
    assert command_secrets("pg_isready -h 127.0.0.1 -p 5433 -U postgres") == []
