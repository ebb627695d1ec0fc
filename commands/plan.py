"""The offline preview of a deploy: every command ``fab deploy`` would run, in order, built by the
same builders the tasks use, without connecting anywhere (``fab plan``)."""
from __future__ import annotations

from commands import alembic, compose as compose_cmd, docker, files, git, health, lock, record
from config import Settings


def deploy_plan(st: Settings, compose_command: str = compose_cmd.V2) -> list[tuple[str, str, str]]:
    """(step, what, command). Conditional commands say when they run. Every command is exactly one
    builder's output (quoted, paste-able); placeholders such as <ids> are passed through the builder
    too, so they reach the shell quoted."""
    c = compose_cmd.Compose(compose_command, st.app_dir, st.compose_file, st.compose_project)
    remote = git.remote_ref(st.git_remote, st.git_branch)
    svc_all = [*st.dependency_services, *st.services]
    p: list[tuple[str, str, str]] = [
        ("connect", "detect Compose (when COMPOSE_COMMAND=auto)", compose_cmd.PROBE_COMPOSE),
        ("start", "take the deploy lock (atomic mkdir)", lock.acquire(st.lock_dir, {"token": "<token>", "who": "<you>"})),
        ("start", "record the running images (before any pull): the container IDs", c.ps_ids(st.services)),
        ("start", "record the running images: image, image ID, digests, health of those IDs", docker.inspect(["<ids>"])),
        ("start", "append to the release record (after every step)", record.append(st.releases_file, "<json line>")),
        ("checklist", "fetch to see the incoming release", git.fetch(st.app_dir, st.git_remote, st.git_branch)),
        ("checklist", "migrations at the incoming head", git.migration_headers(st.app_dir, remote, st.migrations_path)),
        ("checklist", "database revision now", c.exec(st.backend_service, alembic.CURRENT)),
        ("checklist", "documented env keys of the incoming release", git.show_file(st.app_dir, remote, st.env_example or ".env.example")),
        ("prepare", "refuse a dirty tree or another branch", git.state(st.app_dir)),
        ("prepare", "refuse diverged history", git.ahead_behind(st.app_dir, remote)),
        ("prepare", "git pull, fast-forward only", git.merge_ff_only(st.app_dir, remote)),
        *[("prepare", "env diff by key (read only, values masked)", files.read_file(files.app_file(st.app_dir, f)))
          for f in st.env_files],
        ("pull", "pull the new images first: a missing image stops here, before the database changes", c.pull(st.services)),
        ("migrate", "start the database dependencies", c.up(st.dependency_services)),
        ("migrate", "wait until postgres accepts connections", c.exec_sh(st.postgres_service, st.db_ready_command)),
        ("migrate", "alembic current, upgrade head, current, history in one exec (run --rm when no backend runs)",
         c.exec(st.backend_service, ["sh", "-c", alembic.MIGRATE_SCRIPT])),
        ("services", "recreate what changed", c.up()),
        ("services", "wait: running and healthy (polled): the container IDs", c.ps_ids(svc_all)),
        ("services", "wait: running and healthy (polled): state and health of those IDs", docker.inspect(["<ids>"])),
        ("services", "wait: backend health URL (polled)", health.curl(st.health_url, st.smoke_timeout)),
    ]
    for url in st.smoke_urls:
        p.append(("verify", "smoke test", health.curl(url, st.smoke_timeout)))
    for svc in st.services:
        p.append(("verify", "scan recent logs for errors", c.logs(svc, st.log_tail)))
    p.append(("on failure", "auto-rollback (AUTO_ROLLBACK=true): point each changed service's image reference at its "
              "recorded image ID (docker tag ID REF), then recreate them", c.up(st.services, no_deps=True)))
    p.append(("end", "release the deploy lock (only ours)", lock.release(st.lock_dir, "<token>")))
    return p
