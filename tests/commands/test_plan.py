from commands.plan import deploy_plan
from config import load_settings


def test_plan_lists_the_runbook_in_order_without_connecting():
    st = load_settings("production", {})
    plan = deploy_plan(st)
    steps = []
    for step, _, _ in plan:
        if not steps or steps[-1] != step:
            steps.append(step)
    assert steps == ["connect", "start", "checklist", "prepare", "pull", "migrate", "services", "verify", "on failure", "end"]
    cmds = [c for _, _, c in plan]
    pull = cmds.index("cd /app/ai-doc-qa && docker compose -f docker-compose.production.yml pull --quiet -- backend model_server proxy")
    up = cmds.index("cd /app/ai-doc-qa && docker compose -f docker-compose.production.yml up -d")
    record_images = [i for i, (s, w, _) in enumerate(plan) if "record the running images" in w][0]
    migrate = [i for i, (s, w, _) in enumerate(plan) if s == "migrate"][0]
    assert record_images < pull < migrate < up     # images recorded before any pull (runbook note 3); pulled before migrating
    assert "git -C /app/ai-doc-qa merge --ff-only --quiet origin/main" in cmds
    assert any("exec -T backend sh -c" in c and "alembic upgrade head" in c for c in cmds)


def test_plan_for_compose_v1():
    st = load_settings("production", {})
    cmds = [c for _, _, c in deploy_plan(st, "docker-compose")]
    assert "cd /app/ai-doc-qa && docker-compose -f docker-compose.production.yml up -d" in cmds


def test_every_plan_line_is_exactly_one_builders_command():
    """Issue 7 #18: the plan printed `cat -- <app dir>/<file>` built inline, unquoted. Every command
    in the plan is now one builder's output, nothing concatenated around it."""
    from commands import alembic, compose as compose_cmd, docker, files, git, health, lock, record
    st = load_settings("production", {})
    c = compose_cmd.Compose(compose_cmd.V2, st.app_dir, st.compose_file, st.compose_project)
    remote = git.remote_ref(st.git_remote, st.git_branch)
    expected = [
        compose_cmd.PROBE_COMPOSE,
        lock.acquire(st.lock_dir, {"token": "<token>", "who": "<you>"}),
        c.ps_ids(st.services),
        docker.inspect(["<ids>"]),
        record.append(st.releases_file, "<json line>"),
        git.fetch(st.app_dir, st.git_remote, st.git_branch),
        git.migration_headers(st.app_dir, remote, st.migrations_path),
        c.exec(st.backend_service, alembic.CURRENT),
        git.show_file(st.app_dir, remote, st.env_example),
        git.state(st.app_dir),
        git.ahead_behind(st.app_dir, remote),
        git.merge_ff_only(st.app_dir, remote),
        files.read_file("/app/ai-doc-qa/.env.production"),
        files.read_file("/app/ai-doc-qa/.env.staging"),
        c.pull(st.services),
        c.up(st.dependency_services),
        c.exec_sh(st.postgres_service, st.db_ready_command),
        c.exec(st.backend_service, ["sh", "-c", alembic.MIGRATE_SCRIPT]),
        c.up(),
        c.ps_ids([*st.dependency_services, *st.services]),
        docker.inspect(["<ids>"]),
        health.curl(st.health_url, st.smoke_timeout),
        *[health.curl(u, st.smoke_timeout) for u in st.smoke_urls],
        *[c.logs(svc, st.log_tail) for svc in st.services],
        c.up(st.services, no_deps=True),
        lock.release(st.lock_dir, "<token>"),
    ]
    assert [cmd for _, _, cmd in deploy_plan(st)] == expected


def outside_quotes(line):
    """The parts of a shell line that are not inside '...' or "..." (shlex.quote only makes these)."""
    import re
    return re.sub(r"'[^']*'|\"[^\"]*\"", "", line)


def test_hostile_but_valid_app_dir_appears_in_the_plan_only_quoted(capsys):
    """Issue 7 #18: APP_DIR may hold spaces and ';' (quotes and '$' are refused by validation); pasted
    from `fab plan`, an unquoted `cat -- /srv/my app;touch x/...` ran `touch`."""
    from invoke import MockContext

    from tasks.conftest import hermetic_config
    from tasks.plan import plan

    hostile = "/srv/my app;touch pwned"
    st = load_settings("production", {"DEPLOY_APP_DIR": hostile})
    env_reads = [cmd for _, what, cmd in deploy_plan(st) if what.startswith("env diff")]
    assert env_reads == [f"if [ -f '{hostile}/.env.production' ]; then cat -- '{hostile}/.env.production'; else exit 3; fi",
                         f"if [ -f '{hostile}/.env.staging' ]; then cat -- '{hostile}/.env.staging'; else exit 3; fi"]
    import os
    os.environ["DEPLOY_APP_DIR"] = hostile
    try:
        plan(MockContext(config=hermetic_config()), stage="production")
    finally:
        del os.environ["DEPLOY_APP_DIR"]
    out = capsys.readouterr().out
    assert out.count(hostile) >= 20
    for line in out.splitlines():
        assert "my app" not in outside_quotes(line), line
