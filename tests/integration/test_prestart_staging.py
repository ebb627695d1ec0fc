"""The migration's Python started during the checklist (commands/prestart.py, issue 9) on the
staging host: a deploy migrates through it (its release record says ``early``), and no run leaves
it behind: after a success, a checklist that blocks, or Ctrl-C before the migration, there is no
Python waiting in the backend, no detached shell and no directory of it on the host."""
import glob
import http.server
import os
import signal
import subprocess
import threading
import time

import pytest

from tests.integration.test_faults import STAGING


def leftovers(sandbox) -> list[str]:
    """What a prestart would leave: its shell or a waiting Python (deploy's processes on the host),
    a Python in the backend container other than the app, its directory (a FIFO ``go`` in it)."""
    procs = subprocess.run(["pgrep", "-u", "deploy", "-fa", r"ai-doc-qa-migration|select\.select"],
                           capture_output=True, text=True).stdout.splitlines()
    in_backend = [line for line in sandbox.docker("top", sandbox.container("backend")["Id"], "-eo", "pid,args").splitlines()
                  if "select.select" in line]
    dirs = [d for d in glob.glob("/tmp/tmp.*") if os.path.exists(os.path.join(d, "go"))]
    return procs + in_backend + dirs


def nothing_left(sandbox) -> None:
    sandbox.wait_for(lambda: not leftovers(sandbox), 10, "no prestarted Python, shell or directory left", interval=0.1)


def prestart_waiting() -> bool:
    return subprocess.run(["pgrep", "-u", "deploy", "-f", r"select\.select"], capture_output=True).returncode == 0


def test_a_deploy_migrates_in_the_python_it_started_early_and_leaves_nothing(sandbox):
    sandbox.reset()
    sandbox.ctl("version", "v2")
    r = sandbox.fab("deploy", *STAGING)
    assert r.returncode == 0, r.stdout + r.stderr
    migrations = [e for e in sandbox.last_release("deploy") if e["event"] == "migrations"]
    assert migrations == [migrations[0]] and migrations[0]["early"] is True
    assert migrations[0]["before"] == ["0001"] and migrations[0]["after"] == ["0002"]
    assert sandbox.alembic_current() == "0002" and sandbox.version() == "v2"
    nothing_left(sandbox)


@pytest.fixture
def slow_webhook():
    """An on-call webhook that answers after 2 s: the checklist's last item, after its reads, so the
    migration's Python has surely been started on the host when the checklist blocks."""
    class Slow(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(2)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()


def test_a_deploy_its_checklist_stops_tells_the_python_it_started_to_exit(sandbox, slow_webhook):
    sandbox.reset()
    sandbox.ctl("version", "v2")
    r = sandbox.fab("--echo", "deploy", *STAGING, env={"DEPLOY_CHECKLIST_BLOCKING": "monitoring",
                                                       "DEPLOY_MONITORING_URL": "http://127.0.0.1:9/nothing-listens",
                                                       "DEPLOY_WEBHOOK_URL": slow_webhook})
    out = r.stdout + r.stderr
    assert r.returncode == 9, out
    assert "command -v setsid" in out and "printf 'stop\\n'" in out      # started during the checklist, then told to stop
    assert sandbox.alembic_current() == "0001" and sandbox.version() == "v1"
    nothing_left(sandbox)


def test_ctrl_c_while_the_prestarted_python_waits_leaves_nothing(sandbox):
    sandbox.reset()
    sandbox.ctl("version", "v2")
    proc = sandbox.fab_background("deploy", *STAGING)
    sandbox.wait_for(lambda: proc.poll() is None and prestart_waiting(), 60, "the prestarted Python waiting", interval=0.02)
    proc.send_signal(signal.SIGINT)
    out = sandbox.finish(proc, 120)
    assert proc.returncode == 130 and "Traceback" not in out, out
    assert sandbox.alembic_current() == "0001" and sandbox.version() == "v1" and not sandbox.lock_held()
    nothing_left(sandbox)
