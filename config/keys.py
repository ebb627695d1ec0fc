"""Every configuration key, declared once: its name, its type (the parser that validates it and the
type of its :class:`~config.settings.Settings` field), its default and what it means.

From this table come the Settings fields (config/settings.py), the validation (config/load.py),
``config/defaults.env`` and the key table of docs/configuration.md (config/render.py writes both;
``make config-docs``; tests/config/test_keys.py fails when either differs from this table).
To add a key: add one ``Key`` here, run ``make config-docs``, read it as ``settings.<name in lower case>``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from config import types as t
from config.validators import check_ref, check_remote, check_service, check_url, check_variable

STAGE, CONTACT, GLOBAL = "stage", "contact", "global"


@dataclass(frozen=True)
class Key:
    name: str
    parse: Callable[[str], object]
    type: object                 # the type of the Settings field (what ``parse`` returns)
    default: str = ""            # the value in config/defaults.env ("" = empty there)
    doc: str = ""                # what the key means: the comment above it in defaults.env
    # STAGE: a Settings field; CONTACT: an escalation contact (Settings.contacts);
    # GLOBAL: read from defaults.env alone, before a stage is chosen (DEFAULT_STAGE).
    scope: str = STAGE

    @property
    def field(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Group:
    title: str
    keys: tuple[Key, ...]


def group(title: str, *keys: Key) -> Group:
    return Group(title, keys)


url, service = t.checked(check_url), t.checked(check_service)
services = t.listing(service)
Str, OptStr, Strs = str, str | None, tuple[str, ...]

GROUPS = (
    group("",
          Key("DEFAULT_STAGE", t.text, str, "staging",
              "Stage used when neither --stage nor a -H host that a stage lists says otherwise.", GLOBAL)),
    group("SSH",
          Key("HOSTS", t.hosts, Strs, "",
              "Hosts are [user@]host[:port]; user, key, port and ProxyJump can also come from ~/.ssh/config."),
          Key("SSH_CONFIG", t.optional(t.local_path), OptStr, "",
              "Optional ssh_config file (relative paths are relative to the project root). When set, it\n"
              "replaces ~/.ssh/config for this stage, exactly like `fab -S`."),
          Key("KNOWN_HOSTS", t.optional(t.local_path), OptStr, "",
              "known_hosts used for strict host key checking. Empty: UserKnownHostsFile from the ssh_config\n"
              "entry, else ~/.ssh/known_hosts."),
          Key("HOST_KEY_POLICY", t.choice("strict", "accept-new"), Str, "strict",
              "strict (refuse unknown and changed keys) or accept-new (record an unknown key on first use;\n"
              "a changed key is still refused). Per run: --accept-new-host-key."),
          Key("CONNECT_TIMEOUT", t.seconds, float, "10", "Seconds to wait for the SSH connection."),
          Key("KEEPALIVE", t.count, int, "15",
              "SSH keepalive interval in seconds, so a long `compose pull` survives idle NAT timeouts.")),
    group("The application on the host",
          Key("APP_DIR", t.abs_path, Str, "/app/ai-doc-qa", "The application's checkout on the host."),
          Key("GIT_REMOTE", t.checked(check_remote), Str, "origin", "The git remote the release is pulled from."),
          Key("GIT_BRANCH", t.checked(check_ref), Str, "main", "The branch deployed."),
          Key("COMPOSE_FILE", t.rel_path, Str, "docker-compose.production.yml", "Relative to APP_DIR."),
          Key("COMPOSE_COMMAND", t.compose_command, Str, "auto",
              "auto: `docker compose` (v2) if the host has it, else `docker-compose` (v1)."),
          Key("COMPOSE_PROJECT", t.optional(service), OptStr, "",
              "Empty: Compose's own default (the app directory's name), as when the runbook is typed by hand."),
          Key("BACKEND_SERVICE", service, Str, "backend",
              "The service alembic and DB_CHECK_COMMAND run in; listed in SERVICES or DEPENDENCY_SERVICES."),
          Key("POSTGRES_SERVICE", service, Str, "postgres", "The database service (DB_READY_COMMAND runs in it)."),
          Key("MODEL_SERVER_SERVICE", service, Str, "model_server", "The model server service (`check-model-server`)."),
          Key("SERVICES", t.listing(service, allow_empty=False), Strs, "backend,model_server,proxy",
              "Services the deploy pulls, records, restarts and rolls back."),
          Key("DEPENDENCY_SERVICES", services, Strs, "postgres,redis",
              "Services the migration step starts first and the deploy never rolls back."),
          Key("IMAGE_TAG_VARIABLE", t.checked(check_variable), Str, "IMAGE_TAG",
              "`fab deploy --version TAG` writes TAG to this variable in APP_DIR/.env (docs/versions.md).")),
    group("Health, smoke tests, monitoring",
          Key("HEALTH_URL", url, Str, "http://localhost:8000/health",
              "Checked with curl ON THE HOST, so localhost means the server."),
          Key("SMOKE_URLS", t.listing(url, allow_empty=False), Strs,
              "http://localhost/api/v1/documents,http://localhost/health", "Smoke tests, also curl on the host."),
          Key("SMOKE_FROM_OPERATOR", t.boolean, bool, "false",
              "Also request the smoke URLs from the operator's machine (requests); only useful when the\n"
              "URLs are reachable from there."),
          Key("MONITORING_URL", t.optional(url), OptStr, "", "The dashboard the checklist checks and `verify` names."),
          Key("WEBHOOK_URL", t.optional(url), OptStr, "",
              "Deploy notifications (JSON POST). Empty: the checklist says \"not configured\". A secret:\n"
              "never printed.")),
    group("Configuration review",
          Key("ENV_FILES", t.listing(t.rel_path), Strs, ".env.production,.env.staging",
              "The live env file first, then the file it is compared with (runbook: diff .env.production .env.staging)."),
          Key("ENV_EXAMPLE", t.optional(t.rel_path), OptStr, ".env.example",
              "Tracked file that documents every variable (checked against the live file and the incoming release)."),
          Key("SECRET_FILES", t.listing(t.rel_path), Strs, ".env",
              "Other files on the host whose secret values must never be printed."),
          Key("SECRET_KEY_PATTERN", t.secret_pattern, Str,
              "(?i)(PASS|SECRET|TOKEN|KEY|CREDENTIAL|PRIVATE|AUTH|DSN|DATABASE_URL|_URI$|WEBHOOK)",
              "Keys whose values are secrets (case-insensitive search in the key name).")),
    group("Migrations and database",
          Key("MIGRATIONS_PATH", t.rel_path, Str, "migrations/versions", "Alembic's versions folder, relative to APP_DIR."),
          Key("DB_READY_COMMAND", t.shell_command, Str, "pg_isready -U postgres",
              "Run inside the postgres container until it succeeds (db ready)."),
          Key("DB_CHECK_COMMAND", t.shell_command, Str, 'python -c "from app.db import engine; engine.connect()"',
              "Run inside the backend container (runbook: Database connection failures)."),
          Key("MODEL_CONTEXT_KEY", t.text, Str, "CONTEXT_SIZE",
              "Environment key of the model server that sets its context size (runbook: Model server timeout)."),
          Key("MODEL_HEALTH_URL", t.optional(url), OptStr, "",
              "The model server's health URL, checked with curl on the host with a short timeout (a hang = timeout)."),
          Key("TESTED_ON_STAGE", t.optional(t.text), OptStr, "",
              "Production only: a pending migration the named stage has not applied is flagged \"untested\"."),
          Key("DB_REVISION_READ", t.choice("table", "alembic"), Str, "table",
              "How the checklist reads the database revision. table: the alembic_version table through the\n"
              "backend's DATABASE_URL and its Postgres driver (~0.1 s; `alembic current` when that cannot be\n"
              "read). alembic: `alembic current` always (~0.3-1 s), for an app whose env.py migrates another\n"
              "database or version table than DATABASE_URL's alembic_version (docs/runbook-differences.md 16).")),
    group("Policy",
          Key("CHECKLIST_BLOCKING", t.checklist_items, Strs, "env_missing_for_release",
              "Checklist items that stop a deploy when they fail (others only warn). Known items:\n"
              + " ".join(t.CHECKLIST_ITEMS[:5]) + "\n" + " ".join(t.CHECKLIST_ITEMS[5:])),
          Key("AUTO_ROLLBACK", t.boolean, bool, "true",
              "When health or smoke tests fail after `up`, put the recorded previous images back."),
          Key("STRATEGY", t.choice("recreate", "blue-green"), Str, "recreate",
              "recreate: `up -d` replaces the backend in place (a short outage). blue-green: the backend has two\n"
              "slots (BACKEND_SERVICE and BLUE_GREEN_SLOT, each with its own health URL) behind a proxy that\n"
              "retries the other one; a deploy starts the idle slot, waits until it is healthy, then stops the\n"
              "old one (docs/blue-green.md says what the compose file and the proxy need)."),
          Key("REVIEWED_MIGRATIONS", t.listing(t.revision_id), Strs, "",
              "Alembic revision ids whose operations break the code still serving (dropping or renaming a\n"
              "column or table, changing a type, a NOT NULL column without a server default) and that a person\n"
              "has reviewed: the migrations_breaking checklist item no longer blocks them under blue-green.\n"
              "A comment `# deploy: reviewed-breaking-change <who/why>` in the revision file does the same."),
          Key("BLUE_GREEN_SLOT", service, Str, "backend_green",
              "Under STRATEGY=blue-green: the compose service of the second backend slot."),
          Key("BLUE_GREEN_HEALTH_URL", url, Str, "http://localhost:8002/health",
              "Under STRATEGY=blue-green: the second slot's own health URL (checked on the host).")),
    group("Timeouts (seconds)",
          Key("COMMAND_TIMEOUT", t.seconds, float, "60", "Any remote command without a timeout of its own."),
          Key("DB_READY_TIMEOUT", t.seconds, float, "60", "Waiting for DB_READY_COMMAND to succeed."),
          Key("MIGRATE_TIMEOUT", t.seconds, float, "300", "`alembic upgrade head`."),
          Key("PULL_TIMEOUT", t.seconds, float, "600", "`compose pull`."),
          Key("UP_TIMEOUT", t.seconds, float, "300", "`compose up -d`."),
          Key("HEALTH_TIMEOUT", t.seconds, float, "120", "Waiting for HEALTH_URL to answer 200."),
          Key("HEALTH_INTERVAL", t.seconds, float, "1", "Between two health polls."),
          Key("SMOKE_TIMEOUT", t.seconds, float, "10", "One smoke request.")),
    group("Logs",
          Key("LOG_TAIL", t.count, int, "100", "Log lines read per service."),
          Key("LOG_ERROR_PATTERN", t.regex, Str, r"(?i)(\berror\b|critical|traceback|fatal|panic|connection refused)",
              "Log lines that match warn; they do not fail `verify` (old errors stay in the tail).")),
    group("Deploy lock and release record",
          Key("LOCK_STALE_AFTER", t.seconds, float, "120",
              "A lock whose heartbeat is older than this may be taken over with `fab unlock --force`."),
          Key("LOCK_HEARTBEAT", t.seconds, float, "10", "How often a running deploy refreshes its lock."),
          Key("LOCK_WAIT", t.seconds_or_zero, float, "0",
              "Wait this long for another deploy's lock before giving up (0 = refuse at once; --lock-wait)."),
          Key("RECORD_DIR", t.rel_path, Str, ".deploy",
              "Relative to APP_DIR: releases.jsonl (the release record) and lock/ live here.")),
    group("Fleets: several HOSTS (docs/fleets.md)",
          Key("BATCH_SIZE", t.batch_size, Str, "1",
              "Hosts switched at once: a count or a percentage (--parallel N overrides); 1 = rolling."),
          Key("BATCH_WAIT", t.seconds_or_zero, float, "0", "Seconds between two batches."),
          Key("FAILURE_POLICY", t.choice("stop", "revert", "continue"), Str, "revert",
              "After a host fails: stop (no new batch; switched hosts keep the new version), revert (no new\n"
              "batch; switched hosts go back, so the fleet serves one version), continue (try every host)."),
          Key("MIGRATION_HOST", t.optional(t.host), OptStr, "",
              "Where the migrations run, once, before any host switches (empty: the first of HOSTS).")),
    group("Messages",
          Key("SETUP_HINT", t.optional(t.text), OptStr, "",
              "Shown with a configuration error for this stage (what to run to make its files exist).")),
    group("Escalation contacts (runbook: Escalation Contacts)",
          *(Key(f"CONTACT_{kind}", t.contact, tuple, contact, f"Team|Response time|how to reach, for: {when}.", CONTACT)
            for kind, contact, when in (
                ("DATABASE", "DBA Team|15 minutes|page #dba-oncall", "database corruption / database failure"),
                ("INFRASTRUCTURE", "Platform Team|5 minutes|page #platform-oncall", "infrastructure down (and any other failure)"),
                ("SECURITY", "Security Team|Immediate|call the security hotline", "security incident (a changed host key)")))),
)
KEYS: tuple[Key, ...] = tuple(k for g in GROUPS for k in g.keys)
STAGE_KEYS = tuple(k for k in KEYS if k.scope == STAGE)
CONTACT_KEYS = tuple(k for k in KEYS if k.scope == CONTACT)
CONTACT_KINDS = tuple(k.name.removeprefix("CONTACT_").lower() for k in CONTACT_KEYS)
# Keys a stage file or a DEPLOY_ variable may set (GLOBAL keys are read before a stage is chosen).
PER_STAGE = tuple(k.name for k in KEYS if k.scope != GLOBAL)
