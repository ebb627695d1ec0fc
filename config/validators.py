"""Validation of every value with a known shape that reaches a remote shell: git refs, service
names, remote names, paths, image references, URLs. A hostile value is refused before it is quoted,
not merely neutralised.

These live in ``config/`` because the stage settings are checked with them before any connection,
and ``config/`` is the bottom layer (it imports nothing of ``commands/``); the builders in
``commands/`` use them through ``commands.shell``.
"""
from __future__ import annotations

import re

__all__ = ["UnsafeValue", "check_ref", "check_service", "check_path", "check_url", "check_image", "check_remote",
           "check_tag", "check_variable"]


class UnsafeValue(ValueError):
    """A value failed its pattern; the message names the value's role and the rule."""


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# git check-ref-format, narrowed: no "..", no leading "-" or "/", no "@{", no control chars,
# no space ~ ^ : ? * [ \ (we also refuse anything a shell could read as an option).
_REF = re.compile(r"^(?!-)(?!/)(?!.*\.\.)(?!.*@\{)(?!.*//)[A-Za-z0-9._/+-]+(?<![./])$")
_SERVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_REMOTE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# [registry[:port]/]path[:tag][@digest] or a bare image ID (sha256:hex or hex prefix)
_IMAGE = re.compile(
    r"^(?!-)"
    r"(?:[A-Za-z0-9.-]+(?::[0-9]{1,5})?/)?"      # registry host[:port]/
    r"[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*"  # path
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"   # :tag
    r"(?:@sha256:[a-f0-9]{64})?$"                # @digest
)
# Docker's own tag grammar, and a shell/Compose variable name.
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_IMAGE_ID = re.compile(r"^(?:sha256:)?[a-f0-9]{12,64}$")
_URL = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~!$&'()*+,;=:@%/?#-]*)?$")


def check_ref(value: str, role: str = "git ref") -> str:
    if not value or _CONTROL.search(value) or not _REF.match(value):
        raise UnsafeValue(f"{role} {value!r} is not a valid git ref name (letters, digits, . _ / + -; no '..', no leading '-')")
    return value


def check_service(value: str, role: str = "service name") -> str:
    if not value or not _SERVICE.match(value):
        raise UnsafeValue(f"{role} {value!r} is not a valid Compose service name (letters, digits, _ . -, not starting with - or .)")
    return value


def check_remote(value: str, role: str = "git remote") -> str:
    if not value or not _REMOTE.match(value):
        raise UnsafeValue(f"{role} {value!r} is not a valid git remote name (letters, digits, _ . -)")
    return value


_PATH_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f`$\\\"']")


def check_path(value: str, role: str = "path", absolute: bool = True) -> str:
    """Paths may hold spaces and ';' (they are quoted), but not quotes, backslashes, '$' or
    backticks: no real deploy path needs them and each is a classic injection vector."""
    if not value or _PATH_FORBIDDEN.search(value):
        raise UnsafeValue(f"{role} {value!r} must be a non-empty path without control characters, quotes, backslashes, '$' or backticks")
    if absolute and not value.startswith("/"):
        raise UnsafeValue(f"{role} {value!r} must be an absolute path (starting with /)")
    if not absolute and (value.startswith("/") or value.startswith("-")):
        raise UnsafeValue(f"{role} {value!r} must be a relative path not starting with '-' or '/'")
    return value


def check_image(value: str, role: str = "image") -> str:
    if not value or not (_IMAGE.match(value) or _IMAGE_ID.match(value)):
        raise UnsafeValue(f"{role} {value!r} is not a valid image reference or image ID")
    return value


def check_url(value: str, role: str = "URL") -> str:
    if not value or _CONTROL.search(value) or " " in value or not _URL.match(value):
        raise UnsafeValue(f"{role} {value!r} must be an http:// or https:// URL without spaces or shell metacharacters")
    return value


def check_tag(value: str, role: str = "--version") -> str:
    if not _TAG.fullmatch(value or ""):
        raise UnsafeValue(f"{role} {value!r} is not a docker tag (letters, digits, _ . -; at most 128; "
                          "not starting with . or -)")
    return value


# Set as ``VAR=TAG docker compose ...`` on every compose command of a --version run: a name the
# shell, the dynamic loader, docker or Compose read themselves would change what runs (PATH=v2: no
# docker found; DOCKER_HOST=v2: another daemon; COMPOSE_PROJECT_NAME=v2: a second project).
_RESERVED_VARIABLE = re.compile(r"(PATH|HOME|IFS|SHELL|ENV|BASH_ENV|PWD|USER|TMPDIR|LANG|LC_\w*|LD_\w*|DOCKER_\w*|COMPOSE_\w*)",
                                re.IGNORECASE)


def check_variable(value: str, role: str = "IMAGE_TAG_VARIABLE") -> str:
    if not _VARIABLE.fullmatch(value or ""):
        raise UnsafeValue(f"{role} {value!r} is not a Compose variable name (letters, digits, _; not starting with a digit)")
    if _RESERVED_VARIABLE.fullmatch(value):
        raise UnsafeValue(f"{role} {value!r} is read by the shell, docker or Compose themselves; name the variable "
                          "the compose file's image tag uses (e.g. IMAGE_TAG)")
    return value
