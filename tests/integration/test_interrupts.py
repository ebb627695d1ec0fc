"""Issue 7, items 6 and 7, on the staging host: SIGTERM (a cancelled CI job) and SIGHUP (a closed
terminal) right after the migrate step end like Ctrl-C, and Ctrl-C works when the tool was started
with SIGINT ignored (a background job of a non-interactive shell). Each test sets the signal
dispositions of the fab it starts itself."""
import os
import re
import signal
import subprocess
import time

import pytest

from tests.integration.conftest import FAB, ROOT
from tests.integration.test_faults import STAGING, migration_running, wait_for_event


def start_deploy(sigint: str):
    """`fab deploy` in the background, with SIGINT default or ignored as its parent chose, and
    SIGTERM/SIGHUP default (pytest itself may run under nohup, which fab would respect)."""
    def dispositions():
        signal.signal(signal.SIGINT, signal.SIG_IGN if sigint == "ignored" else signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOY_")}
    env["PYTHONFAULTHANDLER"] = "1"        # SIGABRT on a hang dumps the stacks (Sandbox.finish)
    return subprocess.Popen([FAB, "deploy", *STAGING], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, preexec_fn=dispositions)


def after_migrate(e):
    return e["event"] == "step" and e["step"] == "migrate" and e["sub"] is None


@pytest.mark.parametrize("signum, code, name, sigint", [
    (signal.SIGTERM, 143, "SIGTERM", "default"),
    (signal.SIGHUP, 129, "SIGHUP", "default"),
    (signal.SIGINT, 130, "Ctrl-C", "ignored"),
], ids=["sigterm", "sighup", "ctrl-c-with-sigint-inherited-ignored"])
def test_signal_right_after_migrate_releases_the_lock_and_records_aborted(sandbox, signum, code, name, sigint):
    sandbox.reset()
    sandbox.ctl("version", "v2")
    proc = start_deploy(sigint)
    wait_for_event(sandbox, proc, after_migrate, 60, "migrate done")
    proc.send_signal(signum)
    out = sandbox.finish(proc, 120)
    assert proc.returncode == code, out
    assert f"{name}: cleaning up" in out and f"INTERRUPTED ({name})" in out and "Traceback" not in out
    assert not sandbox.lock_held()
    end = sandbox.last_release()[-1]
    assert end["event"] == "end" and end["outcome"] == "aborted"
    # the unverified new images (if `up` had started) were replaced by the recorded previous ones:
    # the host serves one known version, and the record says which
    assert sandbox.version() == "v1", out
    assert re.match(r"(still )?serving (the old version: )?v1 \(", end["serving"]), end["serving"]


def test_ctrl_c_during_the_migration_lets_it_finish_and_the_outcome_names_the_revision(sandbox):
    """The migration is let finish after Ctrl-C; the outcome and the record say where it left the
    database (adversary, this session: they named the code and the images only, while the
    database had moved to 0002)."""
    sandbox.reset()
    sandbox.ctl("version", "v2")
    proc = start_deploy("default")
    sandbox.wait_for(lambda: proc.poll() is None and migration_running(), 60, "the migration running on the host", interval=0.02)
    time.sleep(0.05)                    # alembic has been handed its turn (the migration takes ~0.4 s here)
    proc.send_signal(signal.SIGINT)
    out = sandbox.finish(proc, 120)
    assert proc.returncode == 130 and "Traceback" not in out, out
    assert "0002" in sandbox.alembic_current(), "the migration was let finish"
    state = "alembic upgrade head was let finish after the interrupt: database at revision 0002 (was 0001); services not changed"
    assert state in " ".join(out.split()), out
    end = sandbox.last_release()[-1]
    assert end["outcome"] == "aborted" and end["migrations"] == state
    assert sandbox.version() == "v1" and not sandbox.lock_held()
