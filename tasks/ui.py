"""Everything the tool prints goes through here, and through the redactor on its way out.

Progress and tables go to stdout; with ``--json`` they go to stderr so stdout carries only the
JSON record for CI. Error blocks always go to stderr.
"""
from __future__ import annotations

import re
import sys
import textwrap
from typing import Sequence

from tabulate import tabulate

from commands.secrets import Redactor


class _Out:
    def __init__(self):
        self.redact = Redactor()
        self.json_mode = False

    @property
    def stream(self):
        return sys.stderr if self.json_mode else sys.stdout


OUT = _Out()


def set_redactor(redactor: Redactor) -> None:
    OUT.redact = redactor


def set_json_mode(on: bool) -> None:
    OUT.json_mode = on


def say(text: str = "") -> None:
    print(OUT.redact(text), file=OUT.stream, flush=True)


def warn(text: str) -> None:
    print(OUT.redact(f"! {text}"), file=OUT.stream, flush=True)


def table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> None:
    say(tabulate([[("" if c is None else c) for c in r] for r in rows], headers=list(headers)))


def emit_json(text: str) -> None:
    """The only thing written to stdout in --json mode."""
    print(OUT.redact(text), file=sys.stdout, flush=True)


# Compose v2 prints this on every command for a file that keeps `version:` for Compose v1's sake.
NOISE = re.compile(r"level=warning msg=.*the attribute `version` is obsolete")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def clean(text: str) -> str:
    """Text without terminal escape codes."""
    return ANSI.sub("", text or "")


def tail(text: str, lines: int = 15) -> list[str]:
    """The last non-empty lines, without terminal escape codes (Compose v2 emits them even with
    --no-color)."""
    clean = ANSI.sub("", (text or "").replace("\r\n", "\n"))
    rows = [l.rstrip() for l in clean.splitlines() if l.strip() and not NOISE.search(l)]
    return rows[-lines:]


def block(title: str, fields: Sequence[tuple[str, object]], stream=None) -> None:
    """A labelled block: one label per line, continuation lines indented under the value."""
    out = [title]
    width = max((len(k) for k, _ in fields), default=0) + 2
    for key, value in fields:
        if value is None or value == "" or value == []:
            continue
        if isinstance(value, (list, tuple)):
            out.append(f"  {key + ':':<{width}}")
            out.extend(f"      | {v}" for v in value)
        else:
            wrapped = textwrap.wrap(str(value), width=110 - width, break_long_words=False,
                                    break_on_hyphens=False) or [""]
            out.append(f"  {key + ':':<{width}}{wrapped[0]}")
            out.extend(" " * (width + 2) + w for w in wrapped[1:])
    print(OUT.redact("\n".join(out)), file=stream or sys.stderr, flush=True)
