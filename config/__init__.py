"""Stage settings: python-dotenv files in this folder, overridable by environment variables.

Load order, lowest to highest:
  1. ``config/defaults.env``                       shared defaults
  2. ``config/<stage>.env``                        the stage (staging, production, ...)
  3. ``DEPLOY_<KEY>``                              environment, applies to the stage being run
  4. ``DEPLOY_<STAGE>_<KEY>``                      environment, applies to that stage only

Everything is validated before any SSH connection; an error names the key and where its value
came from. The result is one frozen :class:`Settings`. No fabric/invoke imports here.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from dotenv import dotenv_values

from commands.secrets import command_secrets, url_secrets
from commands.shell import (
    UnsafeValue,
    check_path,
    check_ref,
    check_remote,
    check_service,
    check_url,
)

CONFIG_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = CONFIG_DIR.parent
ENV_PREFIX = "DEPLOY_"


class ConfigError(Exception):
    """One or more settings are invalid. ``problems`` holds one line per key."""

    def __init__(self, problems: list[str], stage: str | None = None, secrets: tuple = (),
                 next_step: str | None = None):
        self.problems = problems
        self.stage = stage
        self.secrets = secrets          # (name, value) held in the raw config: problems may echo them
        self.next_step = next_step
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Contact:
    kind: str
    team: str
    response: str
    reach: str = ""


@dataclass(frozen=True)
class Settings:
    stage: str
    hosts: tuple[str, ...]
    ssh_config: str | None
    known_hosts: str | None
    host_key_policy: str
    connect_timeout: float
    keepalive: int
    app_dir: str
    git_remote: str
    git_branch: str
    compose_file: str
    compose_command: str
    compose_project: str | None
    backend_service: str
    postgres_service: str
    redis_service: str
    model_server_service: str
    services: tuple[str, ...]
    dependency_services: tuple[str, ...]
    health_url: str
    smoke_urls: tuple[str, ...]
    smoke_from_operator: bool
    monitoring_url: str | None
    webhook_url: str | None
    env_files: tuple[str, ...]
    env_example: str | None
    secret_files: tuple[str, ...]
    secret_key_pattern: str
    migrations_path: str
    db_ready_command: str
    db_check_command: str
    model_context_key: str
    model_health_url: str | None
    tested_on_stage: str | None
    checklist_blocking: tuple[str, ...]
    auto_rollback: bool
    command_timeout: float
    db_ready_timeout: float
    migrate_timeout: float
    pull_timeout: float
    up_timeout: float
    health_timeout: float
    health_interval: float
    smoke_timeout: float
    log_tail: int
    log_error_pattern: str
    lock_stale_after: float
    lock_heartbeat: float
    lock_wait: float
    record_dir: str
    setup_hint: str | None
    contacts: Mapping[str, Contact] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    # (name, value) of the secrets the config itself holds (see config_secrets); never printed.
    secrets: tuple[tuple[str, str], ...] = field(default=(), compare=False, repr=False)
    # Fleets (several HOSTS, docs/fleets.md): hosts per batch (count or percentage), pause between batches,
    # what a failed host does to the rest, and where the migrations run (None: the first host).
    batch_size: str = "1"
    batch_wait: float = 0.0
    failure_policy: str = "revert"
    migration_host: str | None = None

    # ---- derived paths -------------------------------------------------------------
    @property
    def record_path(self) -> str:
        return f"{self.app_dir.rstrip('/')}/{self.record_dir}"

    @property
    def releases_file(self) -> str:
        return f"{self.record_path}/releases.jsonl"

    @property
    def lock_dir(self) -> str:
        return f"{self.record_path}/lock"

    def contact(self, kind: str) -> Contact:
        return self.contacts.get(kind) or self.contacts["infrastructure"]


# --------------------------------------------------------------------------------------
# Parsers for each value type. Each returns the typed value or raises ValueError(reason).

def _str(v: str) -> str:
    if v == "":
        raise ValueError("must not be empty")
    return v


def _opt(parse: Callable[[str], object]) -> Callable[[str], object]:
    def inner(v: str):
        return None if v == "" else parse(v)
    return inner


def _list(parse: Callable[[str], object], allow_empty: bool = True) -> Callable[[str], tuple]:
    def inner(v: str):
        items = tuple(parse(x.strip()) for x in v.split(",") if x.strip())
        if not items and not allow_empty:
            raise ValueError("must list at least one value (comma-separated)")
        return items
    return inner


# Upper bounds: a value no operator means (a timeout of 10^30 s) would overflow the clocks and
# timers it reaches (threading's wait, time_t) and end in a traceback instead of a config error.
MAX_SECONDS = 7 * 86400
MAX_COUNT = 1_000_000


def _number(cast: Callable[[str], float], what: str, allow_zero: bool = False,
            maximum: float = MAX_SECONDS) -> Callable[[str], float]:
    def inner(v: str):
        try:
            n = cast(v)
        except ValueError:
            raise ValueError(f"must be a {what}, got {v!r}") from None
        if not math.isfinite(n) or n < 0 or (n == 0 and not allow_zero):
            raise ValueError(f"must be {'zero or a positive' if allow_zero else 'a positive'} {what}, got {v!r}")
        if n > maximum:
            raise ValueError(f"must be at most {maximum:g}, got {v!r}")
        return n
    return inner


_seconds = _number(float, "number of seconds")
_seconds0 = _number(float, "number of seconds", allow_zero=True)
_int = _number(int, "whole number", maximum=MAX_COUNT)


def _bool(v: str) -> bool:
    low = v.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be true or false, got {v!r}")


def _choice(*options: str) -> Callable[[str], str]:
    def inner(v: str) -> str:
        if v not in options:
            raise ValueError(f"must be one of {', '.join(options)}; got {v!r}")
        return v
    return inner


_HOST = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9_.-]*@)?[A-Za-z0-9_][A-Za-z0-9_.-]*(?::[0-9]{1,5})?$")


def _host(v: str) -> str:
    if not _HOST.match(v):
        raise ValueError(f"host {v!r} must look like [user@]host[:port]")
    return v


def _host_key(v: str) -> tuple[str, str | None]:
    """One machine's sshd, however the entry is spelled: user, case and a final dot do not count."""
    name, _, port = v.split("@", 1)[-1].partition(":")
    return name.lower().rstrip("."), port or None


def _hosts(v: str) -> tuple[str, ...]:
    hosts = _list(_host, allow_empty=False)(v)
    seen: dict[tuple, str] = {}
    for h in hosts:
        first = seen.setdefault(_host_key(h), h)
        if first is not h:
            raise ValueError(f"lists {_host_key(h)[0]} twice ({first}, {h}): every task would run twice on it, "
                             f"and a second bare rollback goes one release further back")
    return hosts


def _batch_size(v: str) -> str:
    if not re.fullmatch(r"[1-9][0-9]{0,5}|(100|[1-9][0-9]?)%", v.strip()):
        raise ValueError(f"must be a number of hosts (1 or more) or a percentage (1% to 100%), got {v!r}")
    return v.strip()


def _wrap(check):
    def inner(v: str):
        try:
            return check(v)
        except UnsafeValue as exc:
            raise ValueError(str(exc)) from None
    return inner


def _abs_path(v: str) -> str:
    return _wrap(check_path)(v)


def _rel_path(v: str) -> str:
    return _wrap(lambda x: check_path(x, absolute=False))(v)


def _local_path(v: str) -> str:
    """A file on the operator's machine; relative paths are relative to the project root."""
    v = os.path.expanduser(v)
    if not os.path.isabs(v):
        v = str(PROJECT_ROOT / v)
    return v


def _regex(v: str) -> str:
    try:
        re.compile(v)
    except re.error as exc:
        raise ValueError(f"is not a valid regular expression: {exc}") from None
    return v


def _compose_command(v: str) -> str:
    if v not in ("auto", "docker compose", "docker-compose"):
        raise ValueError(f"must be auto, 'docker compose' or docker-compose; got {v!r}")
    return v


def _shell_command(v: str) -> str:
    if not v.strip() or re.search(r"[\x00\n\r]", v):
        raise ValueError("must be a one-line command")
    return v


def _contact(v: str) -> tuple[str, str, str]:
    parts = [p.strip() for p in v.split("|")]
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError(f"must be 'Team|Response time[|how to reach]', got {v!r}")
    return (parts[0], parts[1], parts[2] if len(parts) > 2 else "")


CHECKLIST_ITEMS = (
    "migrations_pending", "migrations_untested", "env_keys_differ", "env_undocumented",
    "env_missing_for_release", "rollback_target", "monitoring", "oncall_notified",
)


def _checklist_items(v: str) -> tuple[str, ...]:
    items = _list(_str)(v)
    bad = [i for i in items if i not in CHECKLIST_ITEMS]
    if bad:
        raise ValueError(f"unknown checklist item(s) {', '.join(bad)}; known: {', '.join(CHECKLIST_ITEMS)}")
    return items


# key -> (parser, field name). Every key must be present after defaults.env is applied.
SCHEMA: dict[str, tuple[Callable[[str], object], str]] = {
    "HOSTS": (_hosts, "hosts"),
    "SSH_CONFIG": (_opt(_local_path), "ssh_config"),
    "KNOWN_HOSTS": (_opt(_local_path), "known_hosts"),
    "HOST_KEY_POLICY": (_choice("strict", "accept-new"), "host_key_policy"),
    "CONNECT_TIMEOUT": (_seconds, "connect_timeout"),
    "KEEPALIVE": (_int, "keepalive"),
    "APP_DIR": (_abs_path, "app_dir"),
    "GIT_REMOTE": (_wrap(check_remote), "git_remote"),
    "GIT_BRANCH": (_wrap(check_ref), "git_branch"),
    "COMPOSE_FILE": (_rel_path, "compose_file"),
    "COMPOSE_COMMAND": (_compose_command, "compose_command"),
    "COMPOSE_PROJECT": (_opt(_wrap(check_service)), "compose_project"),
    "BACKEND_SERVICE": (_wrap(check_service), "backend_service"),
    "POSTGRES_SERVICE": (_wrap(check_service), "postgres_service"),
    "REDIS_SERVICE": (_wrap(check_service), "redis_service"),
    "MODEL_SERVER_SERVICE": (_wrap(check_service), "model_server_service"),
    "SERVICES": (_list(_wrap(check_service), allow_empty=False), "services"),
    "DEPENDENCY_SERVICES": (_list(_wrap(check_service)), "dependency_services"),
    "HEALTH_URL": (_wrap(check_url), "health_url"),
    "SMOKE_URLS": (_list(_wrap(check_url), allow_empty=False), "smoke_urls"),
    "SMOKE_FROM_OPERATOR": (_bool, "smoke_from_operator"),
    "MONITORING_URL": (_opt(_wrap(check_url)), "monitoring_url"),
    "WEBHOOK_URL": (_opt(_wrap(check_url)), "webhook_url"),
    "ENV_FILES": (_list(_rel_path), "env_files"),
    "ENV_EXAMPLE": (_opt(_rel_path), "env_example"),
    "SECRET_FILES": (_list(_rel_path), "secret_files"),
    "SECRET_KEY_PATTERN": (_regex, "secret_key_pattern"),
    "MIGRATIONS_PATH": (_rel_path, "migrations_path"),
    "DB_READY_COMMAND": (_shell_command, "db_ready_command"),
    "DB_CHECK_COMMAND": (_shell_command, "db_check_command"),
    "MODEL_CONTEXT_KEY": (_str, "model_context_key"),
    "MODEL_HEALTH_URL": (_opt(_wrap(check_url)), "model_health_url"),
    "TESTED_ON_STAGE": (_opt(_str), "tested_on_stage"),
    "CHECKLIST_BLOCKING": (_checklist_items, "checklist_blocking"),
    "AUTO_ROLLBACK": (_bool, "auto_rollback"),
    "COMMAND_TIMEOUT": (_seconds, "command_timeout"),
    "DB_READY_TIMEOUT": (_seconds, "db_ready_timeout"),
    "MIGRATE_TIMEOUT": (_seconds, "migrate_timeout"),
    "PULL_TIMEOUT": (_seconds, "pull_timeout"),
    "UP_TIMEOUT": (_seconds, "up_timeout"),
    "HEALTH_TIMEOUT": (_seconds, "health_timeout"),
    "HEALTH_INTERVAL": (_seconds, "health_interval"),
    "SMOKE_TIMEOUT": (_seconds, "smoke_timeout"),
    "LOG_TAIL": (_int, "log_tail"),
    "LOG_ERROR_PATTERN": (_regex, "log_error_pattern"),
    "LOCK_STALE_AFTER": (_seconds, "lock_stale_after"),
    "LOCK_HEARTBEAT": (_seconds, "lock_heartbeat"),
    "LOCK_WAIT": (_seconds0, "lock_wait"),
    "RECORD_DIR": (_rel_path, "record_dir"),
    "SETUP_HINT": (_opt(_str), "setup_hint"),
    "BATCH_SIZE": (_batch_size, "batch_size"),
    "BATCH_WAIT": (_seconds0, "batch_wait"),
    "FAILURE_POLICY": (_choice("stop", "revert", "continue"), "failure_policy"),
    "MIGRATION_HOST": (_opt(_host), "migration_host"),
}
CONTACT_KINDS = ("database", "infrastructure", "security")
STAGE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def available_stages() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.env") if p.stem != "defaults")


def _read_env_file(path: Path) -> dict[str, str]:
    values = dotenv_values(path, interpolate=False)
    return {k: ("" if v is None else v) for k, v in values.items()}


def raw_values(stage: str, environ: Mapping[str, str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """Merged raw strings and, per key, where each came from."""
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for path in (CONFIG_DIR / "defaults.env", CONFIG_DIR / f"{stage}.env"):
        for k, v in _read_env_file(path).items():
            values[k] = v
            sources[k] = f"config/{path.name}"
    stage_prefix = f"{ENV_PREFIX}{stage.upper().replace('-', '_')}_"
    keys = set(SCHEMA) | {f"CONTACT_{k.upper()}" for k in CONTACT_KINDS}
    for key in keys:
        for name in (f"{ENV_PREFIX}{key}", f"{stage_prefix}{key}"):
            if name in environ:
                values[key] = environ[name]
                sources[key] = f"environment variable {name}"
    return values, sources


# A chat webhook (Slack, Teams, ...) carries its token in the path: the whole URL is a secret.
WHOLE_SECRET_KEYS = ("WEBHOOK_URL",)


def config_secrets(values: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """(name, value) of the secrets held in the config itself, from the raw values (before any
    validation, because a configuration error echoes raw values): the whole WEBHOOK_URL, the
    password and secret-looking query values of any URL, and the passwords in *_COMMAND keys
    (``PGPASSWORD=...``, ``--password ...``)."""
    pattern = values.get("SECRET_KEY_PATTERN") or None
    try:
        re.compile(pattern or "")
    except re.error:
        pattern = None
    found: list[tuple[str, str]] = []
    for key, value in values.items():
        if not value:
            continue
        if key in WHOLE_SECRET_KEYS:
            found.append((key, value.strip()))
        if key.endswith("_COMMAND"):
            found += [(f"{key} ({name})", v) for name, v in command_secrets(value, pattern)]
        else:
            found += [(key, v) for v in url_secrets(value, pattern)]
    return tuple(found)


def load_settings(stage: str, environ: Mapping[str, str] | None = None, *, apply_generic_env: bool = True) -> Settings:
    """Read, merge and validate one stage. Raises ConfigError listing every bad key."""
    if not STAGE_NAME.match(stage or ""):
        raise ConfigError([f"stage {stage!r} is not a valid stage name"], stage)
    if not (CONFIG_DIR / f"{stage}.env").is_file():
        raise ConfigError([f"unknown stage {stage!r}: no config/{stage}.env (known: {', '.join(available_stages())})"], stage)
    environ = dict(os.environ if environ is None else environ)
    if not apply_generic_env:
        environ = {k: v for k, v in environ.items()
                   if k.startswith(f"{ENV_PREFIX}{stage.upper()}_")}
    values, sources = raw_values(stage, environ)
    secrets = config_secrets(values)
    problems: list[str] = []
    fields: dict[str, object] = {"stage": stage}
    for key, (parse, name) in SCHEMA.items():
        where = sources.get(key, "nowhere")
        if key not in values:
            problems.append(f"{key}: missing (set it in config/{stage}.env or config/defaults.env, or {ENV_PREFIX}{key})")
            continue
        try:
            fields[name] = parse(values[key].strip())
        except ValueError as exc:
            problems.append(f"{key} ({where}): {exc}")
    contacts: dict[str, Contact] = {}
    for kind in CONTACT_KINDS:
        key = f"CONTACT_{kind.upper()}"
        if key not in values:
            problems.append(f"{key}: missing (format 'Team|Response time|how to reach')")
            continue
        try:
            team, response, reach = _contact(values[key])
            contacts[kind] = Contact(kind, team, response, reach)
        except ValueError as exc:
            problems.append(f"{key} ({sources.get(key)}): {exc}")
    if not problems:
        svc = set(fields["services"]) | set(fields["dependency_services"])  # type: ignore[arg-type]
        if fields["backend_service"] not in svc:
            problems.append(f"BACKEND_SERVICE ({sources['BACKEND_SERVICE']}): {fields['backend_service']!r} is not listed in SERVICES or DEPENDENCY_SERVICES")
        overlap = set(fields["services"]) & set(fields["dependency_services"])  # type: ignore[arg-type]
        if overlap:
            problems.append(f"SERVICES and DEPENDENCY_SERVICES both list {', '.join(sorted(overlap))}; a service is either deployed or a dependency")
        if fields["lock_heartbeat"] * 2 > fields["lock_stale_after"]:  # type: ignore[operator]
            problems.append(f"LOCK_STALE_AFTER ({sources['LOCK_STALE_AFTER']}) must be at least twice LOCK_HEARTBEAT, or a live deploy looks stale")
        if fields["migration_host"] and fields["migration_host"] not in fields["hosts"]:
            problems.append(f"MIGRATION_HOST ({sources['MIGRATION_HOST']}): {fields['migration_host']} is not one of HOSTS")
        if fields["known_hosts"] and not os.path.isfile(fields["known_hosts"]):  # type: ignore[arg-type]
            if fields["host_key_policy"] == "strict":
                problems.append(f"KNOWN_HOSTS ({sources['KNOWN_HOSTS']}): file {fields['known_hosts']} does not exist")
        if fields["ssh_config"] and not os.path.isfile(fields["ssh_config"]):  # type: ignore[arg-type]
            problems.append(f"SSH_CONFIG ({sources['SSH_CONFIG']}): file {fields['ssh_config']} does not exist")
    if problems:
        hint = values.get("SETUP_HINT", "").strip()
        raise ConfigError(problems + ([f"hint: {hint}"] if hint else []), stage, secrets)
    fields["contacts"] = contacts
    fields["sources"] = sources
    fields["secrets"] = secrets
    return Settings(**fields)  # type: ignore[arg-type]


def default_stage(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    if environ.get("DEPLOY_STAGE"):
        return environ["DEPLOY_STAGE"]
    return _read_env_file(CONFIG_DIR / "defaults.env").get("DEFAULT_STAGE", "staging")


def _host_name(host: str) -> str:
    host = host.split("@", 1)[-1]
    return host.rsplit(":", 1)[0] if re.search(r":[0-9]+$", host) else host


def lists_host(hosts, host: str) -> bool:
    """Whether ``hosts`` (a stage's HOSTS) name ``host``. User and port do not count: ``-H
    root@prod:2200`` is the host ``prod``."""
    return _host_name(host) in {_host_name(h) for h in hosts}


def _stage_hosts(stage: str, environ: Mapping[str, str] | None) -> list[str]:
    values, _ = raw_values(stage, environ)
    return [h.strip() for h in values.get("HOSTS", "").split(",") if h.strip()]


def stage_host_lists(environ: Mapping[str, str] | None = None) -> dict[str, tuple[list[str], str | None]]:
    """Every stage's HOSTS and the SSH_CONFIG they are reached through (None: the operator's own),
    from the raw values: another stage's unrelated bad key must not hide where its hosts are."""
    out = {}
    for stage in available_stages():
        values, _ = raw_values(stage, environ)
        ssh_config = values.get("SSH_CONFIG", "").strip()
        out[stage] = (_stage_hosts(stage, environ), _local_path(ssh_config) if ssh_config else None)
    return out


def choose_stage(explicit: str | None, host: str | None, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """Return (stage, why). --stage wins; else the stage whose HOSTS list the -H host; a -H host
    that no stage lists is refused (it would otherwise get another stage's app dir, URLs and ssh
    config); with no -H, the default stage."""
    if explicit is not None:            # `--stage ''` is a bad stage name, not "no --stage"
        return explicit, "--stage"
    if host:
        wanted = _host_name(host)
        listed = {stage: _stage_hosts(stage, environ) for stage in available_stages()}
        matches = [stage for stage, hosts in listed.items() if lists_host(hosts, host)]
        if len(matches) == 1:
            return matches[0], f"host {wanted} is listed in config/{matches[0]}.env"
        if len(matches) > 1:
            raise ConfigError([f"host {wanted} is listed in several stages ({', '.join(matches)}); pass --stage"],
                              next_step=f"fab -H {host} <task> --stage {matches[0]}")
        raise ConfigError(
            [f"-H host {wanted} is listed in no stage's HOSTS, so no stage's settings (app dir, URLs, ssh config) apply to it",
             *[f"config/{stage}.env: HOSTS={','.join(hosts) or '(empty)'}" for stage, hosts in listed.items()]],
            next_step=(f"add {wanted} to HOSTS in config/<stage>.env (or set DEPLOY_<STAGE>_HOSTS), or pass --stage STAGE "
                       f"to run with that stage's settings on {host}"))
    stage = default_stage(environ)
    why = "default stage: DEPLOY_STAGE" if (os.environ if environ is None else environ).get("DEPLOY_STAGE") \
        else "default stage: DEFAULT_STAGE in config/defaults.env"
    return stage, why
