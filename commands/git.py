"""Git on the host, always as ``git -C APP_DIR ...`` (no ``cd()``: it breaks under sudo, see DESIGN)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from commands.shell import UnsafeValue, check_path, check_ref, check_remote, q


def _git(app_dir: str, args: str) -> str:
    return f"git -C {q(check_path(app_dir, 'APP_DIR'))} {args}"


def state(app_dir: str) -> str:
    """HEAD, branch and tracked changes in one round trip.

    Untracked files are ignored on purpose: ``.env.production`` and the release record live in
    the checkout untracked; only edits to tracked files make a pull unsafe (runbook note 6).
    """
    return (
        _git(app_dir, "rev-parse HEAD") + " && "
        + _git(app_dir, "rev-parse --abbrev-ref HEAD") + " && "
        + _git(app_dir, "status --porcelain --untracked-files=no")
    )


@dataclass(frozen=True)
class RepoState:
    head: str
    branch: str
    dirty: tuple[str, ...]


def parse_state(stdout: str) -> RepoState:
    lines = stdout.splitlines()
    if len(lines) < 2:
        raise ValueError(f"unexpected git output: {stdout!r}")
    return RepoState(head=lines[0].strip(), branch=lines[1].strip(),
                     dirty=tuple(l for l in lines[2:] if l.strip()))


def fetch(app_dir: str, remote: str, branch: str) -> str:
    return _git(app_dir, f"fetch --quiet {q(check_remote(remote))} {q(check_ref(branch))}")


def remote_ref(remote: str, branch: str) -> str:
    return f"{check_remote(remote)}/{check_ref(branch)}"


def ahead_behind(app_dir: str, ref: str) -> str:
    """``<behind> <ahead>``: commits only on the remote, commits only local."""
    return _git(app_dir, f"rev-list --left-right --count {q(ref + '...HEAD')}")


def parse_ahead_behind(stdout: str) -> tuple[int, int]:
    parts = stdout.split()
    if len(parts) != 2:
        raise ValueError(f"unexpected rev-list output: {stdout!r}")
    return int(parts[0]), int(parts[1])


def merge_ff_only(app_dir: str, ref: str) -> str:
    """The safe ``git pull``: fast-forward only, or fail without touching the tree."""
    return _git(app_dir, f"merge --ff-only --quiet {q(ref)}")


def log_range(app_dir: str, old: str, new: str, limit: int = 50) -> str:
    return _git(app_dir, f"log --oneline --no-decorate -n {int(limit)} {q(old + '..' + new)}")


def unchanged(app_dir: str, ref: str, pathspecs: list[str]) -> str:
    """Prints the commit ``ref`` names now (:func:`parse_commit`), then exits 0 when no file
    matching ``pathspecs`` differs between HEAD and that commit, non-zero when one does. The
    commit, not the ref: a later ``git fetch`` may move the ref to a commit not compared."""
    commit = _git(app_dir, f"rev-parse --verify --quiet {q(check_ref(ref) + '^{commit}')}")
    diff = _git(app_dir, 'diff --quiet HEAD "$c" -- ' + " ".join(q(p) for p in pathspecs))
    return f'c=$({commit}) && echo "$c" && {diff}'


def head(app_dir: str) -> str:
    """The checked-out commit alone (after a merge: no `git status`, which refreshes the index)."""
    return _git(app_dir, "rev-parse HEAD")


def parse_commit(stdout: str) -> str:
    """The commit :func:`unchanged` printed, or "" when there is none."""
    first = stdout.strip().split("\n")[0].strip()
    return first if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", first) else ""


def show_file(app_dir: str, ref: str, path: str) -> str:
    """File contents at a ref; prints nothing (exit 0) when the file does not exist there."""
    check_path(path, "path", absolute=False)
    return _git(app_dir, f"show {q(ref + ':' + path)} 2>/dev/null || true")


def migration_headers(app_dir: str, ref: str, migrations_path: str) -> str:
    """``ref:path:line`` for every revision/down_revision line of the migrations at ``ref``."""
    check_path(migrations_path, "MIGRATIONS_PATH", absolute=False)
    return _git(app_dir, "grep -E " + q(r"^(revision|down_revision)\s*(:[^=]*)?=") + f" {q(ref)} -- {q(migrations_path)} || true")


_HEADER = re.compile(r"^(?:[^:]+:)?(?P<path>[^:]+):(?P<key>revision|down_revision)\s*(?::[^=]*)?=\s*(?P<value>.+)$")
_QUOTED = re.compile(r"""['"]([^'"]+)['"]""")


@dataclass(frozen=True)
class Migration:
    revision: str
    down_revisions: tuple[str, ...]
    path: str


def parse_migration_headers(stdout: str) -> list[Migration]:
    """Alembic revision graph from ``git grep`` of the migration files' header lines."""
    per_file: dict[str, dict[str, tuple[str, ...]]] = {}
    for line in stdout.splitlines():
        m = _HEADER.match(line.strip())
        if not m:
            continue
        values = tuple(_QUOTED.findall(m.group("value")))
        per_file.setdefault(m.group("path"), {})[m.group("key")] = values
    out = []
    for path, keys in sorted(per_file.items()):
        rev = keys.get("revision") or ()
        if rev:
            out.append(Migration(rev[0], keys.get("down_revision") or (), path))
    return out


SOURCE_MARKER = "@@ai-doc-qa-source@@"
NO_SOURCE_MARKER = "@@ai-doc-qa-no-source@@"


def show_files(app_dir: str, ref: str, paths: list[str]) -> str:
    """Several files at ``ref`` in one round trip (the pending migrations' source), each after a
    marker line naming it; a path missing at ``ref`` is named after NO_SOURCE_MARKER instead. The
    ``echo`` after each file ends a last line that has no newline, so the next marker starts a line."""
    for p in paths:
        check_path(p, "path", absolute=False)
    names = " ".join(q(p) for p in paths)
    return (f"for f in {names}; do echo {q(SOURCE_MARKER)}\"$f\"; "
            + _git(app_dir, f"show {q(ref + ':')}\"$f\" 2>/dev/null") + f" || echo {q(NO_SOURCE_MARKER)}\"$f\"; echo; done")


def quotable_paths(paths: list[str]) -> list[str]:
    """The paths :func:`show_files` accepts (no quotes, ``$``, backslashes...): a revision file with
    such a name in the repo is left unread, so the checklist asks a person to review it."""
    out = []
    for p in paths:
        try:
            out.append(check_path(p, "path", absolute=False))
        except UnsafeValue:
            pass
    return out


def parse_show_files(stdout: str, paths: list[str]) -> dict[str, str]:
    """{path: text} of what :func:`show_files` printed for ``paths`` (missing ones are left out).

    A marker line counts only when it names the next path asked for, in order: a file whose text
    happens to hold a marker line cannot pass another file's text off as its own."""
    expected = list(paths)
    chunks: dict[str, list[str]] = {}
    current = None
    for line in stdout.splitlines():
        if expected and line == SOURCE_MARKER + expected[0]:
            current = expected.pop(0)
            chunks[current] = []
        elif current is not None and line == NO_SOURCE_MARKER + current and not chunks[current]:
            del chunks[current]
            current = None
        elif current is not None:
            chunks[current].append(line)
    return {p: _without_echo(lines) for p, lines in chunks.items()}


def _without_echo(lines: list[str]) -> str:
    """A file's text without the empty line the builder's ``echo`` added after it."""
    if lines and lines[-1] == "":
        lines = lines[:-1]
    return "".join(line + "\n" for line in lines)
