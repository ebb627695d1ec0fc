"""The venv's `fab` must be the project's (tasks/program.py): Fabric's own runs `fab -H HOST --
COMMAND` with no host-key check. Found by trying: after `pip install --force-reinstall fabric`
the venv has the stock fab again, `make setup` saw nothing to do, and every task ran without a
word about it."""
import os
import shutil
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STOCK = "from fabric.main import program; program.run()"


def test_a_task_run_by_fabrics_stock_fab_warns_that_it_is_not_the_projects(tmp_path):
    r = subprocess.run([sys.executable, "-c", STOCK, "contacts", "--stage", "production"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60, env={**os.environ, "XDG_STATE_HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    err = " ".join(r.stderr.split())
    assert "this `fab` is Fabric's own, not the project's" in err
    assert "make setup" in err and "-m tasks.program install" in err


def test_the_projects_fab_does_not_warn(tmp_path):
    from tasks.program import install_entry_point
    fab = tmp_path / "fab"
    install_entry_point(str(fab))
    r = subprocess.run([str(fab), "contacts", "--stage", "production"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60, env={**os.environ, "XDG_STATE_HOME": str(tmp_path)})
    assert r.returncode == 0 and "Fabric's own" not in r.stderr, r.stderr


def test_make_setup_writes_the_projects_fab_again_after_fabric_is_reinstalled(tmp_path):
    """A dry run of the Makefile in a copy whose venv is already set up, then whose fab is replaced
    (what pip does on a reinstall of fabric): make must want to write it again."""
    if not shutil.which("make"):
        if os.environ.get("CI") == "true":
            pytest.fail("make is not installed, yet CI runs through make")     # CI must not skip it
        pytest.skip("make is not installed")
    for name in ("Makefile", "requirements.txt"):
        shutil.copy(os.path.join(ROOT, name), tmp_path)
    (tmp_path / "tasks").mkdir()
    shutil.copy(os.path.join(ROOT, "tasks", "program.py"), tmp_path / "tasks")
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (tmp_path / ".venv" / ".installed").touch()
    (venv_bin / "fab").write_text("# the project's fab\n")
    (tmp_path / ".venv" / ".fab-entry-point").touch()
    settled = subprocess.run(["make", "-n", "setup"], cwd=tmp_path, capture_output=True, text=True)
    assert "Nothing to be done" in settled.stdout, settled.stdout + settled.stderr
    later = time.time() + 5                     # the reinstall happens after setup (mtime, no waiting)
    (venv_bin / "fab").write_text("# Fabric's stock fab\n")
    os.utime(venv_bin / "fab", (later, later))
    r = subprocess.run(["make", "-n", "setup"], cwd=tmp_path, capture_output=True, text=True)
    assert "-m tasks.program install .venv/bin/fab" in r.stdout, r.stdout + r.stderr


LEAVE = "import sys; sys.path.insert(0, {root!r}); from tasks.program import leave; print('all said', end=''); leave({code})"


@pytest.mark.parametrize("code, rc, err", [("None", 0, ""), ("0", 0, ""), ("7", 7, ""), ("130", 130, ""), ("-1", 255, ""),
                                           ("'usage: fab TASK'", 1, "usage: fab TASK")])
def test_fab_leaves_without_teardown_but_with_its_exit_code_and_every_line_said(code, rc, err):
    """tasks.program.leave: os._exit skips Python's teardown (~0.07 s a run); the exit code is the
    one SystemExit would give, and what was printed, unflushed, still reaches the reader (a pipe)."""
    r = subprocess.run([sys.executable, "-c", LEAVE.format(root=ROOT, code=code)], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr.strip()) == (rc, "all said", err)


def test_fab_start_does_not_load_requests(tmp_path):
    """requests is imported by the first HTTP request, not by every `fab` (~50 ms of each start)."""
    r = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, {root!r}); import fabfile; "
                        "print('requests' in sys.modules)".format(root=ROOT)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.stdout.strip() == "False", r.stderr
