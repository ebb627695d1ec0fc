"""Redaction by value: every secret value the tool has seen is replaced in everything it prints
or writes (command echoes, captured output, error blocks, log tails, records, webhook bodies)."""
from __future__ import annotations

import re
from typing import Iterable, Mapping

REDACTED = "[REDACTED]"
MIN_LENGTH = 4   # shorter values would mangle ordinary output; the tool warns about them instead
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")


class Redactor:
    def __init__(self, secret_key_pattern: str | None = None):
        self._pattern = re.compile(secret_key_pattern) if secret_key_pattern else None
        self._values: set[str] = set()
        self.too_short: set[str] = set()   # names of secret keys whose values are too short to redact
        self._regex: re.Pattern | None = None

    def is_secret_key(self, key: str) -> bool:
        return bool(self._pattern and self._pattern.search(key))

    def add(self, value: str | None, name: str = "") -> None:
        if not value:
            return
        value = value.strip()
        if len(value) < MIN_LENGTH:
            if name:
                self.too_short.add(name)
            return
        if value not in self._values:
            self._values.add(value)
            self._regex = None
        # The password inside a URL may also appear on its own (e.g. a DSN and its parts).
        for m in _URL_PASSWORD.finditer(value):
            self.add(m.group("pw"), name)

    def add_env(self, values: Mapping[str, str]) -> None:
        """Collect the values of secret-looking keys of one env file, and URL passwords of any key."""
        for key, value in values.items():
            if self.is_secret_key(key):
                self.add(value, key)
            else:
                for m in _URL_PASSWORD.finditer(value or ""):
                    self.add(m.group("pw"), key)

    def add_many(self, values: Iterable[str]) -> None:
        for v in values:
            self.add(v)

    @property
    def count(self) -> int:
        return len(self._values)

    def __call__(self, text):
        if text is None:
            return text
        if not isinstance(text, str):
            text = str(text)
        # Passwords inside URLs are removed even when the value was never seen before.
        text = _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{REDACTED}@", text)
        if not self._values:
            return text
        if self._regex is None:
            # Longest first, so a secret that contains another is replaced whole.
            alts = sorted(self._values, key=len, reverse=True)
            self._regex = re.compile("|".join(re.escape(v) for v in alts))
        return self._regex.sub(REDACTED, text)

    def obj(self, data):
        """Redact every string inside a JSON-able structure (records, webhook payloads)."""
        if isinstance(data, str):
            return self(data)
        if isinstance(data, dict):
            return {self(k) if isinstance(k, str) else k: self.obj(v) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return [self.obj(v) for v in data]
        return data
