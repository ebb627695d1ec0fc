"""The lock's shell commands, run for real with /bin/sh in a temporary directory."""
import subprocess

from commands import lock


def sh(cmd):
    return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True)


def holder(token):
    return {"token": token, "who": "me@laptop", "from": "laptop", "pid": 42, "stage": "staging",
            "task": "deploy", "started": "2026-11-27T00:00:00+00:00", "message": "it's \"quoted\""}


def test_acquire_is_exclusive_and_release_needs_the_token(tmp_path):
    d = str(tmp_path / "app" / ".deploy" / "lock")
    assert sh(lock.acquire(d, holder("aaa"))).stdout.strip() == lock.ACQUIRED
    assert sh(lock.acquire(d, holder("bbb"))).stdout.strip() == lock.HELD
    st = lock.parse_status(sh(lock.status(d)).stdout)
    assert st.held and st.holder["token"] == "aaa" and st.holder["message"] == "it's \"quoted\""
    assert st.now > 0 and st.heartbeat > 0 and st.heartbeat_age <= 2
    sh(lock.release(d, "bbb"))                     # someone else's token: nothing happens
    assert lock.parse_status(sh(lock.status(d)).stdout).held
    assert sh(lock.heartbeat(d, "bbb")).returncode != 0
    assert sh(lock.heartbeat(d, "aaa")).returncode == 0
    sh(lock.release(d, "aaa"))
    assert lock.parse_status(sh(lock.status(d)).stdout) == lock.LockState(False, {})


def test_staleness(tmp_path):
    d = str(tmp_path / "lock")
    sh(lock.acquire(d, holder("aaa")))
    sh(f"touch -d '-300 seconds' {d}/heartbeat")
    st = lock.parse_status(sh(lock.status(d)).stdout)
    assert st.heartbeat_age >= 299
    assert st.is_stale(120) and not st.is_stale(600)
    assert "last heartbeat 3" in lock.describe(st) and "me@laptop" in lock.describe(st)


def test_take_over_moves_only_the_lock_judged_stale(tmp_path):
    d, aside = str(tmp_path / "lock"), str(tmp_path / "lock.stale-1")
    sh(lock.acquire(d, holder("aaa")))
    assert sh(lock.take_over(d, "zzz", aside)).returncode != 0
    assert sh(lock.take_over(d, "aaa", aside)).returncode == 0
    assert not lock.parse_status(sh(lock.status(d)).stdout).held
    assert (tmp_path / "lock.stale-1" / "holder.json").exists()


def test_parse_status_without_heartbeat_is_stale():
    st = lock.parse_status('{"token": "t"}\nclock 1000 0\n')
    assert st.held and st.heartbeat == 0 and st.is_stale(120)
