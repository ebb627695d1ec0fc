"""Rollback Procedure: ``fab rollback`` (one step back, or ``--to``). The steps and the choice of
images: tasks/rollbackflow.py (re-exported here); on several HOSTS: tasks/fleetrollback.py."""
from __future__ import annotations

from commands import rollback_plan as plan
from tasks.base import operator_task
from tasks.fleetrollback import rollback_fleet
from tasks.flow import run_flow
from tasks.rollbackflow import (  # noqa: F401  (re-exported: the rollback's steps and target choice)
    ROLLBACK_STEPS,
    candidate_rows,
    load_releases,
    planned_steps,
    read_record,
    resolve_target,
    rollback_step,
)
from tasks.session import Session
from tasks.steps import RunOptions


def check_options(to="", **_) -> list[str]:
    """Checked before any SSH connection (a hostile --to never reaches the host)."""
    problem = plan.check_reference(to)
    return [problem] if problem else []


@operator_task(fleet=rollback_fleet, help={"to": "release id or unique prefix (fab history): the images that release left serving healthily; "
                           "or an image tag (e.g. v1) or image ID. Default: one step back, the newest healthy image set "
                           "that differs from what runs now and that no later rollback moved away from",
                     "json": "print the release record as JSON on stdout (several HOSTS: one document for the fleet)"},
               check=check_options)
def rollback(s: Session, to="", json=False):
    """Rollback Procedure: one step back to the previous healthy images (or --to REF); wait healthy, smoke."""
    run_flow(s, ROLLBACK_STEPS, RunOptions("rollback", to=to, json_out=json))
