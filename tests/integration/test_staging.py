"""Issue 3: deploy, break and roll back the sample app on the real staging host, through `fab`."""
import os

import pytest

from tests.integration.conftest import BACKEND, PROXY, flat

STAGING = ["--stage", "staging"]


def fab_ok(sandbox, *args, env=None):
    r = sandbox.fab(*args, env=env)
    assert r.returncode == 0, f"fab {' '.join(args)} exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


@pytest.mark.parametrize("compose", ["v2", "v1"])
def test_deploy_v1_to_v2(sandbox, compose):
    sandbox.reset(compose)
    assert sandbox.version() == "v1"
    rows_before = sandbox.documents()
    sandbox.ctl("version", "v2")
    r = fab_ok(sandbox, "deploy", *STAGING)
    out = r.stdout
    for i, step in enumerate(["checklist", "prepare", "pull", "migrate", "services", "verify"], 1):
        assert f"[{i}/6] {step} ..." in out
    assert "Bottleneck:" in out and "Outcome: SUCCESS" in out
    # v2 is served by the backend and through the proxy
    assert sandbox.version(BACKEND) == "v2" and sandbox.version(PROXY) == "v2"
    # the migration ran, and the rows are still there (with the new column)
    assert sandbox.alembic_current() == "0002"
    rows = sandbox.documents()
    assert [d["id"] for d in rows] == [d["id"] for d in rows_before] and all("summary" in d for d in rows)
    # the release record holds who/when/git/images/steps with timings/outcome
    rel = sandbox.last_release("deploy")
    events = [e["event"] for e in rel]
    assert events[0] == "start" and events[-1] == "end"
    end = rel[-1]
    assert end["outcome"] == "success" and end["seconds"] > 0 and end["bottleneck"]
    git = [e for e in rel if e["event"] == "git"][0]
    assert git["before"] != git["after"] and sandbox.head() == git["after"]
    before = [e for e in rel if e["event"] == "images_before"][0]
    after = [e for e in rel if e["event"] == "images_after"][0]
    assert before["healthy"] and after["healthy"]
    assert before["images"]["backend"]["id"] != after["images"]["backend"]["id"]
    assert after["images"]["backend"]["id"] == sandbox.image_id("backend")
    steps = {(e["step"], e["sub"]) for e in rel if e["event"] == "step"}
    assert ("pull", None) in steps
    for s in [("migrate", "alembic"), ("services", "up"), ("services", "health wait"), ("verify", "smoke")]:
        assert s in steps
    assert all(e["seconds"] >= 0 for e in rel if e["event"] == "step")
    assert not sandbox.lock_held()


@pytest.mark.parametrize("compose", ["v2", "v1"])
def test_broken_image_fails_health_and_rollback_restores_v2(sandbox, compose):
    sandbox.reset(compose)
    sandbox.ctl("version", "v2")
    fab_ok(sandbox, "deploy", *STAGING)
    v2_id = sandbox.image_id("backend")
    rows = sandbox.documents()
    sandbox.ctl("version", "broken")
    r = sandbox.fab("deploy", *STAGING, env={"DEPLOY_AUTO_ROLLBACK": "false"})
    assert r.returncode == 4, r.stdout + r.stderr
    out = flat(r)
    assert "FAILED at services › health wait" in out and "unhealthy; last healthcheck said: curl: (22)" in out
    assert "Next: fab -H ai-doc-qa-staging rollback" in out
    assert "Host state: NOT healthy" in out
    assert sandbox.image_id("backend") != v2_id
    assert sandbox.last_release("deploy")[-1]["outcome"] == "failed"
    # rollback with no argument goes back to the v2 image, by image ID (the tag `latest` is broken now)
    r = fab_ok(sandbox, "rollback", *STAGING)
    assert sandbox.image_id("backend") == v2_id
    assert sandbox.version(PROXY) == "v2"
    assert sandbox.documents() == rows
    rel = sandbox.last_release("rollback")
    assert rel[-1]["outcome"] == "success"
    assert [e for e in rel if e["event"] == "images_after"][0]["images"]["backend"]["id"] == v2_id
    assert not sandbox.lock_held()


def test_deploy_refuses_a_dirty_tree_and_changes_nothing(sandbox):
    sandbox.reset()
    sandbox.ctl("version", "v2")
    sandbox.ctl("break", "dirty-tree")
    head, image = sandbox.head(), sandbox.image_id("backend")
    r = sandbox.fab("deploy", *STAGING)
    assert r.returncode == 3
    out = flat(r)
    assert "local changes to tracked files" in out and "M VERSION" in out
    assert "nothing changed" in out and "Traceback" not in out
    assert sandbox.head() == head and sandbox.image_id("backend") == image
    assert sandbox.alembic_current() == "0001" and sandbox.version() == "v1"
    assert not sandbox.lock_held()


def test_check_db_finds_stopped_postgres_and_fix_brings_it_back(sandbox):
    sandbox.reset()
    sandbox.ctl("break", "postgres-down")
    r = sandbox.fab("check-db", *STAGING)
    assert r.returncode == 3, r.stdout + r.stderr
    out = flat(r)
    assert "postgres is exited" in out and "check-db --fix" in out
    assert "Database corruption / database failure -> DBA Team" in out
    r = fab_ok(sandbox, "check-db", "--fix", *STAGING)
    assert "restarted and now healthy" in r.stdout and "connection from backend: connected" in r.stdout
    assert sandbox.container("postgres")["State"]["Health"]["Status"] == "healthy"
    assert len(sandbox.documents()) == 3


def test_diagnose_names_the_oom_restart_loop_and_context_size(sandbox):
    sandbox.reset()
    sandbox.ctl("break", "context-size", "200000")
    sandbox.wait_for(lambda: sandbox.container("model_server")["State"]["OOMKilled"], 30, "model_server OOM kill")
    r = sandbox.fab("diagnose", *STAGING)
    assert r.returncode == 3, r.stdout + r.stderr
    out = flat(r)
    assert "model_server was OOM-killed" in out
    assert "CONTEXT_SIZE=200000" in out and "reduce CONTEXT_SIZE" in out
    r = sandbox.fab("check-restarts", *STAGING)
    assert r.returncode == 3 and "OOM-killed" in flat(r)


def test_check_model_server_sees_a_hang(sandbox):
    sandbox.reset()
    sandbox.ctl("break", "model-hang")
    r = sandbox.fab("check-model-server", *STAGING)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "timed out: the request hung" in flat(r) and "CONTEXT_SIZE" in flat(r)


def test_smoke_fails_when_the_proxy_is_down(sandbox):
    sandbox.reset()
    fab_ok(sandbox, "smoke", *STAGING)
    sandbox.ctl("break", "proxy-down")
    r = sandbox.fab("smoke", *STAGING)
    assert r.returncode == 4
    assert "http://127.0.0.1:8080/api/v1/documents from the host: connection refused" in flat(r)


def test_env_diff_shows_changed_keys_and_never_the_secrets(sandbox):
    sandbox.reset()
    r = fab_ok(sandbox, "env-diff", *STAGING, "--show", "APP_ENV,SECRET_KEY")
    out = r.stdout + r.stderr
    assert "only in .env.production  LEGACY_CACHE_TTL" in out
    assert "only in .env.staging     STAGING_BANNER" in out
    assert "changed                  APP_ENV            production" in out
    assert "changed                  SECRET_KEY         ****** (secret)" in out
    secrets = sandbox.sentinels()
    assert len(secrets) >= 4
    assert not [s for s in secrets if s in out]


def test_unknown_and_changed_host_keys_are_refused(sandbox, tmp_path):
    sandbox.reset()
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    r = sandbox.fab("status", *STAGING, env={"DEPLOY_KNOWN_HOSTS": str(empty)})
    assert r.returncode == 5
    out = flat(r)
    assert "the host key of [127.0.0.1]:2222 is not known: offered ssh-ed25519 SHA256:" in out
    # first setup: what to fix, and nobody is paged (issue 7.17)
    assert "--accept-new-host-key" in out and "Escalate: nobody: a setup problem" in out
    assert "Security incident" not in out
    # a different key recorded for the host: refused as a changed key
    other = tmp_path / "other_key"
    os.system(f"ssh-keygen -q -t ed25519 -N '' -f {other}")
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text("[127.0.0.1]:2222 " + " ".join((tmp_path / "other_key.pub").read_text().split()[:2]) + "\n")
    r = sandbox.fab("status", *STAGING, env={"DEPLOY_KNOWN_HOSTS": str(wrong)})
    assert r.returncode == 5 and "has CHANGED" in flat(r) and "Traceback" not in flat(r)
    assert "Escalate: Security incident -> Security Team" in flat(r)     # a changed key stays an incident
    # issue 7 #13: on port 2222 the entry is named [127.0.0.1]:2222; `ssh-keygen -R 127.0.0.1` removes nothing
    assert f"ssh-keygen -R '[127.0.0.1]:2222' -f {wrong}" in flat(r)
    # the explicit opt-in records an unknown key on first use; a changed key stays refused
    r = sandbox.fab("status", *STAGING, "--accept-new-host-key", env={"DEPLOY_KNOWN_HOSTS": str(empty)})
    assert r.returncode == 0, r.stderr
    assert "[127.0.0.1]:2222 ssh-ed25519" in empty.read_text()
    assert sandbox.fab("status", *STAGING, env={"DEPLOY_KNOWN_HOSTS": str(empty)}).returncode == 0
    r = sandbox.fab("status", *STAGING, "--accept-new-host-key", env={"DEPLOY_KNOWN_HOSTS": str(wrong)})
    assert r.returncode == 5 and "has CHANGED" in flat(r)


def test_rollback_without_a_healthy_release_refuses_with_the_list(sandbox):
    sandbox.reset()                                      # nothing recorded yet
    r = sandbox.fab("rollback", *STAGING)
    out = flat(r)
    assert r.returncode == 8, out
    # the only healthy image set on record is the one running now (recorded by this very run)
    assert "no valid rollback target: every recorded healthy image set is what runs now" in out
    assert "known healthy image sets, newest first" in out
    assert "rollback --to <release id | image tag | image id>" in out
    assert not sandbox.lock_held()
    # an explicit tag works even without a record: v1 is in the registry
    sandbox.ctl("version", "v2")
    fab_ok(sandbox, "deploy", *STAGING)
    r = fab_ok(sandbox, "rollback", *STAGING, "--to", "v1")
    assert sandbox.version() == "v1" and sandbox.image_id("backend") == sandbox.registry_image_id("v1")


def test_dry_run_reads_real_state_and_changes_nothing(sandbox):
    sandbox.reset()
    sandbox.ctl("version", "v2")
    head, image = sandbox.head(), sandbox.image_id("backend")
    r = fab_ok(sandbox, "--dry", "deploy", *STAGING)
    out = flat(r)
    assert "[dry] would run: git -C" in out and "merge --ff-only" in out
    assert "[dry] would run: cd" in out and "pull --quiet -- backend model_server proxy" in out
    assert "current 0001 -> head 0002: 1 pending" in out          # real state was read
    assert "Outcome: DRY RUN, nothing was changed" in out
    assert sandbox.head() == head and sandbox.image_id("backend") == image and sandbox.alembic_current() == "0001"
    assert sandbox.records() == [] and not sandbox.lock_held()
    r = fab_ok(sandbox, "plan", *STAGING)                          # offline: no connection at all
    assert "nothing is run" in r.stdout and "merge --ff-only" in r.stdout


def test_status_history_and_json_record(sandbox):
    sandbox.reset()
    sandbox.ctl("version", "v2")
    r = sandbox.fab("deploy", *STAGING, "--json")
    assert r.returncode == 0, flat(r)
    import json
    rec = json.loads(r.stdout)                                      # only JSON on stdout; progress on stderr
    assert rec["outcome"] == "success" and rec["kind"] == "deploy" and rec["seconds"] > 0
    assert rec["images_after"]["backend"]["id"] == sandbox.image_id("backend")
    assert "[1/6] checklist" in r.stderr
    r = fab_ok(sandbox, "status", *STAGING)
    assert "version v2" in r.stdout and "deploy lock: free" in r.stdout and rec["id"] in r.stdout
    r = fab_ok(sandbox, "history", *STAGING)
    assert rec["id"] in r.stdout and "success" in r.stdout


def test_first_deploy_with_no_container_running_uses_run_rm(sandbox):
    sandbox.reset()
    sandbox.ctl("version", "v2")
    sandbox.compose("down")                               # no container at all; the database volume stays
    r = fab_ok(sandbox, "deploy", *STAGING)
    out = flat(r)
    assert "nothing is running: a first deploy has nothing to roll back to" in out
    assert "no running backend container: using `run --rm` (first deploy)" in out
    assert "migrations applied: database at revision 0002 (was 0001)" in out
    assert sandbox.version() == "v2" and len(sandbox.documents()) == 3
    assert sandbox.last_release("deploy")[-1]["outcome"] == "success"


def test_production_checklist_flags_migrations_staging_has_not_applied(sandbox):
    """The production stage asks the staging host (TESTED_ON_STAGE) whether each pending revision
    has been applied there. Here "production" is pointed at the sandbox too, with v2 pending."""
    sandbox.reset()
    sandbox.ctl("version", "v2")
    client = "/var/lib/ai-doc-qa-sandbox/client"
    env = {"DEPLOY_PRODUCTION_HOSTS": "ai-doc-qa-staging", "DEPLOY_PRODUCTION_SSH_CONFIG": f"{client}/ssh_config",
           "DEPLOY_PRODUCTION_KNOWN_HOSTS": f"{client}/known_hosts",
           "DEPLOY_PRODUCTION_APP_DIR": "/var/lib/ai-doc-qa-sandbox/app/ai-doc-qa",
           "DEPLOY_PRODUCTION_MONITORING_URL": "http://127.0.0.1:9100/dashboard"}
    r = sandbox.fab("checklist", "--stage", "production", env=env)
    out = flat(r)
    assert r.returncode == 9, out
    assert "migrations_untested BLOCK UNTESTED: 0002 not applied on staging (at 0001); deploy there first" in out
    assert "current 0001 -> head 0002: 1 pending" in out


def test_each_runbook_section_runs_on_its_own(sandbox):
    """prepare, migrate, services, verify as separate tasks reach the same end state as deploy,
    each locked and recorded."""
    sandbox.reset()
    sandbox.ctl("version", "v2")
    r = fab_ok(sandbox, "prepare", *STAGING)
    assert "1 commit(s) pulled" in r.stdout and sandbox.alembic_current() == "0001"
    r = fab_ok(sandbox, "migrate", *STAGING)
    assert "migrations applied: database at revision 0002 (was 0001)" in r.stdout
    assert sandbox.version() == "v1"                      # code migrated, services not yet switched
    r = fab_ok(sandbox, "services", *STAGING)
    assert "downtime of" in r.stdout and sandbox.version() == "v2"
    r = fab_ok(sandbox, "verify", *STAGING)
    assert "verify passed" in r.stdout
    kinds = [e["kind"] for e in sandbox.records() if e["event"] == "start"]
    assert kinds == ["prepare", "migrate", "services"]
    ends = [e["outcome"] for e in sandbox.records() if e["event"] == "end"]
    assert ends == ["success"] * 3 and not sandbox.lock_held()
