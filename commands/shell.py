"""Quoting and validation for every value that reaches a remote shell.

Builders in ``commands/`` return one self-contained shell string an operator could paste into an
SSH session. Every interpolated value goes through :func:`q` (``shlex.quote``); values with a known
shape (git refs, service names, image references, URLs, paths) are also checked against a strict
pattern first, so a hostile value is refused before it is quoted, not merely neutralised.
"""
from __future__ import annotations

import math
import shlex
from typing import Iterable

from config.validators import (
    UnsafeValue,
    check_image,
    check_path,
    check_ref,
    check_remote,
    check_service,
    check_url,
)

__all__ = [
    "q", "join", "cd", "UnsafeValue",
    "check_ref", "check_service", "check_path", "check_url", "check_image", "check_remote",
    "whole_seconds",
]


def q(value: object) -> str:
    """Quote one value for a POSIX shell."""
    return shlex.quote(str(value))


def join(argv: Iterable[object]) -> str:
    """Quote every element and join with spaces."""
    return " ".join(q(a) for a in argv)


def cd(directory: str, command: str) -> str:
    """``cd DIR && command``: keeps each builder's output paste-able on its own."""
    return f"cd {q(directory)} && {command}"


def whole_seconds(seconds: float) -> int:
    """A timeout for a tool that takes whole seconds (coreutils ``timeout``, curl, a shell loop):
    rounded UP, at least 1. ``int(0.5)`` is 0, which ``timeout`` reads as "no limit at all"."""
    return max(1, math.ceil(seconds))


STOP_WAIT = 10      # seconds stop_tagged waits for the stopped processes to be gone
KEEP = "-keep"      # the tag's suffix on a command that must finish once begun (compose up, a migration)


def stop_tagged(tag: str, wait: int = STOP_WAIT, let_finish: int = 0) -> str:
    """TERM every process whose command line holds ``tag`` (a run's tag: its ``$0`` on the host),
    then wait until none is left, at most ``wait`` seconds: what comes next (a rollback's ``compose
    up``) must not race a command still stopping. With ``let_finish``, the processes of the
    commands that must finish (tagged ``tag`` + KEEP) are first waited for, up to that many
    seconds: a ``compose up`` TERMed half-way leaves a renamed container behind, and the
    rollback's ``compose up`` then fails on its name (a connection killed 0.05-0.1 s into ``up``:
    exit 8, neither version serving). The ``[x]`` keeps pkill and pgrep from matching this very
    command line. The remote ``timeout`` wrapper sends KILL 5 s after the TERM it relays."""
    pattern = q("[" + tag[0] + "]" + tag[1:])
    first = ""
    if let_finish:
        keep = q("[" + tag[0] + "]" + tag[1:] + KEEP)
        first = f"i=0; while pgrep -f -- {keep} >/dev/null && [ $i -lt {let_finish * 5} ]; do sleep 0.2; i=$((i+1)); done; "
    return (f"{first}pkill -TERM -f -- {pattern}; i=0; while pgrep -f -- {pattern} >/dev/null && [ $i -lt {wait * 5} ]; "
            f"do sleep 0.2; i=$((i+1)); done; true")


def output_kept_on_host(command: str) -> str:
    """``command`` with its output written to two private files on the host while it runs (mktemp:
    0600), printed when it ends, stdout and stderr apart, and removed. A command that must finish
    once begun (``compose up``, a migration) then never writes to the SSH channel: with the
    connection gone, ``compose up`` died at its next progress line (SIGPIPE: a backend only
    created) instead of finishing. The exit status is the command's; a TERM (Ctrl-C's clean-up, the
    remote ``timeout``) still prints what it wrote so far.

    The command runs in a subshell (a function called in ``( )``): its own ``exit``, ``exec``,
    traps and variables cannot skip the printing and removal or reach the wrapper's file names.
    If the first byte cannot be written there (a full /tmp: mktemp needs no block), the command
    writes to the channel as any other does rather than lose its output."""
    return ('k=; o=$(mktemp) && e=$(mktemp) || exit 125; '
            'trap \'[ -z "$k" ] || { cat "$o"; cat "$e" >&2; }; rm -f "$o" "$e"\' EXIT; trap "exit 143" TERM; '
            f'c() {{ {command}\n}}; '
            'if (echo >"$o") 2>/dev/null; then k=1; (c) >"$o" 2>"$e"; else (c); fi')


def on_host(command: str, tag: str, seconds: float, must_finish: bool = False, keep_output: bool = False) -> str:
    """``command`` as the session runs it on the host: under coreutils ``timeout`` (``seconds``,
    whole, rounded up; 0 = no limit, still one process group; KILL 5 s after the TERM), in a
    ``sh`` whose ``$0`` is the run's ``tag`` (so stop_tagged finds its processes), stdin from
    /dev/null (nothing may wait for input: ``compose run`` waits for stdin's EOF). A command that
    must finish once begun carries the tag's KEEP suffix; with ``keep_output`` (a long one that
    writes progress as it works: compose up, a migration) its output also waits on the host
    (output_kept_on_host)."""
    limit = whole_seconds(seconds) if seconds else 0
    body = output_kept_on_host(command) if keep_output else command
    return f"timeout -k 5 {limit} sh -c {q(body)} {tag}{KEEP if must_finish else ''} </dev/null"
