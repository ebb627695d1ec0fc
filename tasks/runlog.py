"""The per-run log file, on the operator's machine:

    $XDG_STATE_HOME/ai-doc-qa-deploy/logs/<timestamp>-<task>-<pid>.log
    (default ~/.local/state/ai-doc-qa-deploy/logs/...)

It holds everything the run printed (progress, tables, error blocks, tracebacks: made safe, i.e.
redacted, like the terminal's copy), and what libraries log, paramiko first: paramiko logs a refused SSH banner as
"Exception (client): Error reading SSH protocol banner" plus a traceback, and with no handler of
its own Python prints that on the terminal (logging's last-resort handler) next to our error
block. Routed here, the terminal shows only the block, and the block names this file.

:meth:`RunLog.write` is the one place to add more to the log (e.g. the redacted run output).
Logging never breaks a run: if the directory cannot be created, library messages are dropped.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Iterator

from tasks import ui

APP = "ai-doc-qa-deploy"
KEEP = 100                     # newest run logs kept; older ones are deleted when a run starts
LIBRARY_LOGGERS = ("paramiko",)


def state_dir(environ=None) -> Path:
    """XDG Base Directory spec: $XDG_STATE_HOME if it is an absolute path, else ~/.local/state."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / APP


def logs_dir(environ=None) -> Path:
    return state_dir(environ) / "logs"


class _SafeFormatter(logging.Formatter):
    """Each record made safe like terminal output (tasks/ui.py): escape sequences stripped, then
    redacted with the run's redactor. A library message or its traceback may quote host output."""

    def format(self, record) -> str:
        return ui.safe(super().format(record))


def _private(path, flags):
    """The log holds what the run printed and the SSH library's messages: for its owner only, also
    in a logs directory that someone made readable by others."""
    return os.open(path, flags, 0o600)


class _QuietFileHandler(logging.FileHandler):
    worst = logging.NOTSET               # the highest level written, for the error block
    failed = False                       # the file could not be created: the run goes on without it

    def _open(self):
        return open(self.baseFilename, self.mode, encoding=self.encoding, errors=self.errors, opener=_private)

    def emit(self, record):
        if self.failed:
            return
        self.worst = max(self.worst, record.levelno)
        try:
            super().emit(record)
        except OSError:
            # FileHandler opens the file (delay=True) outside its own error handling: a logs
            # directory the user cannot write (made by a run under sudo, read-only, full) must
            # cost the log, not crash the task with a traceback at its first line.
            self.failed = True

    def handleError(self, record):      # a full disk must not print "--- Logging error ---"
        pass


class RunLog:
    def __init__(self, task: str):
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.path = logs_dir() / f"{stamp}-{task}-{os.getpid()}.log"
        self.handler: logging.Handler = logging.NullHandler()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            _prune(self.path.parent)
            # delay: the file appears only once something is written to it
            self.handler = _QuietFileHandler(self.path, encoding="utf-8", delay=True)
            self.handler.setFormatter(_SafeFormatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        except OSError:
            pass

    @property
    def usable(self) -> bool:
        """The log can be named in an error block: it is being written."""
        return not isinstance(self.handler, logging.NullHandler) and not getattr(self.handler, "failed", False)

    @property
    def has_warnings(self) -> bool:
        """A library logged a warning or an error: the error block then names this file."""
        return getattr(self.handler, "worst", logging.NOTSET) >= logging.WARNING and self.path.is_file()

    def write(self, text: str) -> None:
        """Append lines of our own to the log (redacted on the way, like every record)."""
        self.handler.handle(logging.makeLogRecord({"name": "run", "levelno": logging.INFO,
                                                   "levelname": "INFO", "msg": text}))

    def close(self) -> None:
        self.handler.close()


def _prune(directory: Path) -> None:
    logs = sorted(directory.glob("*.log"), key=lambda p: p.stat().st_mtime)
    for old in logs[:-KEEP] if len(logs) > KEEP else []:
        with contextlib.suppress(OSError):
            old.unlink()


CURRENT: RunLog | None = None
# Outside a task too (a transport thread logging after the task ended), library messages must not
# reach the terminal through logging's last-resort handler.
_SILENT = logging.NullHandler()
for _name in LIBRARY_LOGGERS:
    logging.getLogger(_name).addHandler(_SILENT)


@contextlib.contextmanager
def opened(task: str) -> Iterator[RunLog]:
    """For the duration of a task: a run log, and the libraries' loggers write to it (only)."""
    global CURRENT
    log = RunLog(task)
    saved = []
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate))
        logger.addHandler(log.handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False            # never up to the root logger (the terminal)
    previous, CURRENT = CURRENT, log
    previous_tee, ui.OUT.tee = ui.OUT.tee, log.write
    try:
        yield log
    finally:
        CURRENT = previous
        ui.OUT.tee = previous_tee
        for logger, level, propagate in saved:
            logger.removeHandler(log.handler)
            logger.setLevel(level)
            logger.propagate = propagate
        log.close()
