"""The vocabulary of a flow: a :class:`Step` of the runbook and the :class:`RunOptions` of a run.
Kept apart from the engine (tasks/flow.py) so the runbook sections can name their steps without
importing the engine."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class RunOptions:
    """What the operator asked for, typed (the task's options)."""
    kind: str                                   # deploy, prepare, migrate, services, rollback
    message: str = ""                           # recorded with the release, the lock, the notifications
    show: frozenset[str] = frozenset()          # non-secret env keys the env diff may print
    to: str = ""                                # rollback target
    json_out: bool = False                      # print the release record as JSON at the end
    lock_wait: float | None = None              # seconds to wait for another run's lock (None: LOCK_WAIT)
    version: str = ""                           # fab deploy --version: the image tag deployed


@dataclass(frozen=True)
class Step:
    """One runbook step of a flow."""
    name: str
    run: Callable[..., object]   # (session, RunOptions)
    recoverable: bool = False    # after this step fails, the previous images may be put back (AUTO_ROLLBACK)
    switches: bool = False       # this step changes what serves (the end records the images after)
    # Reads this step will need that can start with the run, beside the start's own reads
    # (Session.prefetch); the step asks for their results and reads again if one failed.
    prefetch: Callable[..., object] | None = None   # (session)
