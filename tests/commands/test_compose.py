import shlex

from commands import compose
from commands.compose import Compose, parse_compose_probe, parse_ps_ids

V2 = Compose("docker compose", "/app/ai-doc-qa", "docker-compose.production.yml")
V1 = Compose("docker-compose", "/app/ai-doc-qa", "docker-compose.production.yml")
BASE2 = "cd /app/ai-doc-qa && docker compose -f docker-compose.production.yml"
BASE1 = "cd /app/ai-doc-qa && docker-compose -f docker-compose.production.yml"


def test_ps_ids_includes_stopped_containers_in_both_generations():
    assert V2.ps_ids(["backend", "proxy"]) == f"{BASE2} ps -a -q -- backend proxy"
    # v1's ps lists stopped containers by default and has no -a
    assert V1.ps_ids(["backend"]) == f"{BASE1} ps -q -- backend"
    assert V2.ps_ids() == f"{BASE2} ps -a -q"


def test_pull_up_restart_stop_logs():
    assert V2.pull(["backend", "model_server"]) == f"{BASE2} pull --quiet -- backend model_server"
    assert V2.up() == f"{BASE2} up -d"
    assert V2.up(["postgres", "redis"]) == f"{BASE2} up -d -- postgres redis"
    assert V1.up(["backend"], no_deps=True) == f"{BASE1} up -d --no-deps -- backend"
    assert V2.restart(["postgres"]) == f"{BASE2} restart -- postgres"
    assert V1.stop(["backend_green"]) == f"{BASE1} stop -- backend_green"
    assert V2.logs("backend", 100) == f"{BASE2} logs --no-color --tail=100 -- backend"


def test_exec_has_no_tty_and_quotes_the_command():
    assert V2.exec("backend", ["alembic", "upgrade", "head"]) == f"{BASE2} exec -T backend alembic upgrade head"
    cmd = V2.exec_sh("backend", 'python -c "from app.db import engine; engine.connect()"')
    assert cmd == f"""{BASE2} exec -T backend sh -c 'python -c "from app.db import engine; engine.connect()"'"""
    assert shlex.split(cmd)[-1] == 'python -c "from app.db import engine; engine.connect()"'


def test_run_rm_for_first_deploy():
    assert V1.run_rm("backend", ["alembic", "upgrade", "head"]) == f"{BASE1} run --rm -T backend alembic upgrade head"


def test_project_and_paths_with_spaces():
    c = Compose("docker compose", "/srv/ai doc;qa", "compose prod.yml", project="aidocqa")
    assert c.up() == "cd '/srv/ai doc;qa' && docker compose -f 'compose prod.yml' -p aidocqa up -d"
    assert shlex.split(c.up())[1] == "/srv/ai doc;qa"


def test_probe_parsing():
    assert parse_compose_probe("v2 2.26.1\n") == ("docker compose", "2.26.1")
    assert parse_compose_probe("v1 1.29.2\n") == ("docker-compose", "1.29.2")
    assert parse_compose_probe("none\n") == (None, "")


def test_ps_ids_ignore_warnings():
    out = ('time="2026-11-27T21:49:16Z" level=warning msg="the attribute `version` is obsolete"\n'
           "3f2c1a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a\n\n"
           "0123456789ab\n")
    assert parse_ps_ids(out) == ["3f2c1a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a", "0123456789ab"]


def test_the_compose_probe_starts_docker_compose_v1_once(tmp_path):
    """docker-compose v1 takes ~0.6 s to start: the probe ran it twice (once to see that it works,
    once for its version). Run here with stand-ins for docker (no compose plugin) and docker-compose."""
    import subprocess
    calls = tmp_path / "calls"
    (tmp_path / "docker").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "docker-compose").write_text(f"#!/bin/sh\necho run >> {calls}\necho 1.29.2\n")
    for f in ("docker", "docker-compose"):
        (tmp_path / f).chmod(0o755)
    r = subprocess.run(["/bin/sh", "-c", compose.PROBE_COMPOSE], capture_output=True, text=True,
                       env={"PATH": str(tmp_path)})
    assert parse_compose_probe(r.stdout) == ("docker-compose", "1.29.2")
    assert calls.read_text().count("run") == 1
    (tmp_path / "docker-compose").unlink()
    r = subprocess.run(["/bin/sh", "-c", compose.PROBE_COMPOSE], capture_output=True, text=True,
                       env={"PATH": str(tmp_path)})
    assert r.stdout == "none\n"


def test_image_naming_files_add_an_odd_compose_file_name_and_the_env_beside_it():
    from commands.compose import image_naming_files
    assert image_naming_files("docker-compose.production.yml") == ["*.yml", "*.yaml", ".env"]
    assert image_naming_files("deploy/compose.yaml") == ["*.yml", "*.yaml", ".env", "deploy/.env"]
    assert image_naming_files("stack.compose") == ["*.yml", "*.yaml", ".env", "stack.compose"]
