"""Issue 11, output: every run's full redacted log on the operator's machine, named by the last
line of an error block; no timing table on a dry run."""
import io
import os
import threading

from tasks import runlog, ui
from tasks.deploy import DEPLOY_STEPS
from tasks.locktasks import unlock
from tests.tasks.scripted import run_task
from tests.tasks.test_flow import flow, run  # noqa: F401 (flow: a fixture)
from tests.tasks.test_lock_tasks import HOLDER, held

SECRET_URL = "http://127.0.0.1:9/hook/sentinel-0a1b2c3d4e5f"


def test_the_run_log_holds_everything_printed_redacted_and_the_block_ends_with_its_path(mocker, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.setenv("DEPLOY_PRODUCTION_WEBHOOK_URL", SECRET_URL)
    holder = {**HOLDER, "message": f"see {SECRET_URL}"}
    code, out, err, remote = run_task(mocker, capsys, unlock, [held(30, holder)], force=True)
    assert code == 6
    last = err.rstrip().splitlines()[-1]
    assert last.startswith("  Log:")
    path = last.split("Log:", 1)[1].strip()
    assert path.startswith(str(tmp_path / "ai-doc-qa-deploy" / "logs")) and path.endswith(".log")
    text = open(path).read()
    assert "deploy lock: held by alice@laptop" in text and "the lock is live" in text and "Exit code:" in text
    assert "sentinel-0a1b2c3d4e5f" not in text + out + err and "[REDACTED]" in text
    assert oct(os.stat(os.path.dirname(path)).st_mode & 0o777) == "0o700"
    assert ui.OUT.tee is None and runlog.CURRENT is None          # the task is over: nothing more is copied


def test_a_dry_run_prints_no_timing_table(flow, capsys):      # noqa: F811
    s, remote, calls = flow
    s.dry = True
    run(flow, DEPLOY_STEPS, "deploy")
    out = capsys.readouterr().out
    assert "Outcome: DRY RUN" in out
    assert "Bottleneck:" not in out and "100.0%" not in out


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_a_long_command_shows_its_elapsed_time_on_a_terminal_only(monkeypatch):
    monkeypatch.setattr(ui, "TICK_AFTER", 0.0)
    ui.set_json_mode(False)
    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        tick = ui.Ticker(stream)
        tick()
        tick(done=True)
    assert tty.getvalue().startswith("\r      … 0 s") and tty.getvalue().endswith("\r\033[K")
    assert pipe.getvalue() == ""
    ui.set_json_mode(True)
    quiet = Tty()
    ui.Ticker(quiet)()
    ui.set_json_mode(False)
    assert quiet.getvalue() == ""


def test_the_ticker_is_fed_while_a_command_runs_and_cleared_after(monkeypatch):
    from tasks.worker import Job
    ticked = threading.Event()
    calls = []

    def tick(done=False):
        calls.append(done)
        ticked.set()

    job = Job(lambda: ticked.wait(30) and "done")      # the command ends only once it has been ticked for
    assert job.wait(tick) == "done"
    assert calls[0] is False and calls[-1] is True
