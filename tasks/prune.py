"""``fab prune``: free disk by removing old images of the deployed services, never one that a
container uses or a rollback candidate needs (commands/prune.py decides which)."""
from __future__ import annotations

from commands import prune as prune_cmd
from commands import rollback_plan
from commands.docker import human_bytes, short_image_id
from tasks import messages, ui
from tasks.base import operator_task
from tasks.errors import CommandFailed, DeployError
from tasks.hoststate import containers
from tasks.locking import DeployLock
from tasks.rollback import load_releases
from tasks.session import Session


def candidate_images(s: Session) -> dict[str, str]:
    """image ID -> the rollback candidate that needs it (its release id, or when it last served)."""
    needed: dict[str, str] = {}
    for c in rollback_plan.healthy_sets(load_releases(s), s.settings.services):
        for img in c.images.values():
            if (img or {}).get("id"):
                needed.setdefault(img["id"], c.release or f"that served at {c.when}")
    return needed


def app_repositories(s: Session, images: list[prune_cmd.Image]) -> set[str]:
    """The repositories of the deployed services: those of what runs now and of the record's sets."""
    refs = {c.image_ref for c in containers(s, s.settings.services) if c.image_ref}
    for c in rollback_plan.healthy_sets(load_releases(s), s.settings.services):
        refs |= {(img or {}).get("ref", "") for img in c.images.values()} - {""}
    return {prune_cmd.repository(r) for r in refs}


def choose(s: Session, keep: int) -> prune_cmd.Choice:
    images = prune_cmd.parse_images(s.run(prune_cmd.LIST_IMAGES).stdout)
    used = prune_cmd.parse_used(s.run(prune_cmd.USED_IMAGES).stdout)
    return prune_cmd.choose(images, app_repositories(s, images), used, candidate_images(s), keep)


def show(choice: prune_cmd.Choice) -> None:
    rows = [[short_image_id(i.id), i.label, human_bytes(i.size), i.created[:19], why] for i, why in choice.kept]
    rows += [[short_image_id(i.id), i.label, human_bytes(i.size), i.created[:19], "REMOVE"] for i in choice.remove]
    if rows:
        ui.table(rows, ["image", "tags", "size", "created", "kept because / action"])


def check_prune_options(keep="1", **_) -> list[str]:
    text = str(keep).strip()
    if not text.isdigit() or int(text) > 1000:
        return [f"--keep must be a whole number from 0 to 1000, got {keep!r}"]
    return []


@operator_task(check=check_prune_options,
               help={"keep": "how many of the newest other images of each service's repository to keep besides "
                             "those in use and the rollback candidates (0 or more, default 1)",
                     "force": "remove them; without it, only list what would be removed"})
def prune(s: Session, keep="1", force=False):
    """List (with --force: remove) old images of the deployed services; never a rollback's images.

    Under the deploy lock. Never removed: an image a container uses, or one a rollback candidate
    needs (fab history lists them)."""
    keep = int(str(keep).strip())
    with DeployLock(s, "prune", message=f"prune --keep {keep}"):
        choice = choose(s, int(keep))
        show(choice)
        total = sum(i.size for i in choice.remove)
        if not choice.remove:
            ui.say("nothing to remove")
            return
        if not force or s.dry:
            ui.say(f"would remove {len(choice.remove)} image(s), {human_bytes(total)}; "
                   f"remove them with {messages.fab(s.host, f'prune --keep {keep} --force')}")
            return
        failed = remove(s, choice.remove)
    left = {i.id for i in prune_cmd.parse_images(s.run(prune_cmd.LIST_IMAGES).stdout)}
    gone = [i for i in choice.remove if i.id not in left]
    ui.say(f"removed {len(gone)} image(s): " + ", ".join(f"{short_image_id(i.id)} ({i.label})" for i in gone))
    ui.say(f"freed {sum(i.size for i in gone)} bytes ({human_bytes(sum(i.size for i in gone))}; "
           "layers shared with a kept image stay on disk)")
    if failed:
        raise DeployError(f"{len(failed)} image(s) could not be removed", command=failed[0].command,
                          output=failed[0].output, state=f"{len(gone)} image(s) removed; nothing else changed",
                          next_step=messages.fab(s.host, f"prune --keep {keep}") + " to see what is left")


def remove(s: Session, images: list[prune_cmd.Image]) -> list[CommandFailed]:
    failed = []
    for img in images:
        try:
            s.run(prune_cmd.remove(img), mutating=True)
        except CommandFailed as exc:
            failed.append(exc)
    return failed
