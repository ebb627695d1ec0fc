"""Issue 11 on the staging host: the daily commands used for real, through the project's fab
(host keys checked, output redacted). Logs followed across a restart, exec returning the command's
exit code, restart under the deploy lock (and the maintenance lock), prune keeping the rollback
images, config masking a sentinel secret and naming where each value came from."""
import json
import os
import signal
import subprocess

from tests.integration.conftest import APP_DIR, FAB, ROOT, flat

STAGING = ("--stage", "staging")


def no_sentinel(sandbox, text: str) -> None:
    for value in sandbox.sentinels():
        assert value not in text


def after(started: str, out: str) -> list[str]:
    """The follower's backend lines stamped (docker's --timestamps) at or after ``started``."""
    lines = [line.split("| ", 1)[1] for line in out.splitlines() if line.startswith("backend-1") and "| " in line]
    return [line for line in lines if line[:19] >= started[:19]]


def test_logs_follow_across_a_restart_then_ctrl_c_exits_0(sandbox, tmp_path):
    sandbox.reset()
    log = tmp_path / "follow.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOY_")}
    with open(log, "w") as fh:
        follower = subprocess.Popen([FAB, "logs", "-f", "--service", "backend", "--lines", "1", *STAGING],
                                    cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        sandbox.wait_for(lambda: "backend-1" in log.read_text(), 60, "the follower's first line")
        r = sandbox.fab("restart", "backend", *STAGING)
        assert r.returncode == 0, flat(r)
        assert "restarting backend ..." in r.stdout and "backend: running, healthy" in r.stdout
        started = sandbox.container("backend")["State"]["StartedAt"]
        # each request is logged by the app: one after the restart must reach the follower
        sandbox.wait_for(lambda: sandbox.version() and after(started, log.read_text()), 60,
                         "a line the restarted backend logged")
    finally:
        follower.send_signal(signal.SIGINT)
        code = follower.wait(60)
    out = log.read_text()
    assert code == 0, out
    assert "(stopped following: Ctrl-C)" in out and "Traceback" not in out
    assert not sandbox.lock_held()
    no_sentinel(sandbox, out)


def test_exec_passes_the_exit_code_through_and_redacts(sandbox):
    sandbox.reset()
    r = sandbox.fab("exec", "backend", *STAGING, "--", "env; echo done-here; exit 7")
    assert r.returncode == 7, flat(r)
    assert "done-here" in r.stdout and "[REDACTED]" in r.stdout
    no_sentinel(sandbox, r.stdout + r.stderr)
    ok = sandbox.fab("exec", "backend", *STAGING, "--", "true")
    assert ok.returncode == 0, flat(ok)


def test_restart_waits_behind_a_maintenance_lock_and_release_lets_it_run(sandbox):
    sandbox.reset()
    r = sandbox.fab("lock", "--acquire", "-m", "disk swap", *STAGING)
    assert r.returncode == 0 and sandbox.lock_held(), flat(r)
    shown = json.loads(sandbox.fab("lock", "--json", *STAGING).stdout)
    assert shown["held"] and shown["maintenance"] and not shown["stale"] and "token" not in shown["holder"]
    refused = sandbox.fab("restart", "backend", *STAGING)
    assert refused.returncode == 6, flat(refused)
    assert "message: disk swap" in flat(refused) and "lock --release" in flat(refused)
    assert sandbox.fab("unlock", "--force", *STAGING).returncode == 6 and sandbox.lock_held()   # never stale
    deploy = sandbox.fab("deploy", *STAGING)
    assert deploy.returncode == 6, flat(deploy)
    r = sandbox.fab("lock", "--release", *STAGING)
    assert r.returncode == 0 and not sandbox.lock_held(), flat(r)
    r = sandbox.fab("restart", "model_server", *STAGING)
    assert r.returncode == 0, flat(r)


def test_prune_keeps_every_rollback_image_and_says_what_it_freed(sandbox):
    sandbox.reset()
    sandbox.ctl("version", "v2")
    assert sandbox.fab("deploy", *STAGING).returncode == 0
    v2 = sandbox.image_id("backend")
    v1 = sandbox.last_release("deploy")
    v1 = [e for e in v1 if e["event"] == "images_before"][0]["images"]["backend"]["id"]
    sandbox.docker("pull", "-q", "127.0.0.1:5000/ai-doc-qa/backend:broken")       # old junk: no release used it
    junk = json.loads(sandbox.docker("image", "inspect", "127.0.0.1:5000/ai-doc-qa/backend:broken"))[0]["Id"]
    listed = sandbox.fab("prune", "--keep", "0", *STAGING)
    assert listed.returncode == 0, flat(listed)
    assert "would remove 1 image(s)" in listed.stdout and sandbox.docker("image", "inspect", junk)
    r = sandbox.fab("prune", "--keep", "0", "--force", *STAGING)
    assert r.returncode == 0, flat(r)
    assert f"removed 1 image(s): {junk.split(':')[1][:12]}" in r.stdout and "freed " in r.stdout
    assert int(r.stdout.split("freed ")[1].split()[0]) > 0
    assert sandbox.docker("image", "inspect", junk, check=False).strip() in ("", "[]")
    for kept in (v1, v2):
        assert sandbox.docker("image", "inspect", kept)
    # the image the rollback needs is still there: the rollback works without pulling
    sandbox.ctl("break", "registry-down")
    try:
        r = sandbox.fab("rollback", *STAGING)
        assert r.returncode == 0, flat(r)
        assert sandbox.image_id("backend") == v1
    finally:
        sandbox.ctl("restore", "registry")


def test_config_masks_a_sentinel_secret_and_names_each_source(sandbox, tmp_path):
    secret = "sentinel-webhook-3f9a8b7c6d5e"
    local = tmp_path / "staging.env"
    local.write_text("LOG_TAIL=77\n")
    env = {"DEPLOY_WEBHOOK_URL": f"http://127.0.0.1:9100/hook/{secret}", "DEPLOY_LOCAL_CONFIG": str(tmp_path)}
    r = sandbox.fab("config", *STAGING, "--json", env=env)
    assert r.returncode == 0, flat(r)
    assert secret not in r.stdout + r.stderr
    keys = json.loads(r.stdout)["keys"]
    assert keys["WEBHOOK_URL"] == {"value": "[REDACTED]", "source": "environment variable DEPLOY_WEBHOOK_URL"}
    assert keys["APP_DIR"] == {"value": str(APP_DIR), "source": "config/staging.env"}
    assert keys["LOG_TAIL"] == {"value": "77", "source": f"{local} ($DEPLOY_LOCAL_CONFIG)"}
    assert keys["AUTO_ROLLBACK"]["source"] == "config/staging.env" and keys["LOCK_WAIT"]["source"] == "config/defaults.env"
    # and the stage it describes is the one a task uses: status runs on it with the same override
    s = sandbox.fab("status", *STAGING, "--json", env=env)
    assert s.returncode == 0 and json.loads(s.stdout)["healthy"], flat(s)
    assert secret not in s.stdout + s.stderr


def test_restart_and_exec_of_backend_under_blue_green_use_the_serving_slot(sandbox):
    """Seen: after a blue-green deploy (v2 in backend_green), `fab restart backend` started the
    stopped old slot on v1 and the proxy answered v1 and v2 in turn; `fab exec backend` failed
    with "service backend is not running"."""
    from tests.integration.test_blue_green import BLUE_GREEN, running
    sandbox.reset()
    sandbox.ctl("version", "v2")
    assert sandbox.fab("deploy", *STAGING, env=BLUE_GREEN).returncode == 0
    assert running(sandbox, "backend_green") and not running(sandbox, "backend")
    r = sandbox.fab("restart", "backend", *STAGING, env=BLUE_GREEN)
    assert r.returncode == 0, flat(r)
    assert "restarting backend_green ..." in r.stdout
    assert not running(sandbox, "backend")
    assert {sandbox.version() for _ in range(6)} == {"v2"}        # the proxy reaches one slot only
    e = sandbox.fab("exec", "backend", *STAGING, "--", "echo in-slot", env=BLUE_GREEN)
    assert e.returncode == 0 and "in-slot" in e.stdout, flat(e)
    assert not sandbox.lock_held()
