"""Reading a file on the host: one builder, used by the tasks and printed by ``fab plan``."""
from __future__ import annotations

from commands.shell import check_path, q

MISSING = 3          # exit code of read_file when the file does not exist


def app_file(app_dir: str, name: str) -> str:
    """A path relative to the app directory (an absolute one is kept)."""
    return name if name.startswith("/") else f"{app_dir.rstrip('/')}/{name}"


def read_file(path: str) -> str:
    """The file's content, or exit code ``MISSING`` if it does not exist (not an error to the caller)."""
    check_path(path, "file")
    return f"if [ -f {q(path)} ]; then cat -- {q(path)}; else exit {MISSING}; fi"


FILE_MARKER = "@@ai-doc-qa-file@@"
UNREADABLE_MARKER = "@@ai-doc-qa-unreadable@@"
MISSING_MARKER = "@@ai-doc-qa-missing@@"


def read_files(paths: list[str]) -> str:
    """Several files in one round trip, each after a marker line naming it; a file that exists but
    cannot be read (or is not a regular file) is named after UNREADABLE_MARKER, a missing one after
    MISSING_MARKER."""
    for p in paths:
        check_path(p, "file")
    names = " ".join(q(p) for p in paths)
    return (f"for f in {names}; do echo {q(FILE_MARKER)}\"$f\"; "
            f"if [ -f \"$f\" ]; then cat -- \"$f\" || {{ echo; echo {q(UNREADABLE_MARKER)}\"$f\"; }}; "
            f"elif [ -e \"$f\" ]; then echo {q(UNREADABLE_MARKER)}\"$f\"; "
            f"else echo {q(MISSING_MARKER)}\"$f\"; fi; echo; done")


def parse_files(stdout: str) -> tuple[dict[str, str], list[str]]:
    """{path: text} of the files read_files printed (a missing file is left out), and the paths that
    exist but could not be read."""
    current = None
    chunks: dict[str, list[str]] = {}
    unreadable = []
    for line in stdout.splitlines():
        if line.startswith(FILE_MARKER):
            current = line[len(FILE_MARKER):]
            chunks[current] = []
        elif line.startswith(UNREADABLE_MARKER):
            unreadable.append(line[len(UNREADABLE_MARKER):])
        elif line.startswith(MISSING_MARKER):
            chunks.pop(line[len(MISSING_MARKER):], None)
            current = None
        elif current is not None:
            chunks[current].append(line)
    return {p: "\n".join(t) for p, t in chunks.items()}, unreadable


def unreadable_reasons(paths: list[str], stderr: str) -> dict[str, str]:
    """Why each path could not be read: cat says ``cat: PATH: Permission denied``; a path that is
    not a regular file gets no message."""
    return {p: next((line.rsplit(": ", 1)[-1].strip() for line in stderr.splitlines() if p in line),
                    "not a regular file") for p in paths}
