"""A deploy starts the migration's Python during the checklist (commands/prestart.py, issue 9) and
hands it its turn in the migration step; one it does not use is told to stop; one that could not
start, or waits in another container, leaves the migration as it was. The real deploy task on a
scripted host (tests/tasks/scripted_host.py), and the hand-over itself on a session."""
from __future__ import annotations

import re
import shlex
import threading

from invoke import Result

from commands import alembic as alembic_cmd
from commands import prestart as prestart_cmd
from config import load_settings
from tasks import checklist as checklist_mod
from tasks import migrate as migrate_mod
from tasks.session import Session
from tasks.worker import Ready
from tests.tasks.scripted_host import ScriptedHost
from tests.tasks.test_prefetch import deploy_on

START = r"^command -v setsid >/dev/null \|\| exit 96; "
HAND_OVER = r"^d=/tmp/tmp\.q1W2e3R4t5; if \[ -d .* printf '%s\\n' 'go \["
STOP = r"^d=/tmp/tmp\.q1W2e3R4t5; if \[ -d .*; else printf 'stop"
ORDINARY = r"^docker exec [0-9a-f]{64} sh -c 'py=\$\(command -v python3.*@@history"      # MIGRATE_SCRIPT


def first(commands, pattern):
    return next((i for i, c in enumerate(commands) if re.search(pattern, c)), None)


def scripted():
    st = load_settings("production", {})
    return st, ScriptedHost(st.services, st.dependency_services)


def test_a_deploy_hands_its_migration_to_the_python_it_started_during_the_checklist(mocker, capsys):
    st, host = scripted()
    code, out, err, commands = deploy_on(mocker, capsys, host)
    assert code == 0, err
    start, hand_over = first(commands, START), first(commands, HAND_OVER)
    merge, db_ready = first(commands, r" merge --ff-only "), first(commands, r"pg_isready")
    assert start is not None and start < merge < db_ready < hand_over    # begun before prepare, used after db ready
    started = commands[start]
    assert re.search(r"setsid sh -c .* ai-doc-qa-migration \"\$d\" </dev/null", started)
    assert re.search(r"timeout -k 5 \d+ docker exec -i [0-9a-f]{64} sh -c ", started)
    # the word carries the revisions the checklist read; the command ends with the ordinary migration
    assert "'go [\"--expect\", \"0001\"]'" in commands[hand_over]
    assert commands[hand_over].endswith(f" sh -c {shlex.quote(alembic_cmd.MIGRATE_SCRIPT)} sh --expect 0001")
    assert first(commands, ORDINARY) is None and first(commands, STOP) is None
    assert "migrations applied: database at revision 0002 (was 0001)" in out
    assert '"event":"migrations"' in (line := next(c for c in commands if '"event":"migrations"' in c)) and '"early":true' in line


def test_a_checklist_that_blocks_tells_the_prestarted_python_to_stop(mocker, capsys, monkeypatch):
    monkeypatch.setenv("DEPLOY_CHECKLIST_BLOCKING", "monitoring")
    monkeypatch.setenv("DEPLOY_MONITORING_URL", "")
    st, host = scripted()
    started = threading.Event()        # the checklist ends once the host has answered the start (else: nothing to stop)
    oncall = checklist_mod.check_oncall
    mocker.patch.object(checklist_mod, "check_oncall", lambda s, message: started.wait(10) and oncall(s, message))
    answer = Result(stdout="/tmp/tmp.q1W2e3R4t5\n", exited=0)
    code, out, err, commands = deploy_on(mocker, capsys, host, [(START, lambda c: started.set() or answer)])
    assert code == 9, err
    start, stop = first(commands, START), first(commands, STOP)
    assert start is not None and stop is not None and start < stop
    assert first(commands, HAND_OVER) is None and first(commands, ORDINARY) is None
    released = max(i for i, c in enumerate(commands) if "echo released" in c)
    assert stop < released                   # told before the lock is given up


def test_a_host_that_cannot_prestart_migrates_the_ordinary_way(mocker, capsys):
    st, host = scripted()
    code, out, err, commands = deploy_on(mocker, capsys, host, [(START, Result(stdout="", exited=prestart_cmd.NOT_STARTED))])
    assert code == 0, err
    assert first(commands, START) is not None and first(commands, ORDINARY) is not None
    assert first(commands, HAND_OVER) is None and first(commands, STOP) is None
    assert "migrations applied: database at revision 0002 (was 0001)" in out
    assert '"early":false' in next(c for c in commands if '"event":"migrations"' in c)


def test_a_prestart_waiting_in_another_container_is_stopped_and_not_used(settings, mocker):
    sent = []
    cxn = mocker.Mock()
    cxn.run.side_effect = lambda command, **kw: sent.append(command) or Result(exited=0)
    s = Session(settings, "h", cxn)
    s.state.prefetched[migrate_mod.PRESTART] = Ready(lambda: ("/tmp/tmp.abc", "f" * 64))
    argv = alembic_cmd.migrate_argv(["0001"])
    ordinary = "docker exec " + "a" * 64 + " " + shlex.join(argv)
    assert migrate_mod._with_prestarted(s, ordinary, argv) == ordinary
    assert len(sent) == 1 and shlex.split(sent[0])[6] == prestart_cmd.stop("/tmp/tmp.abc")     # timeout -k 5 N sh -c STOP
    assert migrate_mod.PRESTART not in s.state.prefetched
    # the same container: the hand-over, with the ordinary command as its fallback
    s.state.prefetched[migrate_mod.PRESTART] = Ready(lambda: ("/tmp/tmp.abc", "a" * 64))
    assert migrate_mod._with_prestarted(s, ordinary, argv) == prestart_cmd.migrate("/tmp/tmp.abc", ["--expect", "0001"], ordinary)
    assert len(sent) == 1


def test_a_run_that_never_asks_for_a_prefetch_gives_it_to_its_unused_hook(settings, mocker):
    cxn = mocker.Mock()
    cxn.run.side_effect = lambda command, **kw: Result(exited=0)
    s = Session(settings, "h", cxn)
    given = []
    s.prefetch("k", lambda: "result", unused=given.append)
    s.prefetch("asked", lambda: "other", unused=given.append)
    s.fetched("asked", lambda: None)
    s.settle_prefetches()
    assert given == ["result"]


def test_a_hand_over_that_cannot_say_whether_the_migration_began_fails_the_step_and_names_the_revision(mocker, capsys):
    st, host = scripted()
    unsure = Result(stdout="", exited=prestart_cmd.UNSURE, stderr=(
        "the migration's Python started early ended (status 137) when it was handed its turn, before it said it "
        "took it: the database may have moved\n"))
    code, out, err, commands = deploy_on(mocker, capsys, host, [(HAND_OVER, unsure)])
    text = " ".join(err.split())
    assert code == 3, err
    assert "alembic upgrade head failed: exited with code 95" in text and "the database may have moved" in text
    assert "migration failed: database at revision 0001 (was 0001); services not changed" in text
    assert first(commands, ORDINARY) is None and not [c for c in commands if " up -d --no-deps" in c or c.endswith(" up -d")]
