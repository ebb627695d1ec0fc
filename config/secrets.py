"""Secrets held in the stage config itself, found by their shape before any validation (a
configuration error echoes raw values): the whole webhook URL, the password and secret-looking
query values of any URL, the passwords in a shell command (``PGPASSWORD=...``, ``--password ...``).

The shapes are shared with the redactor (``commands/secrets.py``), which masks the same shapes in
everything the tool prints; they live here because ``config/`` is the bottom layer.
"""
from __future__ import annotations

import re
import shlex
from typing import Mapping
from urllib.parse import unquote

# Used until the stage config (and its SECRET_KEY_PATTERN) is loaded, e.g. for a configuration error.
FALLBACK_KEY_PATTERN = r"(?i)(PASS|SECRET|TOKEN|KEY|CREDENTIAL|PRIVATE|AUTH|DSN|DATABASE_URL|_URI$|WEBHOOK)"
# The scheme starts where no scheme character precedes it, and is short (RFC 3986 names are): else
# every position of a long run of letters would start a new attempt, and one 100 kB line took 35 s.
URL_PASSWORD = re.compile(r"(?<![a-zA-Z0-9+.-])(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]{0,31}://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")
# NAME=value (env lines, shell assignments, --name=value, ?name=value&...), NAME secret-looking.
# Also inside JSON text, where a quoted value reads NAME=\"value\": the value is masked whole, and a
# bare value never takes the backslash of an escaped quote (that would leave the JSON invalid).
ASSIGNMENT = re.compile(r"(?<![\w])(?P<key>[A-Za-z_][A-Za-z0-9_]*)(?P<sep>[ \t]*=[ \t]*)"
                        r"(?P<val>\\\"(?:[^\"\\\n]|\\[^\"\n])*\\\"|\"[^\"\n]*\"|'[^'\n]*'"
                        r"|(?:[^\s\"',;&\\]|\\\\|\\(?![\"\\]))+)")
PLACEHOLDER = re.compile(r"^[\"']?<[^<>]*>[\"']?$")     # `<token>` in fab plan is not a secret
_MYSQL = re.compile(r"^(mysql|mariadb|mysqladmin|mysqldump)$")
_SECRET_OPTION = re.compile(r"^--?(password|passwd|pass|pwd|token|secret|api-?key|auth-?token)$", re.I)


def is_secret_name(pattern: re.Pattern, name: str) -> bool:
    return bool(pattern.search(name) or pattern.search(name.upper()))


def url_secrets(text: str, key_pattern: str | None = None) -> list[str]:
    """Passwords of URLs in ``text`` and values of its secret-looking query parameters."""
    pattern = re.compile(key_pattern or FALLBACK_KEY_PATTERN)
    found = [m.group("pw") for m in URL_PASSWORD.finditer(text or "")]
    for m in ASSIGNMENT.finditer(text or ""):
        if is_secret_name(pattern, m.group("key")):
            val = m.group("val").strip("\"'")
            found += [val, unquote(val)]
    return list(dict.fromkeys(v for v in found if v and not PLACEHOLDER.match(v)))


def command_secrets(command: str, key_pattern: str | None = None) -> list[tuple[str, str]]:
    """(name, value) of the secrets in a shell command: ``PGPASSWORD=...`` and other secret-looking
    assignments, ``--password[=]...`` options, ``-u/--user user:password``, MySQL's ``-pPASSWORD``,
    and URL passwords."""
    pattern = re.compile(key_pattern or FALLBACK_KEY_PATTERN)
    try:
        words = shlex.split(command or "")
    except ValueError:
        words = (command or "").split()
    found: list[tuple[str, str]] = []
    program = ""
    for i, word in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else ""
        name, eq, value = word.partition("=")
        if eq and is_secret_name(pattern, name.lstrip("-")):
            found.append((name.lstrip("-"), value))
        elif _SECRET_OPTION.match(word) and nxt:
            found.append((word.lstrip("-"), nxt))
        elif word in ("-u", "--user") and ":" in nxt:
            found.append(("user password", nxt.split(":", 1)[1]))
        elif word.startswith("--user=") and ":" in word:
            found.append(("user password", word.split(":", 1)[1]))
        elif _MYSQL.match(program) and word.startswith("-p") and len(word) > 2:
            found.append(("-p", word[2:]))
        if word in ("&&", "||", ";", "|"):
            program = ""
        elif not eq and not program and not word.startswith("-"):
            program = word.rsplit("/", 1)[-1]
    known = {v for _, v in found}
    found += [("URL", v) for v in dict.fromkeys(url_secrets(command, key_pattern)) if v not in known]
    return found


# A chat webhook (Slack, Teams, ...) carries its token in the path: the whole URL is a secret.
WHOLE_SECRET_KEYS = ("WEBHOOK_URL",)


def config_secrets(values: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """(name, value) of the secrets held in the config itself, from the raw values (before any
    validation, because a configuration error echoes raw values): the whole WEBHOOK_URL, the
    password and secret-looking query values of any URL, and the passwords in *_COMMAND keys
    (``PGPASSWORD=...``, ``--password ...``)."""
    pattern = values.get("SECRET_KEY_PATTERN") or None
    try:
        re.compile(pattern or "")
    except re.error:
        pattern = None
    found: list[tuple[str, str]] = []
    for key, value in values.items():
        if not value:
            continue
        if key in WHOLE_SECRET_KEYS:
            found.append((key, value.strip()))
        if key.endswith("_COMMAND"):
            found += [(f"{key} ({name})", v) for name, v in command_secrets(value, pattern)]
        else:
            found += [(key, v) for v in url_secrets(value, pattern)]
    return tuple(found)
