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
        self.held: list[str] = []       # step timings not yet on the host: they go with the next event

    def write(self, event: str, **data) -> None:
        s = self.session
        text = record_cmd.line(self.release, event, **s.redactor.obj(data))
        self.lines.append(json.loads(text))
        if event == "step":
            self.held.append(text)      # a timing, not a fact a later reader needs before the next event
            return
        steps, self.held = self.held, []
        if s.dry or s.dead:
            return          # nothing can be written to an unreachable host; the error block says so
        try:
            s.run(record_cmd.append(s.settings.releases_file, *steps, text), mutating=True, bookkeeping=True)
        except (CommandFailed, DeployError) as exc:
            # The timings go with the next event (a step written twice is harmless; one missing
            # makes a success look forged, see record.inconsistency).
            self.held = [*steps, *self.held]
            ui.warn(f"could not append to the release record {s.settings.releases_file}: {exc}")

    def step(self, step: str, sub: str | None, seconds: float, ok: bool) -> None:
        """A step's timing, appended with the next event (``end`` last): one round trip fewer per step."""
        self.write("step", step=step, sub=sub, seconds=seconds, ok=ok)

