"""Rollback Procedure, the steps (the `rollback` task: tasks/rollback.py): put the deployed
services back on images known to have served healthily.

Which images: decided by commands/rollback_plan.py from the release record (one step back, or
``--to`` a release, a tag or an image ID). How they are put back (``docker tag`` of the recorded
image ID, then ``up -d --no-deps``; runbook note 2): tasks/restore.py.
"""
from __future__ import annotations

from commands import docker as docker_cmd
from commands import record as record_cmd
from commands import rollback_plan as plan
from commands.shell import UnsafeValue
from tasks import messages, ui
from tasks.errors import CommandFailed, DeployError, ExitCode
from tasks.hoststate import containers, describe_images, images_of
from tasks.restore import restore
from tasks.session import Session
from tasks.steps import RunOptions, Step
from tasks.verify import verify_step


def read_record(s: Session, to: str = "") -> record_cmd.RecordRead:
    """The record's last lines; with an explicit ``--to`` that could be a release id, also every
    line of that release anywhere in the file. Lines that fail the schema are skipped, with one
    warning per run."""
    path = s.settings.releases_file
    got = record_cmd.parse_read(s.run(record_cmd.read(path)).stdout)
    if to and record_cmd.RELEASE_ID.match(to):
        got = record_cmd.merge(got, record_cmd.parse_search(s.run(record_cmd.search(path, to)).stdout))
    if got.unreadable:
        s.state.record_unreadable = True
        if not s.state.record_warned:
            ui.warn(f"release record {path} exists but cannot be read by the SSH user (not a regular file, or no "
                    f"read permission): the release history and the rollback targets are unknown, not empty")
    elif got.skipped and not s.state.record_warned:
        ui.warn(got.warning(path))
    s.state.record_warned = s.state.record_warned or got.unreadable or bool(got.skipped)
    return got


def load_releases(s: Session, to: str = "") -> list[record_cmd.Release]:
    rels = record_cmd.releases(read_record(s, to).lines)
    odd = [r for r in rels if r.problem]
    if odd and not s.state.inconsistent_warned:
        s.state.inconsistent_warned = True
        shown = "; ".join(f"{r.id}: {r.problem}" for r in odd[:5]) + (f"; and {len(odd) - 5} more" if len(odd) > 5 else "")
        ui.warn(f"release record {s.settings.releases_file}: {len(odd)} release(s) whose events do not add up "
                f"are never used as rollback targets ({shown})")
    return rels


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
    if s.state.record_unreadable:
        listing = [f"the release record {s.settings.releases_file} cannot be read by the SSH user: fix its owner "
                   "or mode, or name the image with --to <tag | image id>"]
    return DeployError(
        f"no valid rollback target: {problem.why}", output=listing,
        step="rollback", code=ExitCode.ROLLBACK_FAILED, state=s.describe_state(),
        next_step=f"pick one explicitly: {messages.rollback_to(s.host, '<release id | image tag | image id>')}  (fab history lists releases)")


def resolve_target(s: Session, to: str, current: dict) -> tuple[dict, str]:
    """(service -> {ref, id, digests}, description) for --to, or the bare-rollback target."""
    st = s.settings
    rels = load_releases(s, to)
    own = s.recorder.release
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
    ref = plan.image_reference(to, cur["ref"])
    try:
        docker_cmd.check_image(ref)
    except UnsafeValue as bad:
        raise DeployError(f"--to {to!r} does not make a valid image reference for {backend}: {bad}", step="rollback",
                          code=ExitCode.CONFIG, state=s.describe_state(),
                          next_step=f"{messages.fab(s.host, 'history')} lists releases; --to takes {plan.TO_ACCEPTS}") from None
    infos = docker_cmd.parse_image_inspect(s.run(docker_cmd.image_inspect([ref])).stdout)
    if not infos and not plan.is_image_id(ref):
        try:
            s.run(docker_cmd.pull(ref), timeout=st.pull_timeout, mutating=True)
        except CommandFailed as failed:
            raise DeployError.from_command(failed, f"image {ref} is not on the host and cannot be pulled",
                                           step="rollback", code=ExitCode.ROLLBACK_FAILED, state=s.describe_state(),
                                           next_step=f"check the tag exists in the registry; {messages.fab(s.host, 'history')} lists known releases") from None
        infos = docker_cmd.parse_image_inspect(s.run(docker_cmd.image_inspect([ref])).stdout)
    if not infos:
        raise no_target_error(s, plan.NoTarget(f"image {to} is not on the host"), rels, current)
    return {backend: {"ref": cur["ref"], "id": infos[0].id, "digests": list(infos[0].digests)}}, f"image {ref}"


def current_images(s: Session) -> dict:
    st = s.settings
    return s.state.before.images if s.state.before else images_of(s, containers(s, st.services), st.services)


def rollback_step(s: Session, opts: RunOptions) -> dict:
    current = current_images(s)
    with s.timed("rollback", "find target"):
        target, source = resolve_target(s, opts.to, current)
    return switch_to(s, current, target, source)


def switch_to(s: Session, current: dict, target: dict, source: str) -> dict:
    """Put ``target`` back (the images are tagged and brought up; tasks/restore.py)."""
    st = s.settings
    ui.say(f"      target: {describe_images({k: v for k, v in target.items() if k in st.services})} ({source})")
    s.state.serving = f"rolling back from {describe_images(current)}"
    with s.timed("rollback", "restore"):
        after = restore(s, target, step="rollback")
    s.state.serving = f"serving the rollback target {describe_images(after)}" + (f", version {s.state.version}" if s.state.version else "")
    return after


ROLLBACK_STEPS = (
    Step("rollback", rollback_step, switches=True),
    Step("verify", verify_step, recoverable=True),
)


def planned_steps(target: dict, source: str) -> tuple[Step, ...]:
    """A fleet rollback's steps on one host, to the target the fleet chose (tasks/fleetrollback.py)."""
    def run(s: Session, opts: RunOptions) -> dict:
        return switch_to(s, current_images(s), target, source)
    return (Step("rollback", run, switches=True), ROLLBACK_STEPS[1])
