"""Compare env files by key, never by value (runbook note 1: ``diff .env.production .env.staging``
prints every secret to the terminal and any CI log)."""
from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass

from dotenv.parser import parse_stream


def parse_env(text: str) -> dict[str, str]:
    """python-dotenv parsing of a file's text (quotes, ``export``, comments, multi-line values).
    A line it cannot parse is left out (see :func:`unparsed`), without dotenv's own warning on the
    terminal."""
    return {b.key: ("" if b.value is None else b.value)
            for b in parse_stream(io.StringIO(text or "")) if b.key is not None and not b.error}


_LENIENT = re.compile(r"^\s*(?:export\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_.-]*)\s*[:=]\s*(?P<val>.*?)\s*$")


def unparsed(text: str) -> dict[str, str]:
    """KEY -> value of the lines python-dotenv cannot parse, read leniently, for the redactor only.
    Compose v2 reads ``KEY: value`` (YAML style) from an env_file and hands it to the container;
    python-dotenv skips that line, so its secret would be unknown and could be printed."""
    out = {}
    for b in parse_stream(io.StringIO(text or "")):
        if b.error:
            m = _LENIENT.match(b.original.string.splitlines()[0] if b.original.string else "")
            if m:
                val = m.group("val")
                out[m.group("key")] = val[1:-1] if len(val) > 1 and val[0] == val[-1] and val[0] in "\"'" else val.lstrip("\"'")
    return out


@dataclass(frozen=True)
class EnvDiff:
    left_name: str
    right_name: str
    only_left: tuple[str, ...]      # keys in left (e.g. .env.production) missing from right
    only_right: tuple[str, ...]     # keys in right missing from left
    changed: tuple[str, ...]        # keys in both with different values
    same: tuple[str, ...]

    @property
    def differs(self) -> bool:
        return bool(self.only_left or self.only_right or self.changed)


def diff(left: dict[str, str], right: dict[str, str], left_name: str, right_name: str) -> EnvDiff:
    lk, rk = set(left), set(right)
    both = lk & rk
    return EnvDiff(
        left_name, right_name,
        tuple(sorted(lk - rk)), tuple(sorted(rk - lk)),
        tuple(sorted(k for k in both if left[k] != right[k])),
        tuple(sorted(k for k in both if left[k] == right[k])),
    )


def fingerprint(value: str) -> str:
    """A short tag so an operator can tell two masked non-secret values apart (or equal). Never
    used for secret-looking keys: a hash of a short secret can be brute-forced."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:8]


def mask(value: str, secret: bool = True) -> str:
    if value == "":
        return "(empty)"
    if secret:
        return "****** (secret)"
    return f"****** ({len(value)} chars, {fingerprint(value)})"


def render_rows(d: EnvDiff, left: dict[str, str], right: dict[str, str],
                show: frozenset[str] = frozenset(), secret_key: re.Pattern | None = None) -> list[list[str]]:
    """Rows (change, key, left value, right value) with every value masked.

    A key named in ``show`` is printed in clear only if it is not secret-looking, so asking to
    see ``LOG_LEVEL`` works and asking to see ``SECRET_KEY`` still prints a mask.
    """
    def val(k: str, src: dict[str, str]) -> str:
        if k not in src:
            return "-"
        secret = bool(secret_key is None or secret_key.search(k))
        if k in show and not secret:
            return src[k]
        return mask(src[k], secret)

    rows = []
    for k in d.only_left:
        rows.append([f"only in {d.left_name}", k, val(k, left), "-"])
    for k in d.only_right:
        rows.append([f"only in {d.right_name}", k, "-", val(k, right)])
    for k in d.changed:
        rows.append(["changed", k, val(k, left), val(k, right)])
    return rows
