"""Ctrl-C, SIGTERM and SIGHUP all end a run the same way: the clean-up path of a Ctrl-C.

A cancelled CI job sends SIGTERM; a closed terminal sends SIGHUP. Python's default for both is to
die on the spot, which leaves the deploy lock held and the release record without its ``end``
line. So while a task runs, TERM and HUP raise :class:`Terminated`, a ``KeyboardInterrupt``
subclass: every ``except KeyboardInterrupt`` clean-up (let a mutating command finish, restore,
record ``aborted``, unlock) runs unchanged, and only the exit code differs (128 + the signal).

SIGINT is handled explicitly: a parent that starts us with SIGINT ignored (a background job of a
non-interactive shell, some CI runners) makes Python skip installing its handler, and Ctrl-C
would then do nothing at all. A TERM or HUP that the parent ignores stays ignored: ``nohup``
ignores SIGHUP precisely so that a run outlives its terminal.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

from tasks.errors import ExitCode

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
EXIT_CODES = {signal.SIGINT: ExitCode.INTERRUPTED, signal.SIGTERM: ExitCode.TERMINATED,
              signal.SIGHUP: ExitCode.HANGUP}
NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, delivered like Ctrl-C so the same clean-up runs."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(NAMES.get(signum, f"signal {signum}"))


def signum_of(exc: BaseException) -> int:
    return getattr(exc, "signum", signal.SIGINT)


def describe(exc: BaseException) -> str:
    """'Ctrl-C', 'SIGTERM' or 'SIGHUP'."""
    return NAMES[signum_of(exc)]


def exit_code(exc: BaseException) -> ExitCode:
    return EXIT_CODES[signum_of(exc)]


class _State:
    # Once one signal has been raised, later ones are dropped until the task ends: a closed
    # terminal can deliver SIGHUP twice (kernel and shell), and the second must not land in the
    # clean-up before run_flow has switched the signals off.
    raised = False


def _raise_terminated(signum, frame):
    if _State.raised:
        return
    _State.raised = True
    raise Terminated(signum)


def _raise_interrupt(signum, frame):
    if _State.raised:
        return
    _State.raised = True
    raise KeyboardInterrupt


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """For the duration of a task: INT raises KeyboardInterrupt, TERM and HUP raise Terminated.
    The previous handlers are put back afterwards (in-process callers such as tests keep theirs)."""
    if not _on_main_thread():          # signal handlers can only be set from the main thread
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in HANDLED}
    _State.raised = False
    signal.signal(signal.SIGINT, _raise_interrupt)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        # `nohup fab deploy &` ignores SIGHUP on purpose: the run must outlive the terminal.
        if previous[sig] is not signal.SIG_IGN:
            signal.signal(sig, _raise_terminated)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        _State.raised = False


@contextlib.contextmanager
def ignored() -> Iterator[None]:
    """While the host is put in order after an interrupt: further INT/TERM/HUP are ignored (a
    watchdog bounds the clean-up instead)."""
    if not _on_main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in HANDLED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
