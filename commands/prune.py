"""``fab prune``: which images of the deployed services may go, and the commands that list and
remove them. Never removed: an image a container uses (running or stopped), an image any rollback
candidate needs (every healthy image set in the release record), and the ``keep`` newest other
images of each repository. Images of other repositories (postgres, redis, ...) are never touched.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from commands.shell import check_image, join

# Every image with its size and creation time, one JSON object per line.
_FORMAT = ('{"id":{{json .Id}},"size":{{.Size}},"created":{{json .Created}},'
           '"tags":{{json .RepoTags}},"digests":{{json .RepoDigests}}}')
LIST_IMAGES = ("docker image ls -q --no-trunc | sort -u | xargs -r docker image inspect --format "
               f"'{_FORMAT}'")
# The image ID of every container, stopped ones included: docker refuses to remove those anyway.
USED_IMAGES = "docker ps -aq --no-trunc | xargs -r docker inspect --format '{{.Image}}'"


@dataclass(frozen=True)
class Image:
    id: str
    size: int
    created: str
    tags: tuple[str, ...]
    digests: tuple[str, ...]

    @property
    def repositories(self) -> set[str]:
        return {repository(ref) for ref in (*self.tags, *self.digests)}

    @property
    def label(self) -> str:
        return ", ".join(self.tags) or (f"{self.digests[0].split('@')[0]} (untagged)" if self.digests else "(untagged)")


def repository(ref: str) -> str:
    """``127.0.0.1:5000/app/backend:v1`` and ``...backend@sha256:..`` -> ``127.0.0.1:5000/app/backend``."""
    ref = ref.split("@", 1)[0]
    name, _, tag = ref.rpartition(":")
    return name if name and "/" not in tag else ref


def parse_images(stdout: str) -> list[Image]:
    out = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            d = json.loads(line)
            out.append(Image(d.get("id") or "", int(d.get("size") or 0), d.get("created") or "",
                             tuple(d.get("tags") or ()), tuple(d.get("digests") or ())))
    return out


def parse_used(stdout: str) -> set[str]:
    return {line.strip() for line in stdout.splitlines() if line.strip().startswith("sha256:")}


@dataclass(frozen=True)
class Choice:
    remove: list[Image]
    kept: list[tuple[Image, str]]        # (image, why it stays)


def choose(images: Sequence[Image], repos: Iterable[str], used: set[str],
           candidates: Mapping[str, str], keep: int) -> Choice:
    """``candidates``: image ID -> the rollback candidate that needs it. ``keep``: how many of the
    newest other images of each repository stay."""
    repos = set(repos)
    remove: list[Image] = []
    kept: list[tuple[Image, str]] = []
    spare: dict[str, int] = {}
    for img in sorted(images, key=lambda i: i.created, reverse=True):
        mine = img.repositories & repos
        if not mine:
            continue
        if img.id in used:
            kept.append((img, "a container uses it"))
        elif img.id in candidates:
            kept.append((img, f"rollback candidate {candidates[img.id]}"))
        elif any(spare.get(r, 0) < keep for r in mine):
            for r in mine:
                spare[r] = spare.get(r, 0) + 1
            kept.append((img, f"one of the {keep} newest others (--keep)"))
        else:
            remove.append(img)
    return Choice(remove, kept)


def remove(img: Image) -> str:
    """By tag (each tag removed; the last one removes the image, without -f), or by ID when untagged."""
    refs = list(img.tags) or [img.id]
    return "docker image rm -- " + join(check_image(r) for r in refs)

