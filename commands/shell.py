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


def stop_tagged(tag: str, wait: int = STOP_WAIT) -> str:
    """TERM every process whose command line holds ``tag`` (a run's tag: its ``$0`` on the host),
    then wait until none is left, at most ``wait`` seconds: what comes next (a rollback's ``compose
    up``) must not race a ``compose up`` still stopping (its containers' names are still taken).
    The ``[x]`` keeps pkill and pgrep from matching this very command line. The remote ``timeout``
    wrapper sends KILL 5 s after the TERM it relays."""
    pattern = q("[" + tag[0] + "]" + tag[1:])
    return (f"pkill -TERM -f -- {pattern}; i=0; while pgrep -f -- {pattern} >/dev/null && [ $i -lt {wait * 5} ]; "
            f"do sleep 0.2; i=$((i+1)); done; true")
