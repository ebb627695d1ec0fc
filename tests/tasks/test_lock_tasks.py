"""fab lock and fab unlock through the task layer on a scripted host: who holds the lock, whether
it is stale by whose LOCK_STALE_AFTER, and a takeover that only happens with --force, is judged
again on the host, and is recorded without the holder's token. (The lock inside a run is
tests/tasks/test_locking.py.)"""
import json

import pytest
from invoke import Result

from commands import lock as lock_cmd
from tasks.errors import DeployError, ExitCode
from tasks.locking import DeployLock
from tasks.locktasks import lock, unlock
from tests.tasks.scripted import flat, records, run_task

HOLDER = {"token": "9f8e7d6c5b4a3921", "who": "alice@laptop", "from": "laptop", "pid": 4242, "stage": "production",
          "task": "deploy", "started": "2026-11-28T04:00:00+00:00", "message": "release 2.0", "lock_stale_after": 120}
STATUS = r"echo clock"
TAKE_OVER = r"mv -- "


def held(age, holder=HOLDER):
    return (STATUS, json.dumps(holder) + f"\nclock 10000 {10000 - age} 9000\n")


def test_lock_free(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, lock, [(STATUS, "free\n")])
    assert code == 0 and "deploy lock: free (/app/ai-doc-qa/.deploy/lock)" in out


def test_lock_live_and_stale(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, lock, [held(5)])
    assert ("deploy lock: held by alice@laptop from laptop (pid 4242), stage production, deploy started "
            "2026-11-28T04:00:00+00:00, last heartbeat 5 s ago; message: release 2.0") in out
    assert "  live: LOCK_STALE_AFTER is 120 s (the holder's)" in out
    old = {k: v for k, v in HOLDER.items() if k != "lock_stale_after"}
    code, out, err, remote = run_task(mocker, capsys, lock, [held(600, old)])
    assert ("  STALE: LOCK_STALE_AFTER is 120 s (this machine's; the holder stored none); take it over with "
            "fab -H deploy@ai-doc-qa.example.com unlock --force") in out


def test_unlock_of_a_live_lock_is_refused(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, unlock, [held(30)], force=True)
    assert code == 6
    assert "the lock is live: its last sign of life is 30 s old (LOCK_STALE_AFTER is 120 s (the holder's))" in flat(err)
    assert not [c for c in remote.commands if "mv --" in c]


def test_unlock_of_a_stale_lock_needs_force(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, unlock, [held(600)])
    assert code == 6
    assert "the lock is stale; taking it over needs --force" in flat(err)
    assert "Next: fab -H deploy@ai-doc-qa.example.com unlock --force" in flat(err)
    assert not [c for c in remote.commands if "mv --" in c]


def test_unlock_force_moves_the_stale_lock_aside_and_records_it_without_the_token(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, unlock, [held(600), (TAKE_OVER, "")], force=True)
    assert code == 0, err
    [take] = [c for c in remote.commands if "mv -- " in c]
    assert HOLDER["token"] in take and "-gt 120 ]" in take                 # judged again on the host
    [rec] = records(remote)
    assert rec["event"] == "lock_takeover" and rec["heartbeat_age"] == 600 and rec["stale_after"] == 120
    assert "token" not in rec["previous_holder"] and rec["previous_holder"]["who"] == "alice@laptop"
    assert HOLDER["token"] not in json.dumps(rec)
    assert rec["kept_at"].startswith("/app/ai-doc-qa/.deploy/lock.stale-")
    assert f"stale lock taken over and moved to {rec['kept_at']}" in out


@pytest.mark.parametrize("exit_code, what", [
    (lock_cmd.NOT_OURS, "the lock changed while we looked at it (another holder, or already gone); not taken over"),
    (lock_cmd.STILL_LIVE, "the lock is live again: its holder beat since it was judged stale; not taken over"),
    (1, "the takeover command failed; not taken over"),
])
def test_a_takeover_the_host_refuses_leaves_the_lock(mocker, capsys, exit_code, what):
    code, out, err, remote = run_task(mocker, capsys, unlock, [held(600), (TAKE_OVER, Result(stdout="", exited=exit_code))],
                                      force=True)
    assert code == 6
    assert what in flat(err) and "Host state: lock left as it is" in flat(err)
    assert records(remote) == []


def test_unlock_of_a_free_lock(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, unlock, [(STATUS, "free\n")], force=True)
    assert code == 0 and "deploy lock: free; nothing to do" in out


def test_a_run_refused_by_a_live_lock_names_its_holder(make_session):
    s, remote = make_session([(r"echo acquired", "held\n"), held(5)])
    with pytest.raises(DeployError) as exc:
        with DeployLock(s, "deploy"):
            pass
    err = exc.value
    assert err.code == ExitCode.LOCKED and err.state == "nothing was changed by this run"
    assert err.what.startswith("another deploy holds the lock: held by alice@laptop from laptop (pid 4242)")
    assert err.next_step == "wait for that deploy to finish (fab -H deploy@prod lock shows it), or re-run with --lock-wait SECONDS"


def test_a_run_refused_by_a_stale_lock_is_told_how_to_take_it_over(make_session):
    s, remote = make_session([(r"echo acquired", "held\n"), held(600)])
    with pytest.raises(DeployError) as exc:
        with DeployLock(s, "deploy"):
            pass
    assert exc.value.next_step == ("the holder looks gone (no sign of life for 600 s > its LOCK_STALE_AFTER 120 s): "
                                   "check with fab -H deploy@prod status, then take it over with fab -H deploy@prod unlock --force")
