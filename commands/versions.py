"""Versions (``fab deploy --version TAG``): the tag's shape, and the .env edit that hands it to Compose.

The tag reaches Compose through one variable (``IMAGE_TAG_VARIABLE``) in the app dir's ``.env``, the
file an operator's own ``docker compose`` reads too, so the tool and the operator see one version.
"""
from __future__ import annotations

from commands.shell import q
from config.validators import check_tag, check_variable

__all__ = ["check_tag", "check_variable", "parse_value", "read_variable_command", "set_variable_command"]


def read_variable_command(app_dir: str, variable: str) -> str:
    """Print the variable's raw value in the .env (empty if absent); only that line is read, never the
    file. ``export VAR=`` counts too: Compose reads it as ``VAR=``. :func:`parse_value` unquotes it."""
    check_variable(variable)
    return f"sed -n -E {q('s/^(export[[:space:]]+)?' + variable + '=//p')} {q(app_dir + '/.env')} 2>/dev/null | tail -n 1"


def parse_value(stdout: str) -> str:
    """The value as Compose reads it from :func:`read_variable_command`'s output: without the quotes
    (``"v1"``, ``'v1'``), a trailing `` # comment`` and the CR of a CRLF file. Without this a quoted
    value is not a tag, and putting it back on a rollback failed."""
    value = stdout.strip()
    if len(value) >= 2 and value[0] in "\"'" and value[-1] == value[0]:
        return value[1:-1]
    return value.split(" #", 1)[0].split("\t#", 1)[0].strip()


def set_variable_command(app_dir: str, variable: str, tag: str) -> str:
    """Set ``variable=tag`` in the app dir's .env atomically: a temp file in the same dir (a copy, so
    it keeps the mode), every other line as it was, the one line replaced or appended, then ``mv``.
    An ``export VAR=`` line is that line too (Compose reads it): appending after it would leave
    two definitions, and which one Compose takes would decide what runs. (The name is a checked
    variable name, so it is safe inside the awk regex.)
    A failed step removes the temp file and leaves .env untouched; the file is never printed. A
    symlinked .env (to a file config management owns) is edited where it points: ``mv`` onto the
    link itself would replace it with a copy, and later edits of the real file would not count."""
    check_variable(variable)
    check_tag(tag)
    awk = ('$0 ~ "^(export[ \\t]+)?" v "=" { if (!done) print v "=" t; done = 1; next } { print } '
           'END { if (!done) print v "=" t }')
    return (f"cd {q(app_dir)} && touch .env && f=$(readlink -f .env) && tmp=$(mktemp \"$f.XXXXXX\") && "
            f"{{ cp -p \"$f\" \"$tmp\" && awk -v v={q(variable)} -v t={q(tag)} {q(awk)} \"$f\" > \"$tmp\" "
            f"&& mv \"$tmp\" \"$f\" || {{ rm -f \"$tmp\"; exit 1; }}; }}")


def unset_variable_command(app_dir: str, variable: str) -> str:
    """Remove the variable's line from the .env (it was absent before a --version deploy), atomically
    like :func:`set_variable_command`; a missing .env stays missing."""
    check_variable(variable)
    awk = '$0 !~ "^(export[ \\t]+)?" v "="'
    return (f"cd {q(app_dir)} && if [ -e .env ]; then f=$(readlink -f .env) && tmp=$(mktemp \"$f.XXXXXX\") && "
            f"{{ cp -p \"$f\" \"$tmp\" && awk -v v={q(variable)} {q(awk)} \"$f\" > \"$tmp\" "
            f"&& mv \"$tmp\" \"$f\" || {{ rm -f \"$tmp\"; exit 1; }}; }}; fi")


def parse_images(stdout: str) -> set[str]:
    """``compose config --images``: one image reference per line."""
    return {line.strip() for line in stdout.splitlines() if line.strip()}


def refs_using(images_with_tag: set[str], images_with_other: set[str]) -> list[str]:
    """The references that change with the variable's value (``compose config --images`` run once
    with the tag and once with another value): the images that use the variable, with the tag."""
    return sorted(images_with_tag - images_with_other)


def other_value(tag: str) -> str:
    """A second, different value for :func:`refs_using`."""
    return "x" if tag != "x" else "y"


def split_ref(ref: str) -> tuple[str, str]:
    """``registry:5000/app/backend:v2`` -> (``registry:5000/app/backend``, ``v2``); no tag -> ("", "")
    tag for a digest or an image ID."""
    if "@" in ref:
        return ref, ""
    repo, colon, tag = ref.rpartition(":")
    if not colon or "/" in tag:
        return ref, ""
    return repo, tag


def restore_value(target: dict, current: dict, services, value: str) -> str | None:
    """The value to give the variable so that Compose runs ``target`` again, or None to re-point the
    tags at image IDs as before (docs/versions.md). It applies when the .env sets the variable
    (``value``), every deployed service whose running reference carries that value as its tag is
    recorded in ``target`` under the same repository with another tag, and they agree on that tag."""
    if not value:
        return None
    tags = set()
    for svc in services:
        want, have = (target.get(svc) or {}).get("ref", ""), (current.get(svc) or {}).get("ref", "")
        have_repo, have_tag = split_ref(have)
        if have_tag != value:
            continue
        want_repo, want_tag = split_ref(want)
        if want_repo != have_repo or not want_tag:
            return None
        tags.add(want_tag)
    if len(tags) != 1 or value in tags:
        return None
    return tags.pop()
