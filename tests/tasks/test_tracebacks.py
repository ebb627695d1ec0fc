"""Tracebacks (exit 1: a bug) go through the redactor like every other text (tasks/ui.py): an
exception message may hold host output, so a secret in it must not reach the terminal."""
import io
import sys
import threading

from commands.secrets import Redactor
from tasks import ui

SECRET = "Q7xk-traceback-sentinel-9f3a2b"


def redacting(monkeypatch) -> Redactor:
    r = Redactor(r"(?i)TOKEN")
    r.add_env({"API_TOKEN": SECRET})              # learned from an env file, as at a run's start
    monkeypatch.setattr(ui.OUT, "redact", r)
    return r


def raised(exc: BaseException):
    try:
        raise exc
    except BaseException:
        return sys.exc_info()


def test_a_traceback_is_printed_redacted(monkeypatch):
    redacting(monkeypatch)
    out = io.StringIO()
    ui.print_traceback(*raised(RuntimeError(f"docker said: API_TOKEN is {SECRET}")), stream=out)
    text = out.getvalue()
    assert text.startswith("Traceback (most recent call last):") and "in raised" in text
    assert text.endswith("RuntimeError: docker said: API_TOKEN is [REDACTED]\n") and SECRET not in text


def test_a_traceback_that_cannot_be_redacted_is_withheld_not_printed_raw(monkeypatch):
    def broken(text):
        raise MemoryError
    monkeypatch.setattr(ui.OUT, "redact", broken)
    out = io.StringIO()
    ui.print_traceback(*raised(ValueError(SECRET)), stream=out)
    assert out.getvalue() == "ValueError: (traceback withheld: it could not be redacted)\n"


def test_an_exception_in_another_thread_names_the_thread_and_is_redacted(monkeypatch, capsys):
    redacting(monkeypatch)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    ui.install_excepthook()

    def heartbeat():
        raise OSError(f"lost: {SECRET}")

    worker = threading.Thread(target=heartbeat, name="lock-heartbeat")
    worker.start()
    worker.join()
    err = capsys.readouterr().err
    assert err.startswith("Exception in thread lock-heartbeat:\nTraceback") and "OSError: lost: [REDACTED]" in err
    assert SECRET not in err


def test_a_thread_ended_by_system_exit_prints_nothing(monkeypatch, capsys):
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    ui.install_excepthook()
    worker = threading.Thread(target=sys.exit, name="quiet")
    worker.start()
    worker.join()
    assert capsys.readouterr().err == ""
