"""Versions (``fab deploy --version TAG``): the tag's shape, and the .env edit that hands it to Compose.

The tag reaches Compose through one variable (``IMAGE_TAG_VARIABLE``) in the app dir's ``.env``, the
file an operator's own ``docker compose`` reads too, so the tool and the operator see one version.
"""
from __future__ import annotations

import re

from commands.shell import UnsafeValue, q

# Docker's own tag grammar: a tag that docker refuses is refused here, before any connection.
TAG_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
VARIABLE_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_tag(tag: str) -> str:
    if not TAG_PATTERN.fullmatch(tag or ""):
        raise UnsafeValue(f"not a docker tag: {tag!r} (letters, digits, '_', '.', '-'; at most 128; "
                          "not starting with '.' or '-')")
    return tag


def check_variable(name: str) -> str:
    if not VARIABLE_PATTERN.fullmatch(name or ""):
        raise UnsafeValue(f"not a Compose variable name: {name!r}")
    return name


def read_variable_command(app_dir: str, variable: str) -> str:
    """Print the variable's value in the .env (empty if absent); only that line is read, never the file."""
    check_variable(variable)
    return f"sed -n {q('s/^' + variable + '=//p')} {q(app_dir + '/.env')} 2>/dev/null | tail -n 1"


def set_variable_command(app_dir: str, variable: str, tag: str) -> str:
    """Set ``variable=tag`` in the app dir's .env atomically: a temp file in the same dir (a copy, so
    it keeps the mode), every other line as it was, the one line replaced or appended, then ``mv``.
    A failed step removes the temp file and leaves .env untouched; the file is never printed."""
    check_variable(variable)
    check_tag(tag)
    awk = ('index($0, v "=") == 1 { if (!done) print v "=" t; done = 1; next } { print } '
           'END { if (!done) print v "=" t }')
    return (f"cd {q(app_dir)} && touch .env && tmp=$(mktemp .env.XXXXXX) && "
            f"{{ cp -p .env \"$tmp\" && awk -v v={q(variable)} -v t={q(tag)} {q(awk)} .env > \"$tmp\" "
            f"&& mv \"$tmp\" .env || {{ rm -f \"$tmp\"; exit 1; }}; }}")
