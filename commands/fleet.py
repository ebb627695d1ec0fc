"""Planning a fleet deploy (several HOSTS), pure: the batches, what the failure policy decides
after each batch, the fleet's exit code and the rows of the fleet table. The engine that runs it
over SSH is tasks/fleet.py.

Outcomes of one host: ``success`` (new version, healthy), ``rolled_back`` (its own auto-rollback
put the previous images back), ``failed`` (anything else), ``aborted`` (Ctrl-C/SIGTERM),
``not started`` (the policy started no batch for it), ``reverted`` (it had succeeded and the
``revert`` policy put its previous images back), ``revert failed``; and, in a fleet rollback,
``unchanged`` (the host already served the fleet's target)."""
from __future__ import annotations

import math
from dataclasses import dataclass

POLICIES = ("stop", "revert", "continue")
SUCCESS, ROLLED_BACK, FAILED, ABORTED = "success", "rolled_back", "failed", "aborted"
NOT_STARTED, REVERTED, REVERT_FAILED = "not started", "reverted", "revert failed"
UNCHANGED = "unchanged"         # a fleet rollback: the host already served the target, nothing ran
INTERRUPT_CODES = (129, 130, 143)
ROLLBACK_FAILED_CODE = 8


class BadBatchSize(ValueError):
    pass


def batch_size(spec: str, hosts: int) -> int:
    """BATCH_SIZE or --parallel: a count (``2``) or a percentage of the hosts (``50%``, rounded up);
    at least 1, at most every host."""
    text = str(spec).strip()
    try:
        if text.endswith("%"):
            pct = float(text[:-1])
            if not 0 < pct <= 100:
                raise BadBatchSize(f"a percentage must be above 0 and at most 100, got {text!r}")
            return max(1, min(hosts, math.ceil(hosts * pct / 100)))
        count = int(text)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, BadBatchSize):
            raise
        raise BadBatchSize(f"must be a whole number of hosts or a percentage (50%), got {text!r}") from None
    if count < 1:
        raise BadBatchSize(f"must be 1 or more, got {text!r}")
    return min(hosts, count)


def order(hosts: list[str], migration_host: str) -> list[str]:
    """The migration host goes first: it migrates before any host switches, so it is in batch 1."""
    return [migration_host, *[h for h in hosts if h != migration_host]]


def batches(hosts: list[str], size: int) -> list[list[str]]:
    return [hosts[i:i + size] for i in range(0, len(hosts), size)]


@dataclass(frozen=True)
class Decision:
    go_on: bool                     # start the next batch
    revert: tuple[str, ...] = ()    # hosts to put back on their previous images now
    why: str = ""


def after_batch(policy: str, outcomes: dict[str, str], migration_failed: bool = False) -> Decision:
    """What the policy does once a batch has ended. ``outcomes`` holds every host that ran so
    far. A failed migration, or an interrupt, stops the fleet under every policy: no further host
    may switch onto code the database does not match, and the operator asked to stop."""
    failed = [h for h, o in outcomes.items() if o not in (SUCCESS,)]
    if any(o == ABORTED for o in outcomes.values()):
        return Decision(False, why="interrupted: no further batch starts")
    if migration_failed:
        return Decision(False, why="the migration did not succeed: no host may switch")
    if not failed or policy == "continue":
        return Decision(True, why="" if not failed else f"FAILURE_POLICY=continue: going on after {', '.join(failed)}")
    if policy == "revert":
        switched = tuple(h for h, o in outcomes.items() if o == SUCCESS)
        return Decision(False, switched, f"FAILURE_POLICY=revert after {', '.join(failed)}: no further batch; "
                        + (f"reverting {', '.join(switched)}" if switched else "no host had switched"))
    return Decision(False, why=f"FAILURE_POLICY=stop after {', '.join(failed)}: no further batch; "
                    "hosts already switched stay on the new version")


def exit_code(results: list[tuple[str, str, int]]) -> int:
    """(host, outcome, exit code) in host order -> the fleet's exit code: 0 only if every host
    succeeded. An interrupt wins (the operator's signal), then a failed revert (the fleet may serve
    two versions), then the first failed host's own code."""
    if results and all(o in (SUCCESS, UNCHANGED) for _, o, _ in results):
        return 0
    codes = [c for _, _, c in results]
    for special in (*INTERRUPT_CODES, ROLLBACK_FAILED_CODE):
        if special in codes:
            return special
    return next((c for _, o, c in results if o not in (SUCCESS, UNCHANGED, NOT_STARTED, REVERTED) and c), 3)


@dataclass(frozen=True)
class HostRow:
    host: str
    outcome: str
    version: str = ""               # as the host's health URL reports it now; "" unknown
    seconds: float | None = None
    bottleneck: str = ""


HEADERS = ("host", "outcome", "version serving", "seconds", "bottleneck")


def rows(results: list[HostRow]) -> list[list[str]]:
    return [[r.host, r.outcome, r.version or "?", "-" if r.seconds is None else f"{r.seconds:.1f}", r.bottleneck or "-"]
            for r in results]


def serves_one_version(results: list[HostRow]) -> bool:
    versions = {r.version for r in results}
    return len(versions) == 1 and "" not in versions
