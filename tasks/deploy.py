"""The whole runbook in order, under the deploy lock, timed step by step and recorded on the host.
This module is the runbook's table of contents; the engine is tasks/flow.py."""
from __future__ import annotations

from commands.shell import UnsafeValue
from config.validators import check_tag
from tasks import versions
from tasks.base import operator_task
from tasks.checklist import checklist_prefetch, checklist_step
from tasks.cli import parse_show
from tasks.fleetdeploy import deploy_fleet
from tasks.flow import run_flow
from tasks.migrate import migrate_prefetch, migrate_step
from tasks.prepare import prepare_step
from tasks.services import pull_prefetch, pull_step, switch_step
from tasks.session import Session
from tasks.steps import RunOptions, Step
from tasks.verify import verify_step

# The runbook's order, with one change: images are pulled before migrating (docs/runbook-differences.md),
# so a missing image or an unreachable registry stops the deploy before the database changes.
# Pulling changes nothing that runs.
DEPLOY_STEPS = (
    Step("checklist", checklist_step, prefetch=checklist_prefetch),   # Pre-Deployment Checklist
    Step("prepare", prepare_step),                        # 1. Prepare the deployment server
    Step("pull", pull_step, prefetch=pull_prefetch),                              # 3. Deploy services: pull new images
    Step("migrate", migrate_step, prefetch=migrate_prefetch),   # 2. Run database migrations
    Step("services", switch_step, recoverable=True, switches=True),   # 3. Deploy services: up, health
    Step("verify", verify_step, recoverable=True),        # 4. Verify deployment
)


VERSION_CHECK = Step("version", versions.check_step)    # --version TAG: the registry first, nothing changed yet


def steps_for(version: str = "") -> tuple[Step, ...]:
    return (VERSION_CHECK, *DEPLOY_STEPS) if version else DEPLOY_STEPS


def check_options(version=None, **_) -> list[str]:
    """Checked before any SSH connection: --version must be a docker tag (an empty one too: an
    unset variable in ``--version "$TAG"`` must not deploy whatever ``latest`` is)."""
    if version is None:
        return []
    try:
        check_tag(version, "--version")
    except UnsafeValue as bad:
        return [str(bad)]
    return []


def _options(json=False, lock_wait=-1.0, message="", show="", version="") -> RunOptions:
    return RunOptions("deploy", message=message, show=parse_show(show), json_out=json,
                      lock_wait=None if lock_wait < 0 else lock_wait, version=version or "")


def _fleet(c, settings, why, hosts, accept_new, json=False, lock_wait=-1.0, message="", show="", parallel="", version=None):
    """Several HOSTS: the fleet engine, batch by batch under FAILURE_POLICY (docs/fleets.md)."""
    deploy_fleet(c, settings, why, hosts, accept_new, steps_for(version),
                 _options(json, lock_wait, message, show, version), parallel)


@operator_task(fleet=_fleet, check=check_options, help={
    "json": "print the release record as JSON on stdout (progress goes to stderr)",
    "lock_wait": "wait up to this many seconds for another deploy's lock (default LOCK_WAIT)",
    "message": "note recorded with the release, the lock and the notifications",
    "show": "comma-separated non-secret env keys whose values the env diff may print",
    "parallel": "several HOSTS: hosts switched at once, a count or a percentage (default BATCH_SIZE)",
    "version": "image tag to deploy, written to IMAGE_TAG_VARIABLE in the app dir's .env (checked in the "
               "registry first; docs/versions.md). Default: whatever the compose file's tags point at",
})
def deploy(s: Session, json=False, lock_wait=-1.0, message="", show="", parallel="", version=None):
    """The whole runbook: checklist, prepare, pull, migrate, services, verify; timed, locked, recorded."""
    run_flow(s, steps_for(version), _options(json, lock_wait, message, show, version))
