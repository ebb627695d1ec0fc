"""The migration's Python started early (commands/prestart.py), run for real by a local shell: a
``docker`` on PATH that runs the ``docker exec`` command line here, and an ``alembic`` package that
records its calls and, like the real one, binds stdout when it is imported. The host's side
(mktemp, mkfifo, setsid, the detached shell, the hand-over, the fallback) is the real text."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from commands import prestart

CONTAINER = "ab" * 32
FAKE_DOCKER = """#!/bin/sh
# docker exec [-i] ID ARGV...: run ARGV here
[ "$1" = exec ] || exit 2; shift
[ "$1" = -i ] && shift
shift
exec "$@"
"""
FAKE_ALEMBIC = '''import os, sys
def main(argv, prog, _out=sys.stdout):       # the real Config binds the stdout of import time
    with open(os.environ["FAKE_ALEMBIC_LOG"], "a") as log:
        log.write(" ".join(argv) + "\\n")
    if argv[0] == "current":
        print(os.environ.get("FAKE_REV", "0001") + " (head)", file=_out)
    elif argv[0] == "upgrade":
        if os.environ.get("FAKE_FAIL"):
            print("FAILED: boom", file=_out)
            raise SystemExit(-1)
        print("upgraded", file=_out)
    else:
        print("<base> -> 0001 (head), first", file=_out)
'''
ORDINARY = "echo ORDINARY-RAN; exit 42"


@pytest.fixture
def host(tmp_path, monkeypatch):
    """PATH with the fake docker, PYTHONPATH with the fake alembic; the log of alembic's calls."""
    (tmp_path / "bin").mkdir()
    docker = tmp_path / "bin" / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    (tmp_path / "lib" / "alembic").mkdir(parents=True)
    (tmp_path / "lib" / "alembic" / "__init__.py").write_text("")
    (tmp_path / "lib" / "alembic" / "config.py").write_text(FAKE_ALEMBIC)
    log = tmp_path / "alembic.log"
    log.write_text("")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "lib"))
    monkeypatch.setenv("FAKE_ALEMBIC_LOG", str(log))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    return log


def sh(command: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def start(wait: float = prestart.WAIT) -> str:
    r = sh(prestart.start(CONTAINER, 60, wait=wait))
    assert r.returncode == 0, r.stderr
    directory = prestart.parse_start(r.stdout)
    assert directory and Path(directory, "go").is_fifo() and (Path(directory).stat().st_mode & 0o777) == 0o700
    return directory


def gone(directory: str, within: float = 10) -> bool:
    end = time.monotonic() + within
    while Path(directory).exists() and time.monotonic() < end:
        time.sleep(0.05)
    return not Path(directory).exists()


def waiting_pythons(directory: str) -> list[str]:
    r = sh("ps -eo args")
    return [line for line in r.stdout.splitlines() if "select.select" in line and "ps -eo" not in line]


def test_the_word_to_go_runs_the_migration_in_the_python_started_early(host):
    directory = start()
    time.sleep(0.5)                          # it imports, then waits: nothing runs before the word
    assert host.read_text() == ""
    r = sh(prestart.migrate(directory, ["--expect", "0001"], ORDINARY))
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[:3] == [prestart.GO, "@@before", "0001 (head)"] and "@@upgrade" in lines and "@@history" in lines
    assert "ORDINARY-RAN" not in r.stdout
    assert host.read_text().splitlines() == ["current", "upgrade head", "current", "history"]
    assert gone(directory)


def test_the_revisions_checked_are_still_proved_before_anything_is_upgraded(host, monkeypatch):
    monkeypatch.setenv("FAKE_REV", "0002")
    directory = start()
    r = sh(prestart.migrate(directory, ["--expect", "0001"], ORDINARY))
    assert r.returncode == 98 and "@@moved" in r.stdout.splitlines()
    assert host.read_text().splitlines() == ["current"] and gone(directory)


def test_a_failed_migration_is_reported_with_its_status_and_not_run_a_second_time(host, monkeypatch):
    monkeypatch.setenv("FAKE_FAIL", "1")
    directory = start()
    r = sh(prestart.migrate(directory, [], ORDINARY))
    assert r.returncode == 255 and "FAILED: boom" in r.stdout and "ORDINARY-RAN" not in r.stdout
    assert host.read_text().splitlines() == ["current", "upgrade head"]


def test_told_to_stop_it_exits_doing_nothing_and_the_migration_then_runs_the_ordinary_way(host):
    directory = start()
    r = sh(prestart.stop(directory), timeout=5)
    assert r.returncode == 0
    assert gone(directory) and not waiting_pythons(directory)
    assert host.read_text() == ""
    r = sh(prestart.migrate(directory, ["--expect", "0001"], ORDINARY))
    assert r.returncode == 42 and r.stdout == "ORDINARY-RAN\n"
    assert sh(prestart.stop(directory), timeout=5).returncode == 0          # nothing there: still quick, still 0


def test_nobody_comes_it_gives_up_after_its_wait(host):
    directory = start(wait=1)
    assert gone(directory, within=8)
    assert host.read_text() == ""
    assert sh(prestart.migrate(directory, [], ORDINARY)).stdout == "ORDINARY-RAN\n"


def test_a_container_without_alembic_leaves_the_ordinary_migration(host, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/nonexistent")
    directory = start()
    assert gone(directory)                   # exit 97 at the import: no word taken, the directory removed
    assert sh(prestart.migrate(directory, [], ORDINARY)).returncode == 42


def ended(directory: str, within: float = 10) -> bool:
    end = time.monotonic() + within
    while not Path(directory, "rc").exists() and time.monotonic() < end:
        time.sleep(0.05)
    return Path(directory, "rc").exists()


def test_the_docker_client_killed_before_the_word_ends_it_without_a_migration(host):
    directory = start()
    time.sleep(0.3)
    sh(f"pkill -TERM -f -- {json.dumps('^timeout -k 5 60 docker exec -i ' + CONTAINER)}")   # the client, not the shell
    assert ended(directory) and host.read_text() == ""
    r = sh(prestart.migrate(directory, [], ORDINARY))        # ended before the word: no word, the ordinary way
    assert r.returncode == 42 and gone(directory, within=2)


def test_told_to_stop_after_it_ended_on_its_own_its_directory_goes_at_once(host):
    """Its docker exec gone (the container removed, the client killed) before any word: the run's
    stop removes what is left now, not after the detached shell's tidy-up (TIDY x 0.2 s)."""
    directory = start()
    time.sleep(0.3)
    sh(f"pkill -TERM -f -- {json.dumps('^timeout -k 5 60 docker exec -i ' + CONTAINER)}")
    assert ended(directory) and Path(directory).exists()          # an end it cannot place: kept for the step
    assert sh(prestart.stop(directory), timeout=5).returncode == 0
    assert gone(directory, within=2) and host.read_text() == ""


def test_a_python_that_ends_after_the_word_without_taking_it_stops_the_migration(host, tmp_path):
    """Its docker exec killed as the word arrives: it may have read it and begun. Nothing more is run."""
    directory = start()
    time.sleep(0.3)
    Path(directory, "go").unlink()                           # the word cannot reach it: as if it died reading it
    os.mkfifo(Path(directory, "go"), 0o600)
    killer = subprocess.Popen(["sh", "-c", f"sleep 0.5; pkill -TERM -f -- {json.dumps('^timeout -k 5 60 docker exec -i ' + CONTAINER)}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = sh(prestart.migrate(directory, [], ORDINARY))          # the word written, then its docker exec killed
    killer.wait(10)
    assert r.returncode == prestart.UNSURE and "ORDINARY-RAN" not in r.stdout
    assert "before it said it took it: the database may have moved" in r.stderr
    assert host.read_text() == "" and gone(directory, within=2)


def test_the_word_carries_hostile_revisions_as_data(host, tmp_path):
    evil = "x'; touch " + str(tmp_path / "pwned") + "; '"
    directory = start()
    r = sh(prestart.migrate(directory, ["--expect", evil, '"$(id)"'], ORDINARY))
    assert r.returncode == 98                        # alembic says 0001: not the revisions handed over
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("printed, found", [
    ("/tmp/tmp.AbC123xyz\n", "/tmp/tmp.AbC123xyz"), ("", None), ("tmp/relative\n", None), ("/tmp/a b\n", None),
    ("/tmp/../etc\n", None), ("/tmp/x;rm -rf /\n", None), ("/tmp/one\n/tmp/two\n", None),
    ("/tmp/x/\n", None), ("/.\n", None), ("//\n", None), ("/tmp/.\n", None), ("/tmp/x/.\n", None), ("/-\n", None),
    ("/tmp/-rf\n", None), ("/var/tmp/tmp.k_9-Z.1\n", "/var/tmp/tmp.k_9-Z.1")])
def test_only_a_plain_absolute_directory_is_taken_from_the_host(printed, found):
    assert prestart.parse_start(printed) == found
