"""The release record's schema: what each line must hold before it is folded into releases
(:mod:`commands.record`). A torn, corrupt or hostile line is skipped and reported, never folded: it
must not crash ``history`` nor steer ``rollback``."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable

from commands.shell import UnsafeValue, check_image
from config.validators import check_tag, check_variable

SCHEMA_VERSION = 1
OUTCOMES = ("success", "failed", "rolled_back", "aborted")

# new_release_id() makes "20261127T223704Z-d996"; the pattern is wider (any id this tool could
# have written), but excludes everything a shell, grep or terminal would read specially.
RELEASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_IMAGE_ID = re.compile(r"^(?:sha256:)?[0-9a-f]{12,64}$")
_SERVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass
class RecordRead:
    """The lines that passed the schema (with their line numbers in the file, 0 when unknown) and
    the ones that did not, as (line number, reason); a reason names fields, never the line's values."""
    lines: list[dict] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    unreadable: bool = False          # the file exists but could not be read: history is unknown, not empty

    def warning(self, path: str, shown: int = 5) -> str:
        if not self.skipped:
            return ""
        where = "; ".join(f"line {n}: {why}" if n else why for n, why in self.skipped[:shown])
        more = f"; and {len(self.skipped) - shown} more" if len(self.skipped) > shown else ""
        return (f"release record {path}: skipped {len(self.skipped)} line(s) that do not match the record's "
                f"schema ({where}{more}); they are never used for history or as a rollback target")


def _is_str(v) -> bool:
    return isinstance(v, str)


def _is_opt_str(v) -> bool:
    return v is None or isinstance(v, str)


def _is_bool(v) -> bool:
    return isinstance(v, bool)            # "false" (a string) is not false: it must never read as healthy


MAX_SECONDS = 10 ** 9            # a step or run "seconds" beyond ~30 years is not a duration


def _is_seconds(v) -> bool:
    # An int is never converted to a float here: json.loads gives 10**400 for "1000...0", and
    # math.isfinite() of it raises OverflowError; a float of that size would be no use anyway.
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return 0 <= v <= MAX_SECONDS            # nan and inf compare False; no float() of an int


def _is_dict(v) -> bool:
    return isinstance(v, dict)


def _is_str_list(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _is_revisions(v) -> bool:
    """An alembic revision, or the list of them (one per head)."""
    return v is None or isinstance(v, str) or _is_str_list(v)


def _checks(check: Callable[[str], str], allow_empty: bool = False) -> Callable[[object], bool]:
    def ok(v) -> bool:
        if allow_empty and v in ("", None):
            return True
        try:
            return isinstance(v, str) and bool(check(v))
        except UnsafeValue:
            return False
    return ok


def _is_image_ref(v) -> bool:
    try:
        return isinstance(v, str) and bool(check_image(v))
    except UnsafeValue:
        return False


def _is_image(v) -> bool:
    return (isinstance(v, dict) and isinstance(v.get("id"), str) and bool(_IMAGE_ID.match(v["id"]))
            and ("ref" not in v or _is_image_ref(v["ref"]))
            and isinstance(v.get("digests", []), list) and all(_is_image_ref(d) for d in v.get("digests", [])))


def _is_images(v) -> bool:
    """service -> {ref, id, digests}, as services.images_of() writes it."""
    return isinstance(v, dict) and all(isinstance(k, str) and _SERVICE.match(k) and _is_image(i) for k, i in v.items())


# event -> {field: (required, check, what it must be)}. Only what the fold reads is checked.
SCHEMA: dict[str, dict[str, tuple[bool, Callable[[object], bool], str]]] = {
    "start": {"kind": (False, _is_str, "a string"), "stage": (False, _is_str, "a string"),
              "host": (False, _is_str, "a string"), "who": (False, _is_str, "a string"),
              "git_before": (False, _is_opt_str, "a string"), "note": (False, _is_opt_str, "a string"),
              "message": (False, _is_opt_str, "a string"), "steps": (False, _is_str_list, "a list of strings")},
    "images_before": {"images": (True, _is_images, "an object of service -> {ref, id, digests}"),
                      "healthy": (True, _is_bool, "true or false"), "version": (False, _is_opt_str, "a string")},
    "git": {"before": (False, _is_opt_str, "a string"), "after": (False, _is_opt_str, "a string")},
    "step": {"step": (True, _is_str, "a string"), "sub": (False, _is_opt_str, "a string or null"),
             "seconds": (True, _is_seconds, "a number of seconds"), "ok": (False, _is_bool, "true or false")},
    "migrations": {"before": (False, _is_revisions, "a revision or a list of them"),
                   "after": (False, _is_revisions, "a revision or a list of them")},
    "end": {"outcome": (True, lambda v: v in OUTCOMES, "one of " + ", ".join(OUTCOMES)),
            "seconds": (False, _is_seconds, "a number of seconds"), "bottleneck": (False, _is_opt_str, "a string"),
            "error": (False, _is_dict, "an object"), "serving": (False, _is_opt_str, "a string")},
    # fab deploy --version (docs/versions.md): the tag, and the variable's value before ("" = unset).
    "version": {"variable": (True, _checks(check_variable), "a variable name"), "tag": (True, _checks(check_tag), "a docker tag"),
                "previous": (False, _checks(check_tag, allow_empty=True), "a docker tag or empty")},
    "version_restored": {"variable": (True, _checks(check_variable), "a variable name"),
                         "tag": (True, _checks(check_tag, allow_empty=True), "a docker tag or empty")},
}
SCHEMA["images_after"] = SCHEMA["images_before"]


def validate(d: object) -> str | None:
    """Why this record line does not match the schema, or None. Events this version does not
    fold (downtime, lock_takeover, newer ones) only need the common fields."""
    if not isinstance(d, dict):
        return "not a JSON object"
    if d.get("v") != SCHEMA_VERSION or isinstance(d.get("v"), bool):
        return f"schema version (v) is not {SCHEMA_VERSION}"
    if not isinstance(d.get("release"), str) or not RELEASE_ID.match(d["release"]):
        return "release is not a release id"
    if not isinstance(d.get("event"), str) or not isinstance(d.get("at", ""), str):
        return "event or at is not a string"
    event = d["event"]
    for name, (required, ok, what) in SCHEMA.get(event, {}).items():
        if name not in d:
            if required:
                return f"{event} line without {name}"
        elif not ok(d[name]):
            return f"{event} line: {name} is not {what}"
    return None


def check(raws: Iterable[tuple[int, str]]) -> RecordRead:
    """Numbered raw lines -> the valid ones and the skipped ones. Blank lines are ignored."""
    out = RecordRead()
    for number, raw in raws:
        raw = raw.strip()
        if not raw:
            continue
        try:
            d = json.loads(raw)
        except (ValueError, RecursionError):
            out.skipped.append((number, "not valid JSON (a torn or corrupt line)"))
            continue
        why = validate(d)
        if why:
            out.skipped.append((number, why))
        else:
            out.lines.append(d)
            out.numbers.append(number)
    return out
