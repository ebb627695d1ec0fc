"""Output that can no longer be written never stops a run.

`fab plan | head` closes the pipe after ten lines: the next write raises BrokenPipeError. A closed
terminal (SIGHUP) makes writes fail with EIO. Either one, raised in the middle of a deploy, would
abort it half-way with a traceback, and the clean-up that follows prints too. So stdout and stderr
are wrapped: the first failed write points the stream's file descriptor at /dev/null (so Python's
own flush at exit cannot fail again and print "Exception ignored ... BrokenPipeError"), and the
run goes on to its normal end and exit code without its output.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator


class SafeStream:
    """A text stream whose writes and flushes never raise OSError."""

    def __init__(self, stream):
        self._stream = stream
        self.lost = False

    def write(self, text: str) -> int:
        if not self.lost:
            try:
                return self._stream.write(text)
            except (OSError, ValueError):           # EPIPE, EIO, ENOSPC; ValueError: closed file
                self._lose()
        return len(text)

    def flush(self) -> None:
        if not self.lost:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._lose()

    def _lose(self) -> None:
        self.lost = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._stream.fileno())
            finally:
                os.close(devnull)
            self._stream.flush()        # what was buffered now goes to /dev/null
        except (OSError, ValueError, AttributeError):     # no file descriptor (e.g. a test's StringIO)
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


@contextlib.contextmanager
def guarded() -> Iterator[None]:
    """For the duration of a task, sys.stdout and sys.stderr are SafeStreams. The originals come
    back afterwards; a lost one already writes to /dev/null, so later prints cannot fail."""
    saved = sys.stdout, sys.stderr
    if not isinstance(sys.stdout, SafeStream):
        sys.stdout = SafeStream(sys.stdout)
    if not isinstance(sys.stderr, SafeStream):
        sys.stderr = SafeStream(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
