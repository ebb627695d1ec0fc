"""Reading, merging and validating one stage's settings (the load order is in config/__init__.py)."""
from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Mapping

from dotenv.parser import parse_stream

from config.keys import CONTACT_KEYS, PER_STAGE, STAGE_KEYS, Key
from config.secrets import config_secrets
from config.settings import ConfigError, Contact, Settings

CONFIG_DIR = Path(__file__).resolve().parent
ENV_PREFIX = "DEPLOY_"
LOCAL_FILE = "local.env"                 # git-ignored: an upgrade of the tool never conflicts with it
LOCAL_DIR_VARIABLE = "DEPLOY_LOCAL_CONFIG"
STAGE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def read_env_file(path: Path, name: str | None = None) -> dict[str, str]:
    """One config file, parsed as python-dotenv does, but strictly: a file that cannot be read, is
    not UTF-8, has a line dotenv cannot parse, or sets a key twice is a configuration error.
    (python-dotenv itself skips a bad line with a logged warning, so a typo such as an unclosed
    quote silently gave the key its value from defaults.env.)"""
    name = name or f"config/{path.name}"
    if not path.exists():
        return {}                    # an unknown stage is reported by load_settings; missing keys by name
    try:
        if not path.is_file():       # a directory, or a FIFO that would block the read
            raise IsADirectoryError(0, "not a regular file")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{name}: not UTF-8 text (byte {exc.start} is not valid UTF-8); save it as UTF-8"]) from None
    except OSError as exc:
        raise ConfigError([f"{name}: cannot be read ({exc.strerror or exc.__class__.__name__})"]) from None
    values: dict[str, str] = {}
    where: dict[str, int] = {}
    problems = []
    for b in parse_stream(io.StringIO(text)):
        line = b.original.line
        if b.error:
            problems.append(f"{name} line {line}: not a KEY=value line python-dotenv can parse (an unclosed quote?)")
        elif b.key is not None:
            if b.key in where:
                problems.append(f"{name} line {line}: {b.key} is already set on line {where[b.key]}; keep one")
            values[b.key], where[b.key] = ("" if b.value is None else b.value), line
    if problems:
        raise ConfigError(problems)
    return values


def available_stages() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.env") if p.name not in ("defaults.env", LOCAL_FILE))


def stage_prefix(stage: str) -> str:
    """``pre-prod`` -> ``PRE_PROD_``: a stage's name as the start of a variable name."""
    return f"{stage.upper().replace('-', '_')}_"


def env_files(stage: str, environ: Mapping[str, str]) -> list[tuple[Path, str]]:
    """The files of one stage, lowest precedence first, with the name each source is shown by."""
    files = [(CONFIG_DIR / "defaults.env", "config/defaults.env"), (CONFIG_DIR / f"{stage}.env", f"config/{stage}.env"),
             (CONFIG_DIR / LOCAL_FILE, f"config/{LOCAL_FILE}")]
    local_dir = environ.get(LOCAL_DIR_VARIABLE, "")
    if local_dir:
        files += [(Path(local_dir) / name, f"{Path(local_dir) / name} (${LOCAL_DIR_VARIABLE})")
                  for name in (LOCAL_FILE, f"{stage}.env")]
    # exists, not is_file: a directory or FIFO in their place is an error (read_env_file), not skipped
    return [(path, shown) for path, shown in files if path.exists()]


def _stage_key(key: str) -> bool:
    """``STAGING_HOSTS`` in a shared local file: a key prefixed with a stage's name."""
    for st in available_stages():
        prefix = stage_prefix(st)
        if key.startswith(prefix) and key[len(prefix):] in PER_STAGE:
            return True
    return False


def raw_values(stage: str, environ: Mapping[str, str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """Merged raw strings and, per key, where each came from."""
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    own_prefix = stage_prefix(stage)
    for path, shown in env_files(stage, environ):
        read = read_env_file(path, shown)
        if path.name == LOCAL_FILE:
            # Shared by every stage: `PRODUCTION_HOSTS=` is production's HOSTS only, and a key of
            # another stage (`STAGING_HOSTS=` while running production) is not this stage's.
            own = {k[len(own_prefix):]: v for k, v in read.items() if k.startswith(own_prefix)}
            read = {k: v for k, v in read.items() if not _stage_key(k)} | own
        for k, v in read.items():
            values[k] = v
            sources[k] = shown
    for key in PER_STAGE:
        for name in (f"{ENV_PREFIX}{key}", f"{ENV_PREFIX}{own_prefix}{key}"):
            if name in environ:
                values[key] = environ[name]
                sources[key] = f"environment variable {name}"
    return values, sources


def _parse(key: Key, stage: str, values: Mapping[str, str], sources: Mapping[str, str], problems: list[str]):
    """The typed value of ``key``, or None with a line added to ``problems``."""
    if key.name not in values:
        problems.append(f"{key.name}: missing (format 'Team|Response time|how to reach')" if key in CONTACT_KEYS else
                        f"{key.name}: missing (set it in config/{stage}.env or config/defaults.env, or {ENV_PREFIX}{key.name})")
        return None
    raw = values[key.name] if key in CONTACT_KEYS else values[key.name].strip()
    try:
        return key.parse(raw)
    except ValueError as exc:
        problems.append(f"{key.name} ({sources.get(key.name, 'nowhere')}): {exc}")
        return None


def _across_keys(fields: Mapping[str, object], sources: Mapping[str, str]) -> list[str]:
    """The rules that involve more than one key (each key is valid on its own)."""
    problems = []
    svc = set(fields["services"]) | set(fields["dependency_services"])  # type: ignore[arg-type]
    if fields["backend_service"] not in svc:
        problems.append(f"BACKEND_SERVICE ({sources['BACKEND_SERVICE']}): {fields['backend_service']!r} "
                        f"is not listed in SERVICES or DEPENDENCY_SERVICES")
    overlap = set(fields["services"]) & set(fields["dependency_services"])  # type: ignore[arg-type]
    if overlap:
        problems.append(f"SERVICES and DEPENDENCY_SERVICES both list {', '.join(sorted(overlap))}; "
                        f"a service is either deployed or a dependency")
    if fields["lock_heartbeat"] * 2 > fields["lock_stale_after"]:  # type: ignore[operator]
        problems.append(f"LOCK_STALE_AFTER ({sources['LOCK_STALE_AFTER']}) must be at least twice LOCK_HEARTBEAT, "
                        f"or a live deploy looks stale")
    if fields["migration_host"] and fields["migration_host"] not in fields["hosts"]:  # type: ignore[operator]
        problems.append(f"MIGRATION_HOST ({sources['MIGRATION_HOST']}): {fields['migration_host']} is not one of HOSTS")
    if fields["known_hosts"] and not os.path.isfile(fields["known_hosts"]):  # type: ignore[arg-type]
        if fields["host_key_policy"] == "strict":
            problems.append(f"KNOWN_HOSTS ({sources['KNOWN_HOSTS']}): file {fields['known_hosts']} does not exist")
    if re.search(str(fields["secret_key_pattern"]), str(fields["image_tag_variable"])):
        problems.append(f"IMAGE_TAG_VARIABLE ({sources['IMAGE_TAG_VARIABLE']}): {fields['image_tag_variable']} looks like a secret's "
                        "name (SECRET_KEY_PATTERN), but --version prints and records its value")
    if fields["ssh_config"] and not os.path.isfile(fields["ssh_config"]):  # type: ignore[arg-type]
        problems.append(f"SSH_CONFIG ({sources['SSH_CONFIG']}): file {fields['ssh_config']} does not exist")
    return problems


def load_settings(stage: str, environ: Mapping[str, str] | None = None, *, apply_generic_env: bool = True) -> Settings:
    """Read, merge and validate one stage. Raises ConfigError listing every bad key."""
    if not STAGE_NAME.match(stage or "") or stage == LOCAL_FILE[:-4]:
        raise ConfigError([f"stage {stage!r} is not a valid stage name"], stage)
    if not (CONFIG_DIR / f"{stage}.env").is_file():
        raise ConfigError([f"unknown stage {stage!r}: no config/{stage}.env (known: {', '.join(available_stages())})"], stage)
    environ = dict(os.environ if environ is None else environ)
    if not apply_generic_env:
        environ = {k: v for k, v in environ.items()
                   if k.startswith(f"{ENV_PREFIX}{stage_prefix(stage)}")}
    values, sources = raw_values(stage, environ)
    secrets = config_secrets(values)
    problems: list[str] = []
    fields: dict[str, object] = {"stage": stage}
    for key in STAGE_KEYS:
        fields[key.field] = _parse(key, stage, values, sources, problems)
    contacts: dict[str, Contact] = {}
    for key in CONTACT_KEYS:
        parsed = _parse(key, stage, values, sources, problems)
        if parsed:
            kind = key.name.removeprefix("CONTACT_").lower()
            contacts[kind] = Contact(kind, *parsed)  # type: ignore[misc]
    if not problems:
        problems = _across_keys(fields, sources)
    if problems:
        hint = values.get("SETUP_HINT", "").strip()
        raise ConfigError(problems + ([f"hint: {hint}"] if hint else []), stage, secrets)
    return Settings(**fields, contacts=contacts, sources=sources, secrets=secrets)  # type: ignore[arg-type]



# RFC 2606/6761 names that can never be a real server: the shipped production.env's placeholders.
_PLACEHOLDER = re.compile(r"(?:^|[@/.])(?:example\.(?:com|net|org)|[A-Za-z0-9-]+\.(?:example|invalid))(?:[:/]|$)", re.I)


def placeholder_problems(settings: Settings) -> list[str]:
    """Hosts and URLs still set to a placeholder, each with where it came from (``fab config``)."""
    problems = []
    for key in STAGE_KEYS:
        if key.name != "HOSTS" and not key.name.endswith(("_URL", "_URLS")):
            continue
        value = getattr(settings, key.field)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, str) and _PLACEHOLDER.search(item):
                problems.append(f"{key.name} ({settings.sources.get(key.name, '?')}): {item} is a placeholder, not your server")
    return problems
