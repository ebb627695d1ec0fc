"""Redaction: every secret the tool knows of is replaced in everything it prints or writes
(command echoes, captured output, error blocks, log tails, records, webhook bodies, tracebacks).

Two kinds of rule:
- **By value.** Values of secret-looking keys in the env files on the host, and secrets held in
  the stage config itself (a token in a URL, a password in a DB command), in every form they take
  in text: as is, JSON-escaped, as a Python repr, inside a single-quoted shell string,
  URL-encoded, base64 (at the three byte alignments, so also inside ``user:secret`` of HTTP
  Basic auth), and each line of a multi-line value (PEM keys) on its own.
- **By shape**, for values never seen: the password of a URL (``scheme://user:PASSWORD@``),
  ``NAME=value`` and ``"NAME": "value"`` where NAME looks secret (``PGPASSWORD=``, ``?token=``,
  ``--password=``), ``Authorization:`` header values, ``Basic <base64 of user:password>`` and
  long ``Bearer`` tokens.

Limits: a value shorter than MIN_LENGTH is not redacted by value (it would mangle ordinary
output); it is still masked where its key names it (``KEY=abc``), and the tool warns about it.
Base64 fragments shorter than ENCODED_MIN_LENGTH and lines of a multi-line secret shorter than
LINE_MIN_LENGTH are not registered.

Redact first, then cut (:func:`excerpt`): a secret cut in half is no longer matched by its value.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Callable, Iterable, Mapping
from urllib.parse import quote, quote_plus

from commands.terminal import strip_controls
from config.secrets import ASSIGNMENT as _ASSIGNMENT
from config.secrets import FALLBACK_KEY_PATTERN, url_secrets
from config.secrets import PLACEHOLDER as _PLACEHOLDER
from config.secrets import URL_PASSWORD as _URL_PASSWORD
from config.secrets import is_secret_name as _is_secret_name

REDACTED = "[REDACTED]"
MIN_LENGTH = 4            # shorter values would mangle ordinary output; the tool warns about them instead
LINE_MIN_LENGTH = 8       # a line of a multi-line secret registered on its own (shorter: "}" or "-----")
ENCODED_MIN_LENGTH = 6    # a shorter base64 fragment would match ordinary words
# "name": "value" (JSON, Python dict reprs), name secret-looking.
_JSON_PAIR = re.compile(r"(?P<key>[\"'][A-Za-z0-9_.-]{1,64}[\"'])(?P<sep>[ \t]*:[ \t]*)"
                        r"(?P<val>\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*')")
_AUTH_HEADER = re.compile(r"(?i)(?P<pre>\b(?:proxy-)?authorization[\"']?[ \t]*[:=][ \t]*[\"']?)(?P<val>[^\r\n\"']+)")
_BASIC = re.compile(r"\bBasic[ \t]+(?P<val>[A-Za-z0-9+/]{4,}={0,2})(?![A-Za-z0-9+/=])")
_BEARER = re.compile(r"\bBearer[ \t]+(?P<val>[A-Za-z0-9._~+/=-]{16,})")
# A yes/no value under a secret-looking key (AUTH_ENABLED=true) holds no secret; redacted by value
# it hid every `|| true` in the commands shown. Masked still where its name comes with it.
_NO_SECRET = re.compile(r"(?i)^(true|false|yes|no|on|off|none|null|enabled|disabled)$")
# A plain word or number: it also occurs in ordinary output, where every occurrence is hidden.
_ORDINARY = re.compile(r"^(?:[A-Za-z]{4,12}|[0-9]{4,12})$")
_LOWER_HEX = re.compile(r"%[0-9A-F]{2}")


# ---- the forms a value takes in text ---------------------------------------------------------------

def _base64_fragments(raw: bytes) -> set[str]:
    """The base64 characters that depend only on ``raw``, wherever it sits in an encoded stream.

    Base64 encodes 3 bytes as 4 characters, so the same bytes encode differently at each of the
    three offsets; at each offset the characters fully determined by ``raw`` are the same in any
    stream (``user:secret`` of HTTP Basic auth included, whatever the user)."""
    out = set()
    for pad in range(3):
        enc = base64.b64encode(b"\0" * pad + raw).decode().rstrip("=")
        start, end = -(-8 * pad // 6), (8 * (pad + len(raw))) // 6
        fragment = enc[start:end]
        if len(fragment) >= ENCODED_MIN_LENGTH:
            out.add(fragment)
            out.add(fragment.translate(str.maketrans("+/", "-_")))    # base64url
    return out


def forms(value: str) -> set[str]:
    """Every form of ``value`` the redactor looks for (see the module docstring)."""
    out = {value}
    escaped = value
    for _ in range(2):                  # JSON inside JSON (a record line quoted in a webhook body)
        escaped = json.dumps(escaped)[1:-1]
        out.add(escaped)
    out.add(json.dumps(value, ensure_ascii=False)[1:-1])
    out |= {f.replace("/", "\\/") for f in list(out) if "/" in f}      # encoders that escape '/'
    out.add(repr(value)[1:-1])
    out.add(value.replace("'", "'\"'\"'"))                              # inside '...' of a shell command
    encoded = {quote(value, safe=""), quote(value), quote_plus(value)}
    # %2F and %2f are the same escape (RFC 3986 2.1); some encoders write lower case.
    out |= encoded | {_LOWER_HEX.sub(lambda m: m.group(0).lower(), e) for e in encoded}
    out.add(strip_controls(value))                                      # what the terminal filter leaves
    out |= _base64_fragments(value.encode("utf-8"))
    return {f for f in out if len(f) >= MIN_LENGTH}


# ---- cutting ---------------------------------------------------------------------------------------

def excerpt(text: str, limit: int, redact: Callable[[str], str] | None = None) -> str:
    """At most ``limit`` characters of ``text``, redacted BEFORE it is cut: a secret cut in half
    would no longer be matched by its value, and its first part would be printed."""
    text = redact(text) if redact else (text or "")
    return text if len(text) <= limit else text[:max(0, limit - 1)] + "…"


# ---- the redactor ------------------------------------------------------------------------------------

class Redactor:
    def __init__(self, secret_key_pattern: str | None = None, secrets: Iterable = ()):
        """``secrets``: values, or (name, value) pairs (the name is only used to report a value
        too short to redact)."""
        self._pattern = re.compile(secret_key_pattern) if secret_key_pattern else None
        self._shape_pattern = self._pattern or re.compile(FALLBACK_KEY_PATTERN)
        self._values: set[str] = set()
        self.too_short: set[str] = set()   # names of secrets whose values are too short to redact by value
        self.too_short_reported: set[str] = set()
        self.no_secret: set[str] = set()   # names whose value is a yes/no word: not redacted by value
        self.ordinary: set[str] = set()    # names whose value is a plain word or number: redacted everywhere
        self.reported: set[str] = set()    # names of no_secret and ordinary already reported
        self._regex: tuple[set[str], re.Pattern] | None = None   # (the values it was built from, the regex)
        self.add_many(secrets)

    def is_secret_key(self, key: str) -> bool:
        return bool(self._pattern and self._pattern.search(key))

    def add(self, value: str | None, name: str = "") -> None:
        if not value:
            return
        value = value.strip()
        if len(value) < MIN_LENGTH:
            if value and name:
                self.too_short.add(name)
            return
        if _NO_SECRET.match(value):
            if name:
                self.no_secret.add(name)
            return
        if name and _ORDINARY.match(value):
            self.ordinary.add(name)
        new = forms(value) - self._values
        if new:
            # A new set, not an update in place: a redaction running in another thread (concurrent
            # reads, tasks/session.py) keeps iterating the set it took.
            self._values = self._values | new
        # Each line of a multi-line value (a PEM key) may be printed on its own.
        if "\n" in value or "\r" in value:
            for line in value.splitlines():
                if len(line.strip()) >= LINE_MIN_LENGTH:
                    self.add(line, name)
        # The password inside a URL may also appear on its own (e.g. a DSN and its parts).
        for secret in url_secrets(value, self._shape_pattern.pattern):
            if secret != value:
                self.add(secret, name)

    def add_env(self, values: Mapping[str, str]) -> None:
        """Collect the values of secret-looking keys of one env file, and URL secrets of any key."""
        for key, value in values.items():
            if self.is_secret_key(key):
                self.add(value, key)
            else:
                for secret in url_secrets(value or "", self._shape_pattern.pattern):
                    self.add(secret, key)

    def add_many(self, values: Iterable) -> None:
        for v in values:
            if isinstance(v, tuple):
                self.add(v[1], v[0])
            else:
                self.add(v)

    # -- redacting -------------------------------------------------------------------------------
    def _mask_named(self, m: re.Match) -> str:
        val = m.group("val")
        bare = val.strip("\"'")
        # Already redacted, a `<placeholder>`, or only the quotes of a quoted shell string ('"'"').
        if not bare or REDACTED in bare or _PLACEHOLDER.match(val) \
                or not _is_secret_name(self._shape_pattern, m.group("key").strip("\"'")):
            return m.group(0)
        if len(val) > 3 and val.startswith('\\"') and val.endswith('\\"'):
            quote_char = '\\"'                     # NAME=\"value\" inside JSON text
        else:
            quote_char = val[0] if val[0] in "\"'" and len(val) > 1 and val[-1] == val[0] else ""
        return f"{m.group('key')}{m.group('sep')}{quote_char}{REDACTED}{quote_char}"

    @staticmethod
    def _mask_basic(m: re.Match) -> str:
        token = m.group("val")
        try:
            decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
        except (binascii.Error, ValueError):
            return m.group(0)
        return f"Basic {REDACTED}" if b":" in decoded else m.group(0)

    def _by_shape(self, text: str) -> str:
        text = _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{REDACTED}@", text)
        text = _AUTH_HEADER.sub(lambda m: f"{m.group('pre')}{REDACTED}", text)
        text = _BASIC.sub(self._mask_basic, text)
        text = _BEARER.sub(f"Bearer {REDACTED}", text)
        text = _JSON_PAIR.sub(self._mask_named, text)
        return _ASSIGNMENT.sub(self._mask_named, text)

    def __call__(self, text):
        if text is None:
            return text
        if not isinstance(text, str):
            text = str(text)
        values, cached = self._values, self._regex
        if values:
            if cached is None or cached[0] is not values:
                # Longest first, so a secret that contains another is replaced whole. Built from
                # the set taken above: a value added meanwhile makes the next call build again.
                alts = sorted(values, key=len, reverse=True)
                cached = self._regex = (values, re.compile("|".join(re.escape(v) for v in alts)))
            text = cached[1].sub(REDACTED, text)
        # Values never seen: by their shape.
        return self._by_shape(text)

    def excerpt(self, text: str, limit: int) -> str:
        return excerpt(text, limit, self)

    def obj(self, data):
        """Redact every string inside a JSON-able structure (records, webhook payloads, --json),
        without its escape sequences and invisible characters, which could split a secret from
        the redactor here and reach a terminal when the record is read."""
        if isinstance(data, str):
            return self(strip_controls(data))
        if isinstance(data, dict):
            return {self(k) if isinstance(k, str) else k: self.obj(v) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return [self.obj(v) for v in data]
        return data
