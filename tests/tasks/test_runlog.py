"""The run log (tasks/runlog.py): where it lives, what reaches it, how many are kept, and a log
directory that cannot be made."""
import logging
import os

from tasks import runlog


def test_the_state_dir_follows_xdg_and_ignores_a_relative_xdg_state_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert runlog.state_dir({"XDG_STATE_HOME": "/var/state"}) == runlog.Path("/var/state/ai-doc-qa-deploy")
    assert runlog.state_dir({"XDG_STATE_HOME": "state"}) == tmp_path / ".local" / "state" / "ai-doc-qa-deploy"
    assert runlog.logs_dir({}) == tmp_path / ".local" / "state" / "ai-doc-qa-deploy" / "logs"


def test_library_warnings_go_to_the_run_log_not_the_terminal_and_the_loggers_are_restored(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    paramiko_log = logging.getLogger("paramiko")
    before = (paramiko_log.level, paramiko_log.propagate, list(paramiko_log.handlers))
    with runlog.opened("deploy") as log:
        assert runlog.CURRENT is log and not log.has_warnings
        paramiko_log.warning("Oops, unhandled type 3 ('unimplemented')")
        log.write("step services done")
        assert log.has_warnings
    assert runlog.CURRENT is None
    assert (paramiko_log.level, paramiko_log.propagate, list(paramiko_log.handlers)) == before
    text = log.path.read_text()
    assert "paramiko WARNING Oops, unhandled type 3" in text and "run INFO step services done" in text
    assert log.path.parent == tmp_path / "ai-doc-qa-deploy" / "logs" and "-deploy-" in log.path.name
    assert capsys.readouterr() == ("", "")


def test_only_the_newest_logs_are_kept_when_a_run_starts(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    logs = tmp_path / "ai-doc-qa-deploy" / "logs"
    logs.mkdir(parents=True)
    for i in range(runlog.KEEP + 2):
        old = logs / f"old-{i:03d}.log"
        old.write_text("x")
        os.utime(old, (1_000_000 + i, 1_000_000 + i))          # old-000 is the oldest
    (logs / "notes.txt").write_text("not a log")
    runlog.RunLog("status").close()
    left = sorted(p.name for p in logs.iterdir())
    assert left == ["notes.txt"] + [f"old-{i:03d}.log" for i in range(2, runlog.KEEP + 2)]


def test_a_log_directory_that_cannot_be_made_costs_the_log_not_the_run(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker))        # its logs dir would be under a file
    with runlog.opened("deploy") as log:
        logging.getLogger("paramiko").error("socket closed")
        log.write("still running")
        assert not log.has_warnings                          # no file to name in the error block
    assert not log.path.exists()


def test_a_log_file_that_cannot_be_created_costs_the_log_not_the_run(monkeypatch, tmp_path, capsys):
    """Seen: XDG_STATE_HOME whose logs dir existed but could not be written (chattr +i; also a dir
    left by a run under sudo) made every task, `fab plan` included, die with a traceback (exit 1)
    at its first printed line: FileHandler opens its file outside its own error handling."""
    from tasks import base, ui
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    with runlog.opened("deploy") as log:
        log.path.mkdir(parents=True)      # open() of the log file now fails, as in an unwritable dir
        ui.say("stage: staging")
        logging.getLogger("paramiko").error("socket closed")
        ui.say("still running")
        assert not log.usable and not log.has_warnings
        assert base.log_field() == []     # the error block names no log that does not exist
    out = capsys.readouterr().out
    assert "stage: staging" in out and "still running" in out


def test_the_run_log_is_readable_by_its_owner_only_also_in_an_open_directory(monkeypatch, tmp_path):
    import stat
    logs = tmp_path / "ai-doc-qa-deploy" / "logs"
    logs.mkdir(parents=True)
    logs.chmod(0o755)                      # made by hand, or by an older version
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    with runlog.opened("deploy") as log:
        log.write("step services done")
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600
