"""The value types of the settings: each parser takes the raw string of one key and returns the
typed value, or raises ValueError(reason); the loader puts the key and its source in front.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Callable

from config.validators import UnsafeValue, check_path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def text(v: str) -> str:
    if v == "":
        raise ValueError("must not be empty")
    return v


def optional(parse: Callable[[str], object]) -> Callable[[str], object]:
    def inner(v: str):
        return None if v == "" else parse(v)
    return inner


def listing(parse: Callable[[str], object], allow_empty: bool = True) -> Callable[[str], tuple]:
    def inner(v: str):
        items = tuple(parse(x.strip()) for x in v.split(",") if x.strip())
        if not items and not allow_empty:
            raise ValueError("must list at least one value (comma-separated)")
        return items
    return inner


# Upper bounds: a value no operator means (a timeout of 10^30 s) would overflow the clocks and
# timers it reaches (threading's wait, time_t) and end in a traceback instead of a config error.
MAX_SECONDS = 7 * 86400
MAX_COUNT = 1_000_000


def _number(cast: Callable[[str], float], what: str, allow_zero: bool = False,
            maximum: float = MAX_SECONDS) -> Callable[[str], float]:
    def inner(v: str):
        try:
            n = cast(v)
        except ValueError:
            raise ValueError(f"must be a {what}, got {v!r}") from None
        # An int is compared, never converted: math.isfinite(10**400) raises OverflowError.
        if (not isinstance(n, int) and not math.isfinite(n)) or n < 0 or (n == 0 and not allow_zero):
            raise ValueError(f"must be {'zero or a positive' if allow_zero else 'a positive'} {what}, got {v!r}")
        if n > maximum:
            raise ValueError(f"must be at most {maximum:g}, got {v!r}")
        return n
    return inner


seconds = _number(float, "number of seconds")
seconds_or_zero = _number(float, "number of seconds", allow_zero=True)
count = _number(int, "whole number", maximum=MAX_COUNT)


def boolean(v: str) -> bool:
    low = v.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be true or false, got {v!r}")


def choice(*options: str) -> Callable[[str], str]:
    def inner(v: str) -> str:
        if v not in options:
            raise ValueError(f"must be one of {', '.join(options)}; got {v!r}")
        return v
    return inner


_HOST = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9_.-]*@)?[A-Za-z0-9_][A-Za-z0-9_.-]*(?::[0-9]{1,5})?$")


def host(v: str) -> str:
    if not _HOST.match(v):
        raise ValueError(f"host {v!r} must look like [user@]host[:port]")
    name = v.split("@", 1)[-1].split(":", 1)[0]
    if len(name) > 253 or any(len(label) > 63 for label in name.split(".")):
        raise ValueError(f"host name {name[:40]!r}... is too long for DNS (labels of at most 63 characters, 253 in all)")
    return v


def _machine(v: str) -> tuple[str, str | None]:
    """One machine's sshd, however the entry is spelled: user, case and a final dot do not count."""
    name, _, port = v.split("@", 1)[-1].partition(":")
    return name.lower().rstrip("."), port or None


def hosts(v: str) -> tuple[str, ...]:
    listed = listing(host, allow_empty=False)(v)
    seen: dict[tuple, str] = {}
    for h in listed:
        first = seen.setdefault(_machine(h), h)
        if first is not h:
            raise ValueError(f"lists {_machine(h)[0]} twice ({first}, {h}): every task would run twice on it, "
                             f"and a second bare rollback goes one release further back")
    return listed


def checked(check: Callable[[str], str]) -> Callable[[str], str]:
    """A shell-value check of config/validators.py as a parser: its UnsafeValue becomes the reason."""
    def inner(v: str):
        try:
            return check(v)
        except UnsafeValue as exc:
            raise ValueError(str(exc)) from None
    return inner


abs_path = checked(check_path)
rel_path = checked(lambda x: check_path(x, absolute=False))


def local_path(v: str) -> str:
    """A file on the operator's machine; relative paths are relative to the project root."""
    v = os.path.expanduser(v)
    if not os.path.isabs(v):
        v = str(PROJECT_ROOT / v)
    return v


def secret_pattern(v: str) -> str:
    """SECRET_KEY_PATTERN: empty would make no env value a secret, and every one printable."""
    if not v:
        raise ValueError("must not be empty: it decides which env values are secrets and never printed "
                         "(to treat no key as secret, say so with a pattern that matches nothing: (?!))")
    return regex(v)


def regex(v: str) -> str:
    try:
        re.compile(v)
    except re.error as exc:
        raise ValueError(f"is not a valid regular expression: {exc}") from None
    return v


def compose_command(v: str) -> str:
    if v not in ("auto", "docker compose", "docker-compose"):
        raise ValueError(f"must be auto, 'docker compose' or docker-compose; got {v!r}")
    return v


def shell_command(v: str) -> str:
    if not v.strip() or re.search(r"[\x00\n\r]", v):
        raise ValueError("must be a one-line command")
    return v


def contact(v: str) -> tuple[str, str, str]:
    parts = [p.strip() for p in v.split("|")]
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError(f"must be 'Team|Response time[|how to reach]', got {v!r}")
    return (parts[0], parts[1], parts[2] if len(parts) > 2 else "")


CHECKLIST_ITEMS = (
    "migrations_pending", "migrations_untested", "env_keys_differ", "env_undocumented",
    "env_missing_for_release", "rollback_target", "monitoring", "oncall_notified", "migrations_breaking",
)


def checklist_items(v: str) -> tuple[str, ...]:
    items = listing(text)(v)
    bad = [i for i in items if i not in CHECKLIST_ITEMS]
    if bad:
        raise ValueError(f"unknown checklist item(s) {', '.join(bad)}; known: {', '.join(CHECKLIST_ITEMS)}")
    return items


def revision_id(v: str) -> str:
    """An alembic revision id as ``alembic current`` prints it (letters, digits, ``_``)."""
    if not re.fullmatch(r"[0-9A-Za-z_]{1,64}", v):
        raise ValueError(f"not an alembic revision id: {v!r} (letters, digits and _ only)")
    return v


def batch_size(v: str) -> str:
    """A fleet's batch: a number of hosts (1 or more) or a percentage of them (1% to 100%)."""
    if not re.fullmatch(r"[1-9][0-9]{0,5}|(100|[1-9][0-9]?)%", v.strip()):
        raise ValueError(f"must be a number of hosts (1 or more) or a percentage (1% to 100%), got {v!r}")
    return v.strip()
