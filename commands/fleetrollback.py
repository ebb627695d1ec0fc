"""Where a bare ``fab rollback`` takes each host of a fleet, pure (the engine: tasks/fleetrollback.py).

Each host's own bare target (commands/rollback_plan.py) is not enough on a fleet: after a fleet
deploy that stopped half-way, the hosts that never switched, or rolled themselves back, already
serve the previous release, and their own "one step back" would take them one release further
than the others. So the fleet goes to ONE image set: the newest of the hosts' own bare targets
(the step back from the newest release any host serves). Each host then either already serves it
(``unchanged``), or goes to it with the images its own record shows serving healthily, or (its
record has no healthy evidence of that set) the records disagree and nothing is changed anywhere.
Image sets are compared by image ID, which is the same on every host that pulled the image from
the same registry."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from commands.record import Release
from commands.rollback_plan import Candidate, NoTarget, choose_target, differs, healthy_sets, set_key

ROLL, UNCHANGED = "roll back", "unchanged"


@dataclass(frozen=True)
class HostTarget:
    host: str
    action: str                     # ROLL or UNCHANGED
    images: Mapping[str, Mapping]   # the target, from this host's own record ({} when unchanged)
    source: str                     # the evidence, e.g. "left serving healthily by deploy X"
    release: str = ""               # the release id that names the target set on this host, if any


@dataclass(frozen=True)
class HostRecord:
    rels: Sequence[Release]
    current: Mapping[str, str]      # service -> image ID running now


def fleet_target(records: Mapping[str, HostRecord], services: Sequence[str]) -> Candidate:
    """The newest of the hosts' own bare-rollback targets; NoTarget when no host has one."""
    found = [(t.when, -i, t) for i, rec in enumerate(records.values())
             if (t := choose_target(healthy_sets(rec.rels, services), rec.current, services))]
    if not found:
        raise NoTarget("no host has a recorded healthy image set other than what it runs now")
    return max(found, key=lambda x: x[:2])[2]


def plan(records: Mapping[str, HostRecord], services: Sequence[str]) -> list[HostTarget]:
    """Every host's part of a bare fleet rollback, in the order given; NoTarget if one host's
    record has no healthy evidence of the fleet's target (the records disagree)."""
    target = fleet_target(records, services)
    key = set_key(target.images, services)
    out, missing = [], []
    for host, rec in records.items():
        if not differs(target.images, rec.current, services):
            out.append(HostTarget(host, UNCHANGED, {}, "already serves the fleet's target"))
            continue
        own = [c for c in healthy_sets(rec.rels, services) if set_key(c.images, services) == key]
        if not own:
            missing.append(host)
            continue
        out.append(HostTarget(host, ROLL, dict(own[0].images), own[0].source, own[0].release))
    if missing:
        raise NoTarget(f"the hosts' records disagree: the fleet's target ({describe(target)}) is not recorded as "
                       f"healthy on {', '.join(missing)}")
    return out


def describe(c: Candidate) -> str:
    return c.release and f"release {c.release}" or c.source
