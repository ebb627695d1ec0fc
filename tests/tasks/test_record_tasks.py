"""history and rollback reading the release record through the task layer, with a scripted remote
(issue 7, items 4, 14 and 16): bad lines are skipped with one warning, an older release is searched
for, and bad options are usage errors before any connection."""
import json
import os
import subprocess
import sys

import pytest
from invoke import Exit, MockContext

from commands import record
from tasks import base
from tasks.conftest import Remote, hermetic_config
from tasks.errors import DeployError, ExitCode
from tasks.rollback import resolve_target, rollback
from tasks.status import history

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
V1 = {"backend": {"ref": "reg/backend:latest", "id": "sha256:" + "1" * 64, "digests": []}}
V2 = {"backend": {"ref": "reg/backend:latest", "id": "sha256:" + "2" * 64, "digests": []}}
A, R1 = "20261127T100000Z-aaaa", "20261127T110000Z-bbbb"


def rel(rid, kind, before, after):
    return [record.line(rid, "start", kind=kind, stage="production", host="h", who="me@laptop"),
            record.line(rid, "images_before", images=before, healthy=True),
            record.line(rid, "images_after", images=after, healthy=True),
            record.line(rid, "end", outcome="success", seconds=1.0)]


def fab(*args):
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "fab"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args", [["rollback", "--to", "v1;reboot"], ["history", "--limit", "abc"]],
                         ids=["rollback --to 'v1;reboot'", "history --limit abc"])
def test_bad_rollback_to_and_history_limit_are_usage_errors_not_tracebacks(args):
    # 127.0.0.1:1 refuses connections: reaching it would be exit 5, so exit 2 proves nothing connected
    r = fab("-H", "deploy@127.0.0.1:1", *args, "--stage", "production")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "USAGE ERROR" in r.stderr
    assert "is not accepted" in r.stderr and "nothing was run" in r.stderr


def test_rollback_task_checks_to_before_connecting(mocker, capsys):
    connect = mocker.patch.object(base, "connect")
    with pytest.raises(Exit) as exc:
        rollback(MockContext(config=hermetic_config()), to="$(reboot)", stage="production")
    assert exc.value.code == ExitCode.CONFIG
    connect.assert_not_called()
    assert "--to '$(reboot)' is not accepted: --to takes a release id" in capsys.readouterr().err


@pytest.fixture
def history_run(mocker):
    def run(text, limit="10"):
        remote = Remote([(r"^if \[ -e .*releases.jsonl \]", f"{text.count(chr(10))}\n{text}"),
                         (r"compose version --short", "v2 2.26.1\n")])
        cxn = mocker.Mock()
        cxn.run.side_effect = remote
        mocker.patch.object(base, "connect", return_value=cxn)
        history(MockContext(config=hermetic_config()), limit=limit, stage="production")
        return remote
    return run


def test_history_skips_corrupt_lines_with_one_warning_and_lists_each_candidate_once(history_run, capsys):
    lines = rel(A, "deploy", V1, V2) + rel(R1, "rollback", V2, V1)
    lines.insert(3, json.dumps({"v": 1, "release": A, "event": "step", "step": "x", "seconds": "12s"}))
    lines.append(json.dumps({"v": 1, "release": ["x"], "event": "start"}))
    lines.append('{"v":1,"release":"20261127T1200')                      # torn, no newline
    history_run("\n".join(lines))
    cap = capsys.readouterr()
    out = cap.out + cap.err
    assert "Traceback" not in out
    assert out.count("skipped 3 line(s)") == 1 and "line 4: step line: seconds is not a number" in out
    assert "line 10: release is not a release id" in out and "line 11: not valid JSON" in out
    cand = [row.split()[0] for row in cap.out.split("rollback candidates")[1].splitlines()[3:]]
    assert cand == [R1, A]                 # each once; the old list printed "R1; R1" (its before and after sets)


def test_history_limit_shows_the_newest(history_run, capsys):
    history_run("\n".join(rel(A, "deploy", V1, V2) + rel(R1, "rollback", V2, V1)), limit="1")
    table = capsys.readouterr().out.split("rollback candidates")[0]
    assert R1 in table and A not in table


def test_rollback_to_an_old_release_searches_the_whole_record(make_session):
    old = rel(A, "deploy", V1, V2)
    recent = rel(R1, "rollback", V2, V1)
    hits = "".join(f"{i}:{l}\n" for i, l in enumerate(old, 1))
    s, remote = make_session([(r"^if \[ -e .*releases.jsonl \]", f"{2000 + len(old)}\n" + "\n".join(recent) + "\n"),
                              (r"^\{ grep -a -n -F", hits)])
    target, source = resolve_target(s, A, V1)
    assert target == V2 and source == f"left serving healthily by deploy {A}"
    assert any(c.startswith("{ grep -a -n -F -m 500 -e '\"release\":\"" + A) for c in remote.commands)


def test_rollback_to_an_ambiguous_prefix_lists_the_matches(make_session):
    text = "\n".join(rel(A, "deploy", V1, V2) + rel(R1, "rollback", V2, V1))
    s, remote = make_session([(r"^if \[ -e .*releases.jsonl \]", f"8\n{text}\n"), (r"^\{ grep -a -n -F", "")])
    with pytest.raises(DeployError) as exc:
        resolve_target(s, "20261127T1", V1)
    assert exc.value.code == ExitCode.ROLLBACK_FAILED and "ambiguous" in exc.value.what
    assert exc.value.output == ["releases whose id starts with that prefix:", A, R1]


def test_rollback_to_a_prefix_never_matches_this_runs_own_release(make_session, mocker):
    own = rel(R1, "rollback", V2, V1)[:2]                                 # as written so far by this very run
    text = "\n".join(rel(A, "deploy", V1, V2) + own)
    s, remote = make_session([(r"^if \[ -e .*releases.jsonl \]", f"6\n{text}\n"), (r"^\{ grep -a -n -F", "")])
    s.recorder = mocker.Mock(release=R1)
    target, _ = resolve_target(s, "20261127T1", V2)                      # not "ambiguous: A and R1"
    assert target == V2
