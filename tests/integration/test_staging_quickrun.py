"""The quiet command path (tasks/quickrun.py) against the staging host's sshd, through the
session and its executor as a deploy runs commands: both streams large at once, exit codes, the
local deadline, a process killed by a signal, the connection killed under a command."""
import subprocess
import threading
import time

import pytest
from fabric import Config

from config import load_settings
from tasks.errors import CommandFailed, DeployError
from tasks.quickrun import QuickConnection, run_quiet
from tasks.session import Session
from tasks.ssh import connect


class Ctx:
    config = Config(overrides={"run": {"in_stream": False}})


@pytest.fixture
def session(sandbox):
    st = load_settings("staging")
    s = Session(st, st.hosts[0], connect(Ctx(), st.hosts[0], st))
    yield s
    s.close()


def test_the_session_connection_takes_the_quiet_path(session):
    assert isinstance(session.cxn, QuickConnection)
    r = session.run("printf 'x\\n'; printf 'y\\n' >&2; exit 7", check=False)
    assert (r.exited, r.stdout, r.stderr) == (7, "x\n", "y\n")


def test_megabytes_on_both_streams_at_once_come_back_whole(session):
    """More than the 2 MB window on each stream, written interleaved: both are read as it runs."""
    r = session.run("head -c 3000000 /dev/zero | tr '\\0' o & head -c 3000000 /dev/zero | tr '\\0' e >&2; wait; echo", timeout=60)
    assert (r.exited, len(r.stdout), set(r.stdout.strip()), len(r.stderr), set(r.stderr)) == (0, 3000001, {"o"}, 3000000, {"e"})


def test_utf8_output_is_text(session):
    r = session.run("printf '\\342\\202\\254 %.0s' $(seq 1 20000)")
    assert r.stdout == "€ " * 20000


def test_the_local_deadline_ends_the_wait_and_the_connection_stays_usable(session):
    start = time.monotonic()
    code, out, _, timed_out = run_quiet(session.cxn.transport, "echo started; sleep 5", 1.0)
    assert (code, out, timed_out) == (-1, "started\n", True) and time.monotonic() - start < 3
    assert session.run("echo next").stdout == "next\n"


def test_a_process_killed_by_a_signal_is_reported_as_such(session):
    with pytest.raises(CommandFailed) as caught:
        session.run("echo before; kill -9 $(ps -o ppid= -p $PPID)")    # the login shell: no exit status
    assert caught.value.exit_code == -1 and "killed by a signal on the host" in caught.value.stderr
    assert session.run("echo next").stdout == "next\n"


def test_a_connection_killed_under_a_command_is_a_lost_connection(session):
    def kill_soon():
        time.sleep(0.5)
        subprocess.run(["pkill", "-KILL", "-f", "^sshd: deploy"], check=False)

    threading.Thread(target=kill_soon, daemon=True).start()
    with pytest.raises(DeployError, match="lost the SSH connection"):
        session.run("sleep 5")


def test_a_must_finish_command_runs_to_its_end_on_the_host_when_the_connection_dies(session, sandbox):
    """compose up and migrations write progress as they go; with the connection gone such a write
    killed them half-way (SIGPIPE). A must-finish command with a timeout of its own keeps its
    output on the host until it ends: the command finishes, and kill_running's -keep wait is
    then a real wait for it."""
    marker = f"/tmp/{session.run_tag}-finished"

    def kill_soon():
        time.sleep(0.4)
        subprocess.run(["pkill", "-KILL", "-f", "^sshd: deploy"], check=False)
    threading.Thread(target=kill_soon, daemon=True).start()
    with pytest.raises(DeployError, match="lost the SSH connection"):
        session.run(f"echo working; sleep 0.8; echo still working; echo and here >&2; touch {marker}", mutating=True, timeout=30)
    session.ensure_connected()
    deadline = time.monotonic() + 5
    while session.run(f"test -e {marker}", check=False).exited != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert session.run(f"test -e {marker} && rm -f {marker}", check=False).exited == 0
