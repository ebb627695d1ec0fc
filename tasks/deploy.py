"""The whole runbook in order, under the deploy lock, timed step by step and recorded on the host.
This module is the runbook's table of contents; the engine is tasks/flow.py."""
from __future__ import annotations

from tasks.base import operator_task
from tasks.checklist import checklist_step
from tasks.cli import parse_show
from tasks.fleetdeploy import deploy_fleet
from tasks.flow import run_flow
from tasks.migrate import migrate_step
from tasks.prepare import prepare_step
from tasks.services import pull_step, switch_step
from tasks.session import Session
from tasks.steps import RunOptions, Step
from tasks.verify import verify_step

# The runbook's order, with one change: images are pulled before migrating (docs/runbook-differences.md),
# so a missing image or an unreachable registry stops the deploy before the database changes.
# Pulling changes nothing that runs.
DEPLOY_STEPS = (
    Step("checklist", checklist_step),                    # Pre-Deployment Checklist
    Step("prepare", prepare_step),                        # 1. Prepare the deployment server
    Step("pull", pull_step),                              # 3. Deploy services: pull new images
    Step("migrate", migrate_step),                        # 2. Run database migrations
    Step("services", switch_step, recoverable=True, switches=True),   # 3. Deploy services: up, health
    Step("verify", verify_step, recoverable=True),        # 4. Verify deployment
)


def _options(json=False, lock_wait=-1.0, message="", show="") -> RunOptions:
    return RunOptions("deploy", message=message, show=parse_show(show), json_out=json,
                      lock_wait=None if lock_wait < 0 else lock_wait)


def _fleet(c, settings, why, hosts, accept_new, json=False, lock_wait=-1.0, message="", show="", parallel=""):
    """Several HOSTS: the fleet engine, batch by batch under FAILURE_POLICY (docs/fleets.md)."""
    deploy_fleet(c, settings, why, hosts, accept_new, DEPLOY_STEPS, _options(json, lock_wait, message, show), parallel)


@operator_task(fleet=_fleet, help={
    "json": "print the release record as JSON on stdout (progress goes to stderr)",
    "lock_wait": "wait up to this many seconds for another deploy's lock (default LOCK_WAIT)",
    "message": "note recorded with the release, the lock and the notifications",
    "show": "comma-separated non-secret env keys whose values the env diff may print",
    "parallel": "several HOSTS: hosts switched at once, a count or a percentage (default BATCH_SIZE)",
})
def deploy(s: Session, json=False, lock_wait=-1.0, message="", show="", parallel=""):
    """The whole runbook: checklist, prepare, pull, migrate, services, verify; timed, locked, recorded."""
    run_flow(s, DEPLOY_STEPS, _options(json, lock_wait, message, show))
