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
