"""Issue 4: the fault matrix, proven on the staging host. Each test asserts the end state (what is
serving, the database, the lock, the release record), not just the exit code."""
import base64
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from tests.integration.conftest import ALL_OUTPUT, APP_DIR, CTL, PROXY, SANDBOX_ROOT, flat

STAGING = ["--stage", "staging"]
FAST_LOCK = {"DEPLOY_LOCK_HEARTBEAT": "1", "DEPLOY_LOCK_STALE_AFTER": "4"}


def container_ids(sandbox):
    return {svc: sandbox.container(svc)["Id"] for svc in ("backend", "model_server", "proxy", "postgres", "redis")}


def wait_for_event(sandbox, proc, predicate, timeout, what):
    def seen():
        assert proc.poll() is None, f"fab ended early ({proc.returncode}):\n{proc.stdout.read()}"
        return any(predicate(e) for e in sandbox.records())
    sandbox.wait_for(seen, timeout, what, interval=0.1)


def test_migration_fails_nothing_restarted_and_database_reported(sandbox):
    sandbox.reset()
    sandbox.ctl("break", "bad-migration")
    ids = container_ids(sandbox)
    r = sandbox.fab("deploy", *STAGING)
    out = flat(r)
    assert r.returncode == 3, out
    assert "FAILED at migrate › alembic" in out and "alembic upgrade head failed" in out
    assert "no_such_table" in out                                   # the migration's own error, in the tail
    assert "Database corruption / database failure -> DBA Team" in out
    assert "migration failed: database at revision 0001" in out and "services not changed" in out
    assert container_ids(sandbox) == ids and sandbox.version() == "v1"
    assert sandbox.alembic_current() == "0001"                      # transactional DDL: all rolled back
    assert len(sandbox.documents()) == 3
    end = sandbox.last_release()[-1]
    assert end["outcome"] == "failed" and end["error"]["step"] == "migrate › alembic"
    assert not sandbox.lock_held()


@pytest.mark.parametrize("fault", ["missing-tag", "registry-down"])
def test_pull_failure_restarts_nothing_and_changes_no_database(sandbox, fault):
    sandbox.reset()
    sandbox.ctl("version", "v2")
    if fault == "missing-tag":
        sandbox.ctl("break", "missing-tag", "latest")
    else:
        sandbox.ctl("break", "registry-down")
    ids = container_ids(sandbox)
    try:
        r = sandbox.fab("deploy", *STAGING)
        out = flat(r)
        assert r.returncode == 3, out
        assert "FAILED at pull" in out and "no container was restarted" in out
        assert ("manifest unknown" in out or "not found" in out) if fault == "missing-tag" else ("connection refused" in out)
        assert container_ids(sandbox) == ids and sandbox.version() == "v1"
        assert sandbox.alembic_current() == "0001"                  # pulled before migrating: the database is untouched
        assert sandbox.last_release()[-1]["outcome"] == "failed" and not sandbox.lock_held()
    finally:
        sandbox.ctl("restore", "registry" if fault == "registry-down" else "tags")


def test_new_image_fails_health_auto_rollback_serves_the_old_version(sandbox):
    sandbox.reset()
    sandbox.ctl("version", "v2")
    assert sandbox.fab("deploy", *STAGING).returncode == 0
    v2_id = sandbox.image_id("backend")
    sandbox.ctl("version", "broken")
    r = sandbox.fab("deploy", *STAGING)          # AUTO_ROLLBACK=true is the default
    out = flat(r)
    assert r.returncode == 7, out
    assert "the previous images were restored automatically and are healthy" in out
    assert "serving the PREVIOUS version again" in out
    assert sandbox.image_id("backend") == v2_id and sandbox.version() == "v2"
    rel = sandbox.last_release("deploy")
    assert rel[-1]["outcome"] == "rolled_back"
    before = [e for e in rel if e["event"] == "images_before"][0]["images"]["backend"]["id"]
    after = [e for e in rel if e["event"] == "images_after"][0]["images"]["backend"]["id"]
    assert before == after == v2_id
    assert {e["step"] for e in rel if e["event"] == "step"} >= {"services", "auto-rollback"}
    # a later manual rollback never picks the broken image: only healthy releases are targets
    r = sandbox.fab("history", *STAGING)
    assert r.returncode == 0 and "rolled_back" in r.stdout


def test_smoke_failure_after_up_rolls_back(sandbox):
    sandbox.reset()
    v1_id = sandbox.image_id("backend")
    sandbox.ctl("version", "v2")
    urls = f"{PROXY}/api/v1/documents,{PROXY}/api/v1/no-such-endpoint"
    r = sandbox.fab("deploy", *STAGING, env={"DEPLOY_SMOKE_URLS": urls})
    out = flat(r)
    assert r.returncode == 7, out
    assert "FAILED at verify › smoke" in out and "no-such-endpoint from the host: HTTP 404" in out
    assert "the smoke tests FAIL on the previous version too" in out
    assert sandbox.image_id("backend") == v1_id and sandbox.version() == "v1"
    assert sandbox.alembic_current() == "0002"          # migrations are reported, never pretended undone
    assert "migrations applied: database at revision 0002 (was 0001)" in out
    assert sandbox.last_release()[-1]["outcome"] == "rolled_back"


def kill_ssh_sessions():
    subprocess.run(["pkill", "-KILL", "-f", "^sshd: deploy"], check=False)


def migration_running() -> bool:
    """The migration step's command runs as deploy on the host: it has handed the migration to the
    Python the deploy started during the checklist and waits for its exit status (commands/prestart.py;
    that Python, importing alembic.config since the checklist, is no sign the migration began)."""
    return subprocess.run(["pgrep", "-u", "deploy", "-f", "do sleep 0.02; done"], capture_output=True).returncode == 0


def test_ssh_connection_dropped_mid_deploy_host_still_reachable(sandbox):
    """The connection dies while the migration runs: the result is unknown. The tool reconnects,
    lets the migration finish on the host, names the revision it left (it said "may be at the new
    revision"), stops what this run left running, releases the lock; the services were not touched."""
    sandbox.reset()
    sandbox.ctl("version", "v2")
    proc = sandbox.fab_background("deploy", *STAGING)
    wait_for_event(sandbox, proc, lambda e: e["event"] == "step" and e["step"] == "migrate" and e["sub"] == "db ready",
                   60, "database ready")
    sandbox.wait_for(migration_running, 10, "the migration's process on the host", interval=0.02)
    kill_ssh_sessions()
    out = sandbox.finish(proc, 180)
    text = " ".join(out.split())
    assert proc.returncode == 5, out                 # lost during the migration: services not changed
    assert "lost the SSH connection" in text and "re-established" in text
    assert ("alembic upgrade head was let finish after the SSH connection was lost and came back: database at revision "
            "0002 (was 0001); services not changed") in text
    assert sandbox.alembic_current() == "0002" and sandbox.version() == "v1"
    assert not sandbox.lock_held()
    assert sandbox.last_release()[-1]["outcome"] == "failed"
    r = sandbox.fab("deploy", *STAGING)                 # the re-run completes
    assert r.returncode == 0, flat(r)
    assert sandbox.version() == "v2" and sandbox.alembic_current() == "0002"


def test_ssh_connection_dropped_as_compose_up_begins_serves_the_old_version_again(sandbox):
    """The connection dies 0.05 s after the migrate step, as `compose up` recreates the backend.
    TERMed half-way (kill_running), `up` left a renamed container whose name the rollback's
    `compose up` then hit (exit 8, neither version serving, 2 of 2 before the fix); writing its
    progress to the dead channel, it died at its next write. Its output now stays on the host
    until it ends, so it runs to its end; the tool waits for it, stops the rest and rolls back."""
    sandbox.reset()
    sandbox.ctl("version", "v2")
    proc = sandbox.fab_background("deploy", *STAGING)
    wait_for_event(sandbox, proc, lambda e: e["event"] == "step" and e["step"] == "migrate" and e["sub"] is None,
                   60, "migrate done")
    time.sleep(0.05)
    kill_ssh_sessions()
    out = sandbox.finish(proc, 240)
    text = " ".join(out.split())
    assert proc.returncode in (0, 7), out           # 7: lost in services, rolled back (0: the kill came too late)
    assert "NEITHER VERSION" not in text and not sandbox.lock_held()
    assert sandbox.version() == ("v2" if proc.returncode == 0 else "v1")
    if proc.returncode == 7:
        assert "letting this run's commands that change the host finish first" in text


def test_ssh_connection_lost_and_host_unreachable_then_takeover_and_rerun(sandbox):
    sandbox.reset()
    sandbox.ctl("version", "v2")
    proc = sandbox.fab_background("deploy", *STAGING, env=FAST_LOCK)
    wait_for_event(sandbox, proc, lambda e: e["event"] == "step" and e["step"] == "pull" and e["sub"] is None, 60, "pull done")
    pid = int((SANDBOX_ROOT / "run" / "sshd.pid").read_text())
    os.kill(pid, signal.SIGKILL)                        # the listener first: no reconnect is possible
    kill_ssh_sessions()
    try:
        out = sandbox.finish(proc, 180)
        text = " ".join(out.split())
        assert proc.returncode == 5, out
        assert "lost the SSH connection" in text and "the host is unreachable" in text
        assert "unlock --force" in text and "Traceback" not in text
        assert sandbox.lock_held()                      # nobody could release it
    finally:
        sandbox.ctl("up")                               # sshd back (the network "returns")
    time.sleep(5)                                       # heartbeat older than LOCK_STALE_AFTER=4
    r = sandbox.fab("deploy", *STAGING, env=FAST_LOCK)
    assert r.returncode == 6 and "the holder looks gone" in flat(r)
    r = sandbox.fab("unlock", *STAGING, env=FAST_LOCK)
    assert r.returncode == 6 and "needs --force" in flat(r)
    assert sandbox.fab("unlock", "--force", *STAGING, env=FAST_LOCK).returncode == 0
    assert any(e["event"] == "lock_takeover" for e in sandbox.records())
    r = sandbox.fab("deploy", *STAGING, env=FAST_LOCK)
    assert r.returncode == 0, flat(r)
    assert sandbox.version() == "v2" and sandbox.alembic_current() == "0002" and not sandbox.lock_held()


def test_ctrl_c_mid_deploy_releases_the_lock_and_records_aborted(sandbox):
    sandbox.reset()
    sandbox.ctl("version", "v2")
    proc = sandbox.fab_background("deploy", *STAGING)
    wait_for_event(sandbox, proc, lambda e: e["event"] == "step" and e["step"] == "migrate" and e["sub"] is None, 60, "migrate done")
    proc.send_signal(signal.SIGINT)
    out = sandbox.finish(proc, 90)
    assert proc.returncode == 130, out
    assert "INTERRUPTED" in out and "Traceback" not in out
    assert not sandbox.lock_held()
    assert sandbox.last_release()[-1]["outcome"] == "aborted"
    # interrupted after migrate: `up` (if running) was let finish, then the unverified new images
    # were replaced by the recorded previous ones: the old version serves, the record says so
    assert sandbox.version() == "v1", out
    # the signal lands either before `up` (nothing switched: "still serving the old version: v1 (...")
    # or after it (the previous images put back: "serving v1 (..."); both must name v1 and only v1
    serving = sandbox.last_release()[-1]["serving"]
    assert serving.startswith(("serving v1 (", "still serving the old version: v1 (")), serving
    r = sandbox.fab("deploy", *STAGING)
    assert r.returncode == 0 and sandbox.version() == "v2"


def test_two_deploys_at_once_one_is_refused(sandbox):
    sandbox.reset()
    sandbox.ctl("version", "v2")
    first = sandbox.fab_background("deploy", *STAGING, "--message", "first")
    sandbox.wait_for(sandbox.lock_held, 30, "first deploy to take the lock", interval=0.05)
    r = sandbox.fab("deploy", *STAGING, "--message", "second")
    out = flat(r)
    assert r.returncode == 6, out
    assert "another deploy holds the lock: held by" in out and "message: first" in out
    assert first.wait(timeout=180) == 0
    ALL_OUTPUT.append(first.stdout.read())
    assert sandbox.version() == "v2" and not sandbox.lock_held()
    # --lock-wait waits for the holder instead of refusing
    first = sandbox.fab_background("deploy", *STAGING)
    sandbox.wait_for(sandbox.lock_held, 30, "deploy to take the lock", interval=0.05)
    r = sandbox.fab("deploy", *STAGING, "--lock-wait", "120")
    assert r.returncode == 0 and "waiting up to 120 s for the deploy lock" in flat(r)
    assert first.wait(timeout=180) == 0


def test_stale_lock_from_a_killed_run_is_detected_and_taken_over(sandbox):
    sandbox.reset()
    proc = sandbox.fab_background("deploy", *STAGING, env=FAST_LOCK)
    sandbox.wait_for(sandbox.lock_held, 30, "deploy to take the lock", interval=0.05)
    proc.send_signal(signal.SIGKILL)                   # no cleanup possible
    proc.wait()
    r = sandbox.fab("lock", *STAGING, env=FAST_LOCK)
    assert r.returncode == 0 and "deploy lock: held by" in r.stdout
    sandbox.wait_for(lambda: "STALE:" in sandbox.fab("lock", *STAGING, env=FAST_LOCK).stdout, 20, "lock to go stale", interval=1)
    r = sandbox.fab("unlock", "--force", *STAGING, env=FAST_LOCK)
    assert r.returncode == 0 and "stale lock taken over" in r.stdout, flat(r)
    takeover = [e for e in sandbox.records() if e["event"] == "lock_takeover"][-1]
    assert takeover["previous_holder"]["task"] == "deploy" and takeover["heartbeat_age"] > 4
    assert "token" not in takeover["previous_holder"]
    assert sandbox.fab("deploy", *STAGING).returncode == 0


def test_live_lock_is_never_broken(sandbox):
    sandbox.reset()
    proc = sandbox.fab_background("deploy", *STAGING)
    sandbox.wait_for(sandbox.lock_held, 30, "deploy to take the lock", interval=0.05)
    r = sandbox.fab("unlock", "--force", *STAGING)
    assert r.returncode == 6 and "the lock is live" in flat(r)
    assert proc.wait(timeout=180) == 0


def test_diverged_history_is_refused_with_nothing_changed(sandbox):
    sandbox.reset()
    sandbox.ctl("break", "diverged")
    head, ids = sandbox.head(), container_ids(sandbox)
    r = sandbox.fab("deploy", *STAGING)
    out = flat(r)
    assert r.returncode == 3 and "history has diverged" in out and "Hotfix on the server" in out
    assert sandbox.head() == head and container_ids(sandbox) == ids and not sandbox.lock_held()


def test_postgres_down_before_deploy_is_started_by_the_migrate_step(sandbox):
    sandbox.reset()
    sandbox.ctl("version", "v2")
    sandbox.ctl("break", "postgres-down")
    r = sandbox.fab("deploy", *STAGING)
    assert r.returncode == 0, flat(r)
    assert "(not healthy)" in r.stdout                  # the run said what it found before changing anything
    assert "alembic current failed" in r.stdout
    assert sandbox.version() == "v2" and len(sandbox.documents()) == 3


@pytest.mark.parametrize("key,value", [
    ("DEPLOY_GIT_BRANCH", "main;touch /tmp/ai-doc-qa-pwned"),
    ("DEPLOY_SERVICES", "backend,$(touch /tmp/ai-doc-qa-pwned)"),
    ("DEPLOY_APP_DIR", "/tmp/x`touch /tmp/ai-doc-qa-pwned`"),
    ("DEPLOY_HEALTH_URL", "http://127.0.0.1:8000/health\ntouch /tmp/ai-doc-qa-pwned"),
    ("DEPLOY_COMPOSE_FILE", "-f /etc/passwd"),
])
def test_hostile_config_values_are_refused_before_ssh(sandbox, key, value):
    Path("/tmp/ai-doc-qa-pwned").unlink(missing_ok=True)
    r = sandbox.fab("deploy", *STAGING, env={key: value})
    assert r.returncode == 2 and key.removeprefix("DEPLOY_") in r.stderr and "Traceback" not in r.stderr
    assert not Path("/tmp/ai-doc-qa-pwned").exists()


def test_hostile_values_that_are_valid_stay_data(sandbox):
    """A message and a URL query full of shell syntax reach the host only as quoted data."""
    sandbox.reset()
    Path("/tmp/ai-doc-qa-pwned").unlink(missing_ok=True)
    message = "it's $(touch /tmp/ai-doc-qa-pwned); `touch /tmp/ai-doc-qa-pwned` \"q\""
    # the fragment is never sent: the URL checks /health, and its shell syntax must stay data
    urls = f"{PROXY}/health#x=1;touch%20/tmp/ai-doc-qa-pwned&y=$(id),{PROXY}/api/v1/documents"
    r = sandbox.fab("deploy", *STAGING, "--message", message, env={"DEPLOY_SMOKE_URLS": urls})
    assert r.returncode == 0, flat(r)
    assert not Path("/tmp/ai-doc-qa-pwned").exists()
    assert sandbox.last_release()[0]["message"] == message


# Issue 7 items 10-12: secrets in every shape, appended to .env.production and held in the config.
PEM = ("-----BEGIN PRIVATE KEY-----\n"
       "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCsentinelPEMbody1aB3xQ\n"
       "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789sentinelPEMbody2\n"
       "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0sentinelPEMbody3==\n"
       "-----END PRIVATE KEY-----")
SPACED = "sentinel correct horse battery staple 7f3a"
QUOTED = 'sentinel-q"uo\\te/9d2c'
EXTRA_ENV = (f'\nTLS_PRIVATE_KEY="{PEM}"\nSMTP_PASSWORD="{SPACED}"\n'
             f"API_TOKEN='{QUOTED}'\nPIN_PASSWORD=x7q\n")
CONFIG_TOKENS = ("sentinel-hook-token-5e1d", "sentinel-monitor-token-8c2b", "sentinel-pg-ready-3f9a")
CONFIG_ENV = {
    "DEPLOY_STAGING_WEBHOOK_URL": f"http://127.0.0.1:9100/hook?token={CONFIG_TOKENS[0]}",
    "DEPLOY_STAGING_MONITORING_URL": f"http://127.0.0.1:9100/dashboard?auth_token={CONFIG_TOKENS[1]}",
    "DEPLOY_STAGING_DB_READY_COMMAND": f"PGPASSWORD={CONFIG_TOKENS[2]} pg_isready -h 127.0.0.1 -p 5433 -U postgres",
}
HOSTILE = "ERROR ctl \x1b]0;owned\x07\x1b[2J\x1b[31mred\x1b[0m \u009b2J done"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret_traces(value: str) -> set[str]:
    """What of ``value`` must never be seen: its escaped and encoded forms, every 10-character piece
    of it (a cut secret), and the base64 characters that encode only its bytes, at each alignment."""
    out = {json.dumps(value)[1:-1], quote(value, safe=""), quote_plus(value)}
    out |= {value[i:i + 10] for i in range(max(1, len(value) - 9))}
    for pad in range(3):
        enc = base64.b64encode(b"\0" * pad + value.encode()).decode()
        out.add(enc[-(-8 * pad // 6):(8 * (pad + len(value))) // 6])
    return {t for t in out if len(t) >= 6}


def inject_logs(sandbox, service: str, *lines: str) -> None:
    """Lines in a container's log stream, as if the service had printed them (written to the
    stdout of its PID 1, as PID 1's own user: /proc/1/fd is closed to other users, root included;
    postgres's PID 1 changed user and is closed to all, so postgres is left out)."""
    owner = sandbox.compose("exec", "-T", service, "stat", "-c", "%u:%g", "/proc/1").stdout.strip()
    r = sandbox.compose("exec", "-T", "-u", owner, service, "sh", "-c", 'printf "%s\\n" "$@" > /proc/1/fd/1', "sh", *lines)
    assert r.returncode == 0, r.stderr


def cut_line(service: str, prefix: str, limit: int, secret: str) -> str:
    """A log line that the tool's cut at ``limit`` characters (Compose's ``service-1  | `` prefix
    included) ends 12 characters into ``secret``."""
    return prefix + "x" * (limit - len(f"{service}-1  | ") - len(prefix) - 12) + secret + " end of line"


def prepare_sentinel_host(sandbox, secret_key: str) -> None:
    """Secrets in every shape in .env.production (containers recreated with them), and log lines
    that print them in every shape, cut, and with escape sequences."""
    with (APP_DIR / ".env.production").open("a") as fh:
        fh.write(EXTRA_ENV)
    sandbox.compose("up", "-d")
    sandbox.wait_for(lambda: sandbox.version() == "v1", 60, "v1 serving with the extra secrets")
    pem_body = PEM.splitlines()[1:-1]
    inject_logs(sandbox, "backend", cut_line("backend", "ERROR cut: ", 200, secret_key),
                f"ERROR smtp login refused for password {SPACED} by the relay",
                "ERROR json " + json.dumps({"detail": QUOTED}),
                f"ERROR header Authorization: Basic {b64('mailer:' + SPACED)}",
                f"ERROR blob {b64('a:' + QUOTED)} end",
                f"ERROR url https://relay.example.com/login?u=x&p={quote(SPACED, safe='')}",
                "ERROR env PIN_PASSWORD=x7q", *[f"ERROR pem {line}" for line in pem_body], HOSTILE)
    inject_logs(sandbox, "model_server", cut_line("model_server", "model cut: ", 160, secret_key), PEM, HOSTILE)


def test_sentinel_secrets_appear_in_no_output_record_or_webhook(sandbox):
    """A full deploy, a failed deploy with auto-rollback, a manual rollback and the diagnostics, with
    every command echoed (-e): no fake secret value of .env.production may appear anywhere. The
    file also holds a PEM key, a secret with spaces, one with quotes and a backslash, and a
    3-character one; the config holds a webhook token, a monitoring token and a PGPASSWORD; the
    services' logs print them cut, JSON-escaped, base64-encoded, URL-encoded, line by line, and
    with terminal escape sequences. No form of any of them may appear, nor an escape sequence."""
    sandbox.reset()
    secrets = sandbox.sentinels()
    assert len(secrets) >= 4
    secret_key = next(s for s in secrets if s.startswith("sentinel-secret-"))
    prepare_sentinel_host(sandbox, secret_key)
    fab = lambda *args: sandbox.fab("-e", *args, *STAGING, env=CONFIG_ENV)
    runs = [fab("verify"), fab("diagnose")]
    sandbox.ctl("version", "v2")
    runs.append(fab("deploy"))
    sandbox.ctl("version", "broken")
    runs.append(fab("deploy", "--json"))
    runs.append(fab("rollback", "--to", "v1", "--json"))
    for task in ("status", "history", "env-diff", "diagnose", "check-db", "checklist", "plan"):
        runs.append(fab(task))
    assert [r.returncode for r in runs] == [0, 0, 0, 7, 0] + [0] * 7, [flat(r)[-1500:] for r in runs if r.returncode]
    assert json.loads(runs[3].stdout)["outcome"] == "rolled_back"
    assert "$ " in runs[2].stdout                        # commands really were echoed
    this_test = "\n".join(r.stdout + r.stderr for r in runs)
    # The hostile lines really were shown (cut, line by line), so the checks below are not vacuous.
    assert "ERROR cut: xxx" in runs[0].stdout and "model cut: xxx" in runs[1].stdout
    assert "ERROR ctl" in runs[0].stdout and "ERROR ctl" in runs[1].stdout
    assert "monitoring: http://127.0.0.1:9100/dashboard?auth_token=[REDACTED]" in runs[0].stdout
    assert "PGPASSWORD=[REDACTED] pg_isready" in runs[2].stdout
    assert "too short to redact by value" in runs[0].stdout and "PIN_PASSWORD" in runs[0].stdout
    haystacks = {"fab output (this test)": this_test,
                 "fab output (every test so far)": "\n".join(ALL_OUTPUT),
                 "release record": (APP_DIR / ".deploy" / "releases.jsonl").read_text(),
                 "webhook bodies": (SANDBOX_ROOT / "sink" / "webhooks.jsonl").read_text()}
    assert haystacks["webhook bodies"].count("deploy_") >= 4
    for where, text in haystacks.items():
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"secret value(s) found in {where}"
    every_form = set()
    # (A DSN's host and port are not secret: only the sentinel values themselves are traced.)
    for value in [*(s for s in secrets if s.startswith("sentinel")), SPACED, QUOTED, *PEM.splitlines()[1:-1], *CONFIG_TOKENS]:
        every_form |= secret_traces(value)
    for where in ("fab output (this test)", "release record", "webhook bodies"):
        leaked = sorted(t for t in every_form if t in haystacks[where])
        assert not leaked, f"secret forms found in {where}: {leaked[:5]}"
        assert "PIN_PASSWORD=x7q" not in haystacks[where]
    escapes = [ch for ch in ("\x1b", "\x07", "\u009b", "\r") if ch in this_test]
    assert not escapes, f"terminal control characters reached the output: {escapes}"


def test_unreadable_env_file_stops_the_run_and_says_which_file_and_why(sandbox):
    """Issue 7 item 11: an env file the SSH user cannot read gave zero secrets, silently."""
    sandbox.reset()
    staging_env = APP_DIR / ".env.staging"
    staging_env.chmod(0)
    try:
        r = sandbox.fab("status", *STAGING)
    finally:
        staging_env.chmod(0o644)
    out = flat(r)
    assert r.returncode == 3, out
    assert f"cannot read {staging_env} (Permission denied)" in out and "DEPLOY_SECRET_FILES" in out
    assert "Traceback" not in out


# Holds an exclusive lock on the documents table for 15 s (in the backend container, with its
# DATABASE_URL): the v2 migration's ALTER TABLE waits for it, as behind a long-running transaction.
HOLD_TABLE_LOCK = (
    "import os, sys, time\n"
    "import sqlalchemy as sa\n"
    "with sa.create_engine(os.environ['DATABASE_URL']).connect() as c:\n"
    "    with c.begin():\n"
    "        c.execute(sa.text('LOCK TABLE documents IN ACCESS EXCLUSIVE MODE'))\n"
    "        print('locked', flush=True)\n"
    "        time.sleep(15)\n"
)


def test_a_hung_command_ends_with_a_clear_timeout_error(sandbox):
    """MIGRATE_TIMEOUT=1 against a migration that waits for a table lock (the migration step alone
    takes ~0.6 s now that alembic starts once, too little to rely on for a 1 s timeout): the remote
    command is killed on the host (coreutils timeout), the operator gets an error block, the lock
    is released."""
    sandbox.reset()
    sandbox.ctl("version", "v2")
    holder = subprocess.Popen([str(CTL), "compose-exec", "exec", "-T", "backend", "python3", "-c", HOLD_TABLE_LOCK],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked", holder.stderr.read()
        t0 = time.monotonic()
        r = sandbox.fab("deploy", *STAGING, env={"DEPLOY_MIGRATE_TIMEOUT": "1"})
    finally:
        holder.communicate(timeout=60)      # the transaction ends by itself (killing the client would not end it)
    out = flat(r)
    assert r.returncode == 3, out
    assert time.monotonic() - t0 < 90
    assert "alembic upgrade head failed: timed out after 1 s (the remote command was killed)" in out
    assert "Traceback" not in out and not sandbox.lock_held()
    assert sandbox.version() == "v1"                      # services were not touched
    assert sandbox.last_release()[-1]["outcome"] == "failed"
