"""The release record writer: one JSON line per event appended on the host as the flow goes, so a
crash still leaves a trail (the format and its reading live in commands/record.py).

Tasks that are not a recorded run (status, diagnose, ...) hold a :class:`NullRecorder`, so no
step has to ask whether a recorder exists.
"""
from __future__ import annotations

import json

from commands import record as record_cmd
from tasks import ui
from tasks.errors import CommandFailed, DeployError


class NullRecorder:
    """Records nothing: the recorder of a task that is not a recorded run."""
    release = ""
    lines: list[dict] = []

    def write(self, event: str, **data) -> None:
        pass

    def step(self, step: str, sub: str | None, seconds: float, ok: bool) -> None:
        pass


class Recorder(NullRecorder):
    """Appends release-record lines on the host; every value is redacted before it is written."""

    def __init__(self, session, release: str):
        self.session = session
        self.release = release
        self.lines = []

    def write(self, event: str, **data) -> None:
        """One line, appended at once: the record is a live trail (``fab status`` from another
        terminal, a crash). Step timings too: holding them for the next event saved ~0.1 s a deploy
        and hid a step's end from whoever watches the record (tried, measured, reverted)."""
        s = self.session
        text = record_cmd.line(self.release, event, **s.redactor.obj(data))
        self.lines.append(json.loads(text))
        if s.dry or s.dead:
            return          # nothing can be written to an unreachable host; the error block says so
        try:
            s.run(record_cmd.append(s.settings.releases_file, text), mutating=True, bookkeeping=True)
        except (CommandFailed, DeployError) as exc:
            ui.warn(f"could not append to the release record {s.settings.releases_file}: {exc}")

    def step(self, step: str, sub: str | None, seconds: float, ok: bool) -> None:
        self.write("step", step=step, sub=sub, seconds=seconds, ok=ok)
