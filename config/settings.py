"""The validated settings of one stage: one frozen :class:`Settings`, whose fields are derived from
the key table (config/keys.py): ``HEALTH_TIMEOUT`` is ``settings.health_timeout``."""
from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Mapping

from config.keys import STAGE_KEYS


class ConfigError(Exception):
    """One or more settings are invalid. ``problems`` holds one line per key."""

    def __init__(self, problems: list[str], stage: str | None = None, secrets: tuple = (),
                 next_step: str | None = None):
        self.problems = problems
        self.stage = stage
        self.secrets = secrets          # (name, value) held in the raw config: problems may echo them
        self.next_step = next_step
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Contact:
    kind: str
    team: str
    response: str
    reach: str = ""


class _Derived:
    """Paths and look-ups derived from the fields."""

    @property
    def record_path(self) -> str:
        return f"{self.app_dir.rstrip('/')}/{self.record_dir}"

    @property
    def releases_file(self) -> str:
        return f"{self.record_path}/releases.jsonl"

    @property
    def lock_dir(self) -> str:
        return f"{self.record_path}/lock"

    def contact(self, kind: str) -> Contact:
        return self.contacts.get(kind) or self.contacts["infrastructure"]


Settings = make_dataclass(
    "Settings",
    [("stage", str),
     *((k.field, k.type) for k in STAGE_KEYS),
     ("contacts", Mapping[str, Contact], field(default_factory=dict)),
     ("sources", Mapping[str, str], field(default_factory=dict, compare=False, repr=False)),
     # (name, value) of the secrets the config itself holds (config/secrets.py); never printed.
     ("secrets", tuple[tuple[str, str], ...], field(default=(), compare=False, repr=False))],
    bases=(_Derived,), frozen=True)
Settings.__module__ = __name__
Settings.__doc__ = "One stage's validated settings; a field per key of config/keys.py, in lower case."
