"""The release record writer: one JSON line per event appended on the host as the flow goes, so a
crash still leaves a trail (the format and its reading live in commands/record.py).

Lines are written behind the flow (:class:`Writer`): the flow queues a line and goes on; a writer
thread appends what is queued, in order, on its own SSH channel, usually within ~10 ms. Whatever
changes the host or reads the record waits for the queue first (Session.run asks
:meth:`Recorder.flush`), so a line about what is about to happen is on the host before it
happens, and the lock is released only after the last line is written.

Tasks that are not a recorded run (status, diagnose, ...) hold a :class:`NullRecorder`, so no
step has to ask whether a recorder exists.
"""
from __future__ import annotations

import json
import threading

from commands import record as record_cmd
from tasks import ui
from tasks.errors import CommandFailed, DeployError

FLUSH_GRACE = 20        # seconds beyond COMMAND_TIMEOUT a flush waits for the append in flight


class NullRecorder:
    """Records nothing: the recorder of a task that is not a recorded run."""
    release = ""
    lines: list[dict] = []

    def write(self, event: str, **data) -> None:
        pass

    def step(self, step: str, sub: str | None, seconds: float, ok: bool) -> None:
        pass

    def flush(self, timeout: float | None = None) -> None:
        pass


class Recorder(NullRecorder):
    """Appends release-record lines on the host; every value is redacted before it is written."""

    def __init__(self, session, release: str):
        self.session = session
        self.release = release
        self.lines = []
        self._writer: Writer | None = None
        self._writer_lock = threading.Lock()    # one writer, whichever thread writes first

    def write(self, event: str, **data) -> None:
        """One line, on the host within milliseconds: the record is a live trail (``fab status``
        from another terminal, a crash). Without a background executor (``fab plan``, tests'
        scripted hosts) it is appended here and now, in order with the flow's commands."""
        s = self.session
        text = record_cmd.line(self.release, event, **s.redactor.obj(data))
        self.lines.append(json.loads(text))
        if s.dry or s.dead:
            return          # nothing can be written to an unreachable host; the error block says so
        if not s.executor.background:
            self._append([text])
            return
        with self._writer_lock:
            if self._writer is None:
                self._writer = Writer(self._append)
        self._writer.put(text)

    def step(self, step: str, sub: str | None, seconds: float, ok: bool) -> None:
        self.write("step", step=step, sub=sub, seconds=seconds, ok=ok)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every line written so far is on the host (or its append failed, warned)."""
        if self._writer is None:
            return
        wait = timeout if timeout is not None else self.session.settings.command_timeout + FLUSH_GRACE
        if not self._writer.flush(wait):
            ui.warn(f"release record {self.session.settings.releases_file} on {self.session.host}: lines still not "
                    f"appended after {wait:g} s (an append hangs); going on, they may come later or not at all")

    def _append(self, texts: list[str]) -> None:
        s = self.session
        if s.dead:
            return
        try:
            s.run(record_cmd.append(s.settings.releases_file, *texts), mutating=True, bookkeeping=True)
        except (CommandFailed, DeployError) as exc:
            ui.warn(f"could not append to the release record {s.settings.releases_file}: {exc}")


class Writer:
    """One thread appending queued lines in order, all those queued at once in one command."""

    def __init__(self, append):
        self._append = append
        self._queue: list[str] = []
        self._busy = False
        self._cond = threading.Condition()
        context = ui.thread_context()
        self._thread = threading.Thread(target=self._loop, args=(context,), name="record-writer", daemon=True)
        self._thread.start()

    def put(self, text: str) -> None:
        with self._cond:
            self._queue.append(text)
            self._cond.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait for the queue to empty and the append in flight to end; False if ``timeout`` came
        first. From the writer thread itself (its own append asks) there is nothing to wait for."""
        if threading.current_thread() is self._thread:
            return True
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def _loop(self, context: tuple) -> None:
        ui.adopt(context)
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue)
                batch, self._queue = self._queue, []
                self._busy = True
            try:
                self._append(batch)
            except BaseException as exc:        # never lose the thread: the flow must not wait forever
                ui.warn(f"could not append to the release record: {exc.__class__.__name__}: {exc}")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
