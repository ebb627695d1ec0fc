"""Issue 7, lock items 1-3 on the staging host: the heartbeat outlives a dropped connection, a run
whose lock is taken away stops before it changes anything more, and an unwritable record directory
is a clear error instead of an endless loop.

A deploy is held still inside its checklist by a local monitoring endpoint that answers only when
the test says so (the "tarpit"): the main thread then runs no remote command, so what happens to
the lock meanwhile is the heartbeat's doing alone."""
import json
import os
import shutil
import subprocess
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.integration.conftest import APP_DIR, flat
from tests.integration.test_faults import FAST_LOCK, STAGING, container_ids, kill_ssh_sessions

LOCK_DIR = APP_DIR / ".deploy" / "lock"


@contextmanager
def tarpit():
    """A MONITORING_URL whose first GET waits until ``release`` is set (every later GET answers at once)."""
    arrived, release = threading.Event(), threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if not arrived.is_set():
                arrived.set()
                release.wait(120)
            body = b"ai-doc-qa monitoring (test tarpit)\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {"DEPLOY_MONITORING_URL": f"http://127.0.0.1:{server.server_address[1]}/dashboard",
           "DEPLOY_SMOKE_TIMEOUT": "60"}
    try:
        yield arrived, release, env
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def reads_running_on_the_host() -> bool:
    """A checklist read of the deploy user still running on the host (alembic, compose, git): the
    checklist's reads run at once, so the monitoring check can be held while another is in flight."""
    r = subprocess.run(["pgrep", "-u", "deploy", "-f", "alembic|docker compose|docker-compose|git "],
                       capture_output=True, text=True)
    return r.returncode == 0


def held_in_checklist(sandbox, proc, arrived):
    """The deploy holds its lock inside the checklist's monitoring check, with no command of its
    own running on the host (the heartbeat aside): what these tests then break is the idle connection."""
    sandbox.wait_for(lambda: arrived.is_set() or proc.poll() is not None, 90, "the deploy to reach the monitoring check")
    assert proc.poll() is None, f"fab ended early ({proc.returncode}):\n{proc.stdout.read()}"
    sandbox.wait_for(lambda: not reads_running_on_the_host(), 60, "the checklist's other reads to end", interval=0.1)
    assert proc.poll() is None and LOCK_DIR.is_dir()


def heartbeat_mtime() -> float:
    return (LOCK_DIR / "heartbeat").stat().st_mtime


def holder() -> dict:
    return json.loads((LOCK_DIR / "holder.json").read_text())


def test_heartbeat_resumes_after_the_connection_drops_and_the_live_lock_is_not_taken_over(sandbox):
    """Lock item 1: the connection is killed while the deploy's main thread runs nothing. The
    heartbeat reconnects by itself and goes on beating past LOCK_STALE_AFTER, so a second
    operator's `unlock --force` is refused; the deploy then completes on the new connection."""
    sandbox.reset()
    sandbox.ctl("version", "v2")
    with tarpit() as (arrived, release, env):
        proc = sandbox.fab_background("deploy", *STAGING, env={**FAST_LOCK, **env})
        try:
            held_in_checklist(sandbox, proc, arrived)
            token = holder()["token"]
            killed_at = heartbeat_mtime()
            kill_ssh_sessions()
            # beats keep coming for longer than LOCK_STALE_AFTER (4 s): without them the lock would be stale now
            sandbox.wait_for(lambda: heartbeat_mtime() > killed_at + 5, 30, "the heartbeat to resume after the reconnect")
            r = sandbox.fab("unlock", "--force", *STAGING, env=FAST_LOCK)
            assert r.returncode == 6 and "the lock is live" in flat(r), flat(r)
            assert holder()["token"] == token and "LOCK_STALE_AFTER is 4 s (the holder's)" in flat(r)
        finally:
            release.set()
            out = sandbox.finish(proc, 180)     # never leave a deploy running into the next test
    assert proc.returncode == 0, out
    assert "dropped and was re-established" in out and "Traceback" not in out
    assert sandbox.version() == "v2" and sandbox.alembic_current() == "0002" and not sandbox.lock_held()
    assert sandbox.last_release()[-1]["outcome"] == "success"


@pytest.mark.parametrize("how", ["token rewritten", "lock moved aside"])
def test_a_run_whose_lock_is_taken_away_stops_at_the_next_step_and_switches_nothing(sandbox, how):
    """Lock item 1: someone takes the lock while the deploy runs (another operator's takeover). The
    run stops at the next step boundary with an error block, changes nothing more, records the end,
    and leaves the other holder's lock alone."""
    sandbox.reset()
    sandbox.ctl("version", "v2")
    ids, head = container_ids(sandbox), sandbox.head()
    aside = APP_DIR / ".deploy" / "lock.moved-by-test"
    try:
        with tarpit() as (arrived, release, env):
            proc = sandbox.fab_background("deploy", *STAGING, env={**FAST_LOCK, **env})
            try:
                held_in_checklist(sandbox, proc, arrived)
                if how == "token rewritten":
                    taken = {**holder(), "token": "0" * 16, "who": "other@elsewhere"}
                    with open(LOCK_DIR / "holder.json", "w") as fh:     # same file, same owner
                        fh.write(json.dumps(taken, sort_keys=True) + "\n")
                else:
                    os.rename(LOCK_DIR, aside)
            finally:
                release.set()
                out = sandbox.finish(proc, 120)     # never leave a deploy running into the next test
        text = " ".join(out.split())
        assert proc.returncode == 6, out
        assert "this run lost the deploy lock" in text and "stopped before prepare" in text and "Traceback" not in text
        assert ("other@elsewhere" in text) if how == "token rewritten" else ("its directory is gone" in text)
        assert container_ids(sandbox) == ids and sandbox.head() == head and sandbox.version() == "v1"
        end = sandbox.last_release()[-1]
        assert end["event"] == "end" and end["outcome"] == "failed" and end["error"]["exit_code"] == 6
        if how == "token rewritten":
            assert holder()["token"] == "0" * 16            # the other holder's lock was not released
        else:
            assert not LOCK_DIR.exists() and aside.is_dir()
    finally:
        shutil.rmtree(LOCK_DIR, ignore_errors=True)
        shutil.rmtree(aside, ignore_errors=True)


def test_unwritable_record_dir_is_a_clear_error_within_lock_wait(sandbox):
    """Lock item 2: `.deploy` owned by root and not writable by the SSH user. The base commit looped
    forever (mkdir failed, the lock read as free, try again); now it is exit 3 at once, with
    LOCK_WAIT=0 and with --lock-wait 5 alike."""
    sandbox.reset()
    record = APP_DIR / ".deploy"
    record.mkdir()
    os.chown(record, 0, 0)
    os.chmod(record, 0o755)
    try:
        for args, env in (([], {"DEPLOY_LOCK_WAIT": "0"}), (["--lock-wait", "5"], {})):
            r = sandbox.fab("deploy", *STAGING, *args, env=env, timeout=90)
            text = flat(r)
            assert r.returncode == 3, text
            assert f"cannot create the deploy lock: {record} is not writable by the SSH user deploy (owned by root)" in text
            assert "Permission denied" in text and f"sudo chown -R deploy {record}" in text and "Traceback" not in text
        assert not LOCK_DIR.exists() and not (record / "releases.jsonl").exists()
        assert sandbox.version() == "v1"
    finally:
        shutil.rmtree(record, ignore_errors=True)
