"""Everything the tool prints goes through here: control characters and escape sequences are
stripped from it (host text is data, not terminal commands), then it is redacted.

Progress and tables go to stdout; with ``--json`` they go to stderr so stdout carries only the
JSON record for CI. Error blocks always go to stderr.
"""
from __future__ import annotations

import json
import re
import sys
import textwrap
import threading
import time
import traceback
from typing import Sequence

from tabulate import tabulate

from commands.secrets import Redactor
from commands.secrets import excerpt as _excerpt
from commands.terminal import strip_controls


class _Out:
    def __init__(self):
        self.redact = Redactor()
        self.json_mode = False
        self.tee = None             # the run log's writer (tasks/runlog.py): everything printed, made safe
        self.level = 0              # -q: -1 (stdout: only the outcome line and --json), -v: 1 (every command echoed)

    def copy(self, text: str) -> None:
        if self.tee is not None:
            self.tee(text)

    @property
    def stream(self):
        return sys.stderr if self.json_mode else sys.stdout


OUT = _Out()
# Per-thread line prefix: a fleet deploy runs one thread per host and prefixes its lines with the host.
THREAD = threading.local()


def set_prefix(text: str) -> None:
    THREAD.prefix = text


def current_prefix() -> str:
    return getattr(THREAD, "prefix", "")


def thread_context() -> tuple:
    """What a helper thread of this one must share: the host prefix and the held lines (a fleet
    read's concurrent reads must be held with their host's lines, not printed among other hosts')."""
    return getattr(THREAD, "prefix", ""), getattr(THREAD, "held", None)


def adopt(context: tuple) -> None:
    THREAD.prefix, THREAD.held = context     # list.append is atomic: the threads may share one list


def set_redactor(redactor: Redactor) -> None:
    OUT.redact = redactor


def set_json_mode(on: bool) -> None:
    OUT.json_mode = on


def set_level(level: int) -> None:
    """fab -q (-1) or -v (1); the run log always gets everything."""
    OUT.level = level


def safe(text) -> str:
    """What may reach the terminal: control characters and escape sequences stripped first (so
    one hidden inside a secret cannot split it from the redactor), then redacted."""
    return OUT.redact(strip_controls("" if text is None else str(text)))


def say(text: str = "", keep: bool = False) -> None:
    """Progress and results on stdout; under -q only what is ``keep`` (a run's outcome line)."""
    prefix = getattr(THREAD, "prefix", "")
    if prefix:          # a fleet's host thread: every line (the timing table too), so the host stays readable
        text = "\n".join(prefix + line for line in str(text).split("\n"))
    _emit(safe(text), OUT.stream if OUT.level >= 0 or keep else None)


def warn(text: str) -> None:
    _emit(safe(getattr(THREAD, "prefix", "") + f"! {text}"), sys.stderr if OUT.level < 0 else OUT.stream)


def _emit(text: str, stream) -> None:
    """To the run log, and to ``stream`` (None: the log only); held instead while this thread holds."""
    held = getattr(THREAD, "held", None)
    if held is not None:
        held.append((text, stream))
        return
    OUT.copy(text)
    if stream is not None:
        print(text, file=stream, flush=True)


def hold() -> None:
    """This thread's lines are kept until :func:`release`: a fleet read prints each host's lines
    together (tasks/fleetread.py), not interleaved with the other hosts' lines."""
    THREAD.held = []


def release() -> list:
    held, THREAD.held = getattr(THREAD, "held", None) or [], None
    return held


def replay(held: list) -> None:
    """Held lines, redacted again: a secret learned on another host meanwhile is hidden too."""
    for text, stream in held:
        _emit(OUT.redact(text), stream)


def table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> None:
    # Each cell is made safe before tabulate measures it and splits multi-line cells into rows.
    cells = [[("" if c is None else c if isinstance(c, (int, float)) else safe(c)) for c in r] for r in rows]
    say(tabulate(cells, headers=list(headers)))


TICK_AFTER = 3.0        # seconds before a running command shows its elapsed time (no flicker for quick ones)


class Ticker:
    """``      … 42 s`` on the terminal's current line while a long command runs (pull, migrate):
    only when stdout is a terminal and not in --json mode; never in the run log."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.start = time.monotonic()
        self.shown = False
        self.on = not OUT.json_mode and OUT.level >= 0 and getattr(self.stream, "isatty", lambda: False)()

    def __call__(self, done: bool = False) -> None:
        if not self.on:
            return
        elapsed = time.monotonic() - self.start
        if done:
            if self.shown:
                self.stream.write("\r\033[K")          # clear the ticker's line
                self.stream.flush()
            return
        if elapsed >= TICK_AFTER:
            self.stream.write(f"\r      … {elapsed:.0f} s")
            self.stream.flush()
            self.shown = True


def emit_json(data) -> None:
    """The only thing written to stdout in --json mode: ``data`` redacted string by string, then
    serialized. Redacting the serialized text instead broke the JSON whenever a secret's value
    also occurs in the syntax: a secret "true" (AUTH_ENABLED=true) turned `"ok": true` into
    `"ok": [REDACTED]`. Serialized with ensure_ascii, so no control or invisible character reaches
    the terminal raw."""
    text = json.dumps(OUT.redact.obj(data), indent=2, sort_keys=True)
    OUT.copy(text)
    print(text, file=sys.stdout, flush=True)


def excerpt(text: str, limit: int, redact=None) -> str:
    """At most ``limit`` characters of host text: made safe first, then cut (a secret cut in half
    is no longer matched, so cutting first would print its first part)."""
    return _excerpt(strip_controls(text or ""), limit, redact or OUT.redact)


# Compose v2 prints this on every command for a file that keeps `version:` for Compose v1's sake.
NOISE = re.compile(r"level=warning msg=.*the attribute `version` is obsolete")


def lines(text: str, redact=None) -> list[str]:
    """Host text as lines (without Compose's NOISE), redacted as a whole before it is split: a
    multi-line secret split into lines first would no longer be matched."""
    return [l for l in (redact or OUT.redact)(strip_controls(text or "")).splitlines() if not NOISE.search(l)]


def clean(text: str) -> str:
    """Text without terminal escape codes and control characters."""
    return strip_controls(text or "")


def tail(text: str, lines: int = 15) -> list[str]:
    """The last non-empty lines, redacted as a whole before the split, without terminal escape
    codes (Compose v2 emits them even with --no-color)."""
    rows = [l.rstrip() for l in safe(text).splitlines() if l.strip() and not NOISE.search(l)]
    return rows[-lines:]


def block(title: str, fields: Sequence[tuple[str, object]], stream=None) -> None:
    """A labelled block: one label per line, continuation lines indented under the value.
    Each value is redacted whole before it is wrapped: wrapping splits a secret with spaces."""
    out = [safe(title)]
    width = max((len(k) for k, _ in fields), default=0) + 2
    for key, value in fields:
        if value is None or value == "" or value == []:
            continue
        if isinstance(value, (list, tuple)):
            out.append(f"  {key + ':':<{width}}")
            out.extend(f"      | {safe(v)}" for v in value)
        else:
            wrapped = textwrap.wrap(safe(value), width=110 - width, break_long_words=False,
                                    break_on_hyphens=False) or [""]
            out.append(f"  {key + ':':<{width}}{wrapped[0]}")
            out.extend(" " * (width + 2) + w for w in wrapped[1:])
    text = safe("\n".join(out))
    OUT.copy(text)
    print(text, file=stream or sys.stderr, flush=True)


# ---- tracebacks (exit 1: a bug) go through the redactor too -----------------------------------------

def print_traceback(exc_type, exc, tb, stream=None) -> None:
    """A traceback, made safe like everything else: an exception message may hold host output."""
    try:
        text = safe("".join(traceback.format_exception(exc_type, exc, tb)))
    except Exception:           # never fall back to the raw text
        text = f"{getattr(exc_type, '__name__', 'error')}: (traceback withheld: it could not be redacted)\n"
    OUT.copy(text)
    print(text, end="", file=stream or sys.stderr, flush=True)


def _thread_excepthook(args) -> None:
    if args.exc_type is not SystemExit:
        print(f"Exception in thread {args.thread.name if args.thread else '?'}:", file=sys.stderr)
        print_traceback(args.exc_type, args.exc_value, args.exc_traceback)


def install_excepthook() -> None:
    """Route the interpreter's last-resort traceback printing (main and other threads) through
    :func:`print_traceback`."""
    sys.excepthook = print_traceback
    threading.excepthook = _thread_excepthook
