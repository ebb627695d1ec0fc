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
from tasks import ui
from tasks.base import operator_task
from tasks.errors import CommandFailed, DeployError, ExitCode
from tasks.session import Session
from tasks.services import containers, describe_images, images_of, up, wait_http, wait_ready


def load_releases(s: Session) -> list[record_cmd.Release]:
    text = s.run(record_cmd.read(s.settings.releases_file)).stdout
    return record_cmd.releases(record_cmd.parse(text))


def candidates_table(cands, services) -> list[list[str]]:
    return [[c.release, c.when, c.source, describe_images({k: v for k, v in c.images.items() if k in services})] for c in cands]


def no_target_error(s: Session, why: str, cands) -> DeployError:
    st = s.settings
    rows = candidates_table(cands, st.services)
    listing = [f"{r[0]}  {r[1]}  {r[3]}  ({r[2]})" for r in rows] or ["(the release record has no healthy release yet)"]
    return DeployError(
        f"no valid rollback target: {why}", output=["known healthy image sets, newest first:", *listing],
        step="rollback", code=ExitCode.ROLLBACK_FAILED, state=s.describe_state(),
        next_step=f"pick one explicitly: fab -H {s.host} rollback --to <release id | image tag | image id>  (fab history lists releases)")


def resolve_target(s: Session, to: str, current: dict) -> tuple[dict, str]:
    """(service -> {ref, id, digests}, description) for --to, or the newest valid candidate."""
    st = s.settings
    rels = load_releases(s)
    cands = record_cmd.rollback_candidates(rels, st.services)
    current_ids = record_cmd.image_ids(current)
    if not to:
        target = record_cmd.choose_target(cands, current_ids, st.services)
        if target is None:
            raise no_target_error(s, "every recorded healthy image set is what runs now" if cands else
                                  "no release in the record finished healthy", cands)
        return dict(target.images), f"{target.source}"
    matches = [c for c in cands if c.release.startswith(to)]
    if matches:
        return dict(matches[0].images), matches[0].source
    if any(r.id.startswith(to) for r in rels):
        raise no_target_error(s, f"release {to} never served healthily (only finished-healthy releases are valid targets)", cands)
    # Otherwise an image for the backend: a tag of its current repository, a full reference, or an image ID.
    backend = st.backend_service
    cur = current.get(backend)
    if not cur:
        raise no_target_error(s, f"no running {backend} container to take the image reference from", cands)
    if re.fullmatch(r"(sha256:)?[0-9a-f]{12,64}", to):
        ref = to
    elif "/" in to or ":" in to:
        ref = to
    else:
        repo = cur["ref"].rsplit(":", 1)[0] if ":" in cur["ref"].rsplit("/", 1)[-1] else cur["ref"]
        ref = f"{repo}:{to}"
    docker_cmd.check_image(ref)
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
        raise no_target_error(s, f"image {to} is not on the host", cands)
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


@operator_task(help={"to": "release id (fab history), image tag (e.g. v1) or image ID; default: the newest healthy release that differs from what runs now",
                     "json": "print the release record as JSON on stdout"})
def rollback(s: Session, to="", json=False):
    """Rollback Procedure: back to the images recorded before the last deploy (or --to REF); wait healthy, smoke."""
    from tasks.deploy import run_flow
    run_flow(s, steps=("rollback", "verify"), kind="rollback", to=to, json_out=json)
