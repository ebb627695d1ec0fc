"""Rollback Procedure: put the deployed services back on images known to have served healthily.

Runbook note 2: ``docker compose pull backend:previous-tag`` is not valid Compose (``pull`` takes
service names). What works for mutable and immutable tags alike: point the reference the service
uses (e.g. ``registry/backend:latest``) at the recorded image *ID* on the host with ``docker tag``,
then ``up -d --no-deps`` those services. A pruned image is pulled back by its recorded digest.
"""
from __future__ import annotations

import re

from commands import docker as docker_cmd
from commands import record as record_cmd
from commands import rollback_plan as plan
from commands.shell import UnsafeValue
from tasks import ui
from tasks.base import operator_task
from tasks.errors import CommandFailed, DeployError, ExitCode
from tasks.session import Session
from tasks.services import containers, describe_images, images_of, up, wait_http, wait_ready


def read_record(s: Session, to: str = "") -> record_cmd.RecordRead:
    """The record's last lines; with an explicit ``--to`` that could be a release id, also every
    line of that release anywhere in the file. Lines that fail the schema are skipped, with one
    warning per run."""
    path = s.settings.releases_file
    got = record_cmd.parse_read(s.run(record_cmd.read(path)).stdout)
    if to and record_cmd.RELEASE_ID.match(to):
        got = record_cmd.merge(got, record_cmd.parse_search(s.run(record_cmd.search(path, to)).stdout))
    if got.skipped and not s.facts.get("record_warned"):
        s.facts["record_warned"] = True
        ui.warn(got.warning(path))
    return got


def load_releases(s: Session, to: str = "") -> list[record_cmd.Release]:
    return record_cmd.releases(read_record(s, to).lines)


def candidate_rows(rels, services, current: dict | None = None) -> list[list[str]]:
    """One row per healthy image set: the --to that selects it, when, images, evidence, note."""
    cands = plan.healthy_sets(rels, services)
    ids = record_cmd.image_ids(current) if current is not None else None
    return [[c.release or "-", c.when.replace("+00:00", "Z"), describe_images({k: v for k, v in c.images.items() if k in services}),
             c.source, note] for c, note in plan.annotate(cands, ids, services)]


def no_target_error(s: Session, problem: plan.NoTarget, rels, current: dict | None = None) -> DeployError:
    if problem.matches:
        listing = ["releases whose id starts with that prefix:", *problem.matches]
    else:
        rows = [f"{r[0]}  {r[1]}  {r[2]}  ({r[3]}{'; ' + r[4] if r[4] else ''})"
                for r in candidate_rows(rels, s.settings.services, current)]
        listing = ["known healthy image sets, newest first (release = what --to takes):",
                   *(rows or ["(the release record has no healthy release yet)"])]
    return DeployError(
        f"no valid rollback target: {problem.why}", output=listing,
        step="rollback", code=ExitCode.ROLLBACK_FAILED, state=s.describe_state(),
        next_step=f"pick one explicitly: fab -H {s.host} rollback --to <release id | image tag | image id>  (fab history lists releases)")


def resolve_target(s: Session, to: str, current: dict) -> tuple[dict, str]:
    """(service -> {ref, id, digests}, description) for --to, or the bare-rollback target."""
    st = s.settings
    rels = load_releases(s, to)
    own = s.recorder.release if s.recorder else ""
    try:
        if not to:
            target = plan.bare_target(rels, record_cmd.image_ids(current), st.services)
        else:            # a prefix never matches this run's own (incomplete) release
            target = plan.release_target([r for r in rels if r.id != own], to, st.services)
    except plan.NoTarget as problem:
        raise no_target_error(s, problem, rels, current) from None
    if target:
        return dict(target.images), target.source
    return image_target(s, to, current, rels)


def image_target(s: Session, to: str, current: dict, rels) -> tuple[dict, str]:
    """--to an image for the backend: a tag of its current repository, a full reference, or an image ID."""
    st = s.settings
    backend = st.backend_service
    cur = current.get(backend)
    if not cur:
        raise no_target_error(s, plan.NoTarget(f"no running {backend} container to take the image reference from"), rels, current)
    if re.fullmatch(r"(sha256:)?[0-9a-f]{12,64}", to) or "/" in to or ":" in to:
        ref = to
    else:
        repo = cur["ref"].rsplit(":", 1)[0] if ":" in cur["ref"].rsplit("/", 1)[-1] else cur["ref"]
        ref = f"{repo}:{to}"
    try:
        docker_cmd.check_image(ref)
    except UnsafeValue as bad:
        raise DeployError(f"--to {to!r} does not make a valid image reference for {backend}: {bad}", step="rollback",
                          code=ExitCode.CONFIG, state=s.describe_state(),
                          next_step=f"fab -H {s.host} history lists releases; --to takes {plan.TO_ACCEPTS}") from None
    infos = docker_cmd.parse_image_inspect(s.run(docker_cmd.image_inspect([ref])).stdout)
    if not infos and not ref.startswith("sha256:") and not re.fullmatch(r"[0-9a-f]{12,64}", ref):
        try:
            s.run(docker_cmd.pull(ref), timeout=st.pull_timeout, mutating=True)
        except CommandFailed as failed:
            raise DeployError.from_command(failed, f"image {ref} is not on the host and cannot be pulled",
                                           step="rollback", code=ExitCode.ROLLBACK_FAILED, state=s.describe_state(),
                                           next_step=f"check the tag exists in the registry; fab -H {s.host} history lists known releases") from None
        infos = docker_cmd.parse_image_inspect(s.run(docker_cmd.image_inspect([ref])).stdout)
    if not infos:
        raise no_target_error(s, plan.NoTarget(f"image {to} is not on the host"), rels, current)
    return {backend: {"ref": cur["ref"], "id": infos[0].id, "digests": list(infos[0].digests)}}, f"image {ref}"


def restore(s: Session, target: dict, *, step: str) -> dict:
    """Point each service's image reference at the target image ID and recreate it; wait healthy.
    Returns the images running afterwards."""
    st = s.settings
    states = containers(s, st.services)
    current = images_of(s, states, st.services)
    running = {c.service for c in states if c.status == "running" and c.health in (None, "healthy", "starting")}
    changes = []          # services whose image must change (retag, then recreate)
    restart = []          # services on the right image whose container is stopped or unhealthy
    for svc in st.services:
        want = target.get(svc)
        if not want or not want.get("id"):
            continue
        have = current.get(svc) or {}
        if have.get("id") != want["id"]:
            changes.append((svc, want, have.get("ref") or want.get("ref")))
        elif svc not in running:
            restart.append(svc)
    if not changes and not restart:
        ui.say("      every service already runs the target image")
        return current
    present = {i.id for i in docker_cmd.parse_image_inspect(s.run(docker_cmd.image_inspect([w["id"] for _, w, _ in changes])).stdout)} \
        if changes else set()
    for svc, want, _ in changes:
        if want["id"] in present:
            continue
        digests = want.get("digests") or []
        if not digests:
            raise DeployError(f"the target image {docker_cmd.short_image_id(want['id'])} of {svc} is no longer on the host and has no recorded digest to pull it back",
                              step=step, code=ExitCode.ROLLBACK_FAILED, state=s.describe_state(),
                              next_step=f"roll back to an image tag that is in the registry: fab -H {s.host} rollback --to <tag>")
        try:
            s.run(docker_cmd.pull(digests[0]), timeout=st.pull_timeout, mutating=True)
        except CommandFailed as failed:
            raise DeployError.from_command(failed, f"pulling {svc}'s target image back by digest failed", step=step,
                                           code=ExitCode.ROLLBACK_FAILED, state=s.describe_state(),
                                           next_step="check the registry, or roll back with --to <tag>") from None
    for svc, want, ref in changes:
        ui.say(f"      {svc}: {ref} -> image {docker_cmd.short_image_id(want['id'])}")
        s.run(docker_cmd.tag(want["id"], ref), mutating=True)
    names = [svc for svc, _, _ in changes] + restart
    if restart:
        ui.say(f"      {', '.join(restart)}: on the target image but not running and healthy: recreating")
    up(s, names, no_deps=True, step=step)
    wait_ready(s, names, st.health_timeout, what="the rolled-back services did not become healthy", step=step,
                        next_step=f"escalate now; fab -H {s.host} history lists other healthy releases: fab -H {s.host} rollback --to <release>")
    check = wait_http(s, st.health_url, st.health_timeout, step=step)
    after = images_of(s, containers(s, st.services), st.services)
    s.facts["version"] = check.version
    return after


def rollback_step(s: Session, to: str = "") -> dict:
    st = s.settings
    current = s.facts.get("images_before") or images_of(s, containers(s, st.services), st.services)
    with s.timed("rollback", "find target"):
        target, source = resolve_target(s, to, current)
    ui.say(f"      target: {describe_images({k: v for k, v in target.items() if k in st.services})} ({source})")
    s.facts["serving"] = f"rolling back from {describe_images(current)}"
    with s.timed("rollback", "restore"):
        after = restore(s, target, step="rollback")
    s.facts["serving"] = f"serving the rollback target {describe_images(after)}" + (f", version {s.facts['version']}" if s.facts.get("version") else "")
    return after


def check_options(to="", **_) -> list[str]:
    """Checked before any SSH connection (a hostile --to never reaches the host)."""
    problem = plan.check_reference(to)
    return [problem] if problem else []


@operator_task(help={"to": "release id or unique prefix (fab history): the images that release left serving healthily; "
                           "or an image tag (e.g. v1) or image ID. Default: one step back, the newest healthy image set "
                           "that differs from what runs now and that no later rollback moved away from",
                     "json": "print the release record as JSON on stdout"}, check=check_options)
def rollback(s: Session, to="", json=False):
    """Rollback Procedure: one step back to the previous healthy images (or --to REF); wait healthy, smoke."""
    from tasks.deploy import run_flow
    run_flow(s, steps=("rollback", "verify"), kind="rollback", to=to, json_out=json)
