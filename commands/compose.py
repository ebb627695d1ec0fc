"""Docker Compose commands for both generations: v2 (``docker compose``) and v1 (``docker-compose``).

Only the subcommands and flags that both generations accept are used; state is read with
``docker inspect`` on the IDs from ``ps -q`` because ``ps --format json`` exists only in v2
(runbook note 8).
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from commands.shell import cd, check_path, check_service, join, q
from config.validators import check_tag, check_variable

# The compose files and a tracked .env: what names the images. When none differs at the incoming
# release, the images `pull` fetches after `git pull` are the ones they name now (tasks/services.py).
IMAGE_NAMING_FILES = ["*.yml", "*.yaml", ".env"]


def image_naming_files(compose_file: str) -> list[str]:
    """:data:`IMAGE_NAMING_FILES` and what they miss of this stage's: a COMPOSE_FILE not named
    ``*.yml``/``*.yaml``, and the ``.env`` of its directory (Compose reads the .env of its project
    directory, the compose file's, not only the app dir's)."""
    check_path(compose_file, "COMPOSE_FILE", absolute=False)
    extra = [] if compose_file.endswith((".yml", ".yaml")) else [compose_file]
    folder = compose_file.rpartition("/")[0]
    return [*IMAGE_NAMING_FILES, *extra, *([f"{folder}/.env"] if folder and folder != "." else [])]

# A project name both generations keep as it is (v1 drops other characters, v2 refuses them).
_PLAIN_PROJECT = re.compile(r"[a-z0-9][a-z0-9_-]*")


def default_project(app_dir: str, compose_file: str, dot_env: dict | None) -> tuple[str, str] | None:
    """(name, project directory) Compose gives the app when the tool does not name it: the
    project directory is the compose file's; the name is COMPOSE_PROJECT_NAME of its ``.env``
    (``dot_env``, the app dir's .env as read; None: not read) or the directory's name. None when
    it cannot be told from these alone: the compose file in a subdirectory (its own .env), the
    .env not read, or a name either generation would rewrite. (A top-level ``name:`` in the
    compose file, or COMPOSE_PROJECT_NAME in the SSH user's environment, are not seen here: the
    caller checks the containers found against the directory and file they were created from.)"""
    if dot_env is None or posixpath.dirname(compose_file) not in ("", "."):
        return None
    project_dir = posixpath.normpath(app_dir)
    name = dot_env.get("COMPOSE_PROJECT_NAME") or posixpath.basename(project_dir)
    return (name, project_dir) if _PLAIN_PROJECT.fullmatch(name) else None


V2 = "docker compose"
V1 = "docker-compose"
# A service's image in Compose v1's ``config`` output (services at two spaces, their keys at four).
V1_IMAGE_LINE = "s/^    image: *//p"

# One round trip that says which Compose the host has; prints "v2 <version>" or "v1 <version>" or "none".
# Each generation is started once (its version kept from the check that it works): docker-compose
# v1 is a Python program that takes ~0.6 s to start, and the probe used to start it twice.
PROBE_COMPOSE = (
    "if v=$(docker compose version --short 2>/dev/null); then echo v2 $v; "
    "elif v=$(docker-compose version --short 2>/dev/null); then echo v1 $v; "
    "else echo none; fi"
)


def parse_compose_probe(stdout: str) -> tuple[str | None, str]:
    """``v2 2.26.1`` -> ("docker compose", "2.26.1"); ``none`` -> (None, "")."""
    words = stdout.strip().split()
    if not words or words[0] == "none":
        return None, ""
    version = words[1] if len(words) > 1 else ""
    return (V2 if words[0] == "v2" else V1), version


@dataclass(frozen=True)
class Compose:
    """Builds ``cd APP && <compose> -f FILE [-p PROJECT] <subcommand> ...`` strings."""

    command: str          # "docker compose" or "docker-compose"
    app_dir: str
    file: str
    project: str | None = None
    # One ``NAME=value`` before the compose command (``fab deploy --version``): it overrides the same
    # variable in the app dir's .env for this command only (Compose: the shell wins over .env).
    env: tuple[str, str] | None = None

    def __post_init__(self):
        if self.command not in (V1, V2):
            raise ValueError(f"unknown compose command {self.command!r}")
        check_path(self.app_dir, "APP_DIR")
        check_path(self.file, "COMPOSE_FILE", absolute=False)

    def _base(self) -> str:
        parts = f"{self.command} -f {q(self.file)}"
        if self.env:
            parts = f"{check_variable(self.env[0])}={q(check_tag(self.env[1]))} {parts}"
        if self.project:
            parts += f" -p {q(check_service(self.project, 'COMPOSE_PROJECT'))}"
        return parts

    def _cmd(self, sub: str, services: Iterable[str] = ()) -> str:
        svc = [check_service(s) for s in services]
        # "--" ends the options so that no service name can ever be read as a flag.
        tail = f" -- {join(svc)}" if svc else ""
        return cd(self.app_dir, f"{self._base()} {sub}{tail}")

    def ps_ids(self, services: Sequence[str] = ()) -> str:
        """IDs of the service containers, running or not (``-a`` so a crashed one is still seen)."""
        return self._cmd("ps -a -q" if self.command == V2 else "ps -q", services)

    def pull(self, services: Sequence[str] = ()) -> str:
        # --quiet keeps progress bars out of captured output in both generations.
        return self._cmd("pull --quiet", services)

    def config_images(self) -> str:
        """The image of every service, one per line, with the variables resolved. Compose v1 has no
        ``config --images``: its whole resolved file is filtered on the host (it holds the env
        files' values, so it never leaves the host); ``$(...)`` keeps its exit status."""
        if self.command == V2:
            return self._cmd("config --images")
        return cd(self.app_dir, f"out=$({self._base()} config) && printf '%s\\n' \"$out\" | sed -n {q(V1_IMAGE_LINE)}")

    def up(self, services: Sequence[str] = (), no_deps: bool = False) -> str:
        return self._cmd("up -d" + (" --no-deps" if no_deps else ""), services)

    def stop(self, services: Sequence[str]) -> str:
        """Stops without removing: a stopped blue/green slot keeps its container and image."""
        return self._cmd("stop", services)

    def restart(self, services: Sequence[str]) -> str:
        return self._cmd("restart", services)

    def logs(self, service: str, tail: int) -> str:
        return self._cmd(f"logs --no-color --tail={int(tail)}", [service])

    def follow_logs(self, services: Sequence[str], tail: int, since: str = "", follow: bool = False) -> str:
        """``fab logs``: the last ``tail`` lines of each service (all when none), optionally since a
        time (``10m``, an RFC 3339 date) and followed."""
        opts = f"logs --no-color --timestamps --tail={int(tail)}"
        if since:
            opts += f" --since {q(check_since(since))}"
        return self._cmd(opts + (" --follow" if follow else ""), services)

    def exec(self, service: str, argv: Sequence[str]) -> str:
        """``exec -T``: without a TTY, Compose's default TTY allocation fails (runbook note 7)."""
        return cd(self.app_dir, f"{self._base()} exec -T {q(check_service(service))} {join(argv)}")

    def exec_sh(self, service: str, command_line: str) -> str:
        """Like :meth:`exec` for a configured one-line command, run by ``sh -c`` in the container."""
        return self.exec(service, ["sh", "-c", command_line])

    def run_rm(self, service: str, argv: Sequence[str]) -> str:
        """For a first deploy, when no container of the service exists yet to exec into."""
        return cd(self.app_dir, f"{self._base()} run --rm -T {q(check_service(service))} {join(argv)}")


_SINCE = re.compile(r"^(?:[0-9]{1,6}[smh]|[0-9]{4}-[0-9]{2}-[0-9]{2}(?:T[0-9:.]+(?:Z|[+-][0-9:]+)?)?)$")


def check_since(value: str) -> str:
    """``--since``: a duration (``30s``, ``10m``, ``2h``) or a date (``2026-11-28``,
    ``2026-11-28T07:00:00Z``), the forms both Compose generations accept."""
    if not _SINCE.match(value or ""):
        raise ValueError(f"--since takes a duration such as 10m or 2h, or a date such as 2026-11-28T07:00:00Z; got {value!r}")
    return value


_ID = re.compile(r"^[0-9a-f]{12,64}$")


def parse_ps_ids(stdout: str) -> list[str]:
    """Container IDs from ``ps -q``; ignores blank lines and any warnings Compose mixes in."""
    return [line.strip() for line in stdout.splitlines() if _ID.match(line.strip())]
