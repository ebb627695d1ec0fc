"""The lock's shell commands, run for real with /bin/sh in a temporary directory."""
import os
import pwd
import shutil
import subprocess
import tempfile
import time

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
    sh(f"touch -d '-300 seconds' {d}/heartbeat")
    assert sh(lock.take_over(d, "zzz", aside, 120)).returncode == lock.NOT_OURS
    assert sh(lock.take_over(d, "aaa", aside, 120)).returncode == 0
    assert not lock.parse_status(sh(lock.status(d)).stdout).held
    assert (tmp_path / "lock.stale-1" / "holder.json").exists()


def test_parse_status_without_heartbeat_is_stale():
    st = lock.parse_status('{"token": "t"}\nclock 1000 0\n')
    assert st.held and st.heartbeat == 0 and st.is_stale(120)


# --- exact strings: each builder is one paste-able command, every value quoted ------------------

D = "/srv/app dir/.deploy/lock"
GUARD = "if command -v flock >/dev/null 2>&1; then flock -w 5 9 ||"


def test_acquire_builder_exact():
    assert lock.acquire(D, {"token": "t1", "who": "o'k"}) == (
        "lock_error() { echo error; echo \"user $(id -un)\"; echo \"owner $(stat -c %U -- '/srv/app dir/.deploy' 2>/dev/null"
        " || stat -c %U -- '/srv/app dir' 2>/dev/null)\"; printf 'reason %s\\n' \"$1\"; }; "
        "if ! err=$(mkdir -p -- '/srv/app dir/.deploy' 2>&1); then lock_error \"$err\"; "
        "elif [ ! -r '/srv/app dir/.deploy' ]; then lock_error 'cannot read /srv/app dir/.deploy'; "
        f"else ( {GUARD} {{ echo busy; exit 0; }}; fi; "
        "if err=$(mkdir -- '/srv/app dir/.deploy/lock' 2>&1); then "
        "if printf '%s\\n' '{\"token\": \"t1\", \"who\": \"o'\"'\"'k\"}' > '/srv/app dir/.deploy/lock/holder.json' "
        "&& touch -- '/srv/app dir/.deploy/lock/heartbeat'; then echo acquired; "
        "else rm -rf -- '/srv/app dir/.deploy/lock'; lock_error 'could not write /srv/app dir/.deploy/lock/holder.json'; fi; "
        "elif [ -d '/srv/app dir/.deploy/lock' ]; then echo held; else lock_error \"$err\"; fi ) 9< '/srv/app dir/.deploy'; fi")


def test_status_builder_exact():
    assert lock.status(D) == (
        "( [ -d '/srv/app dir/.deploy/lock' ] || { echo free; exit 0; }; exec 9< '/srv/app dir/.deploy'; "
        f"{GUARD} :; fi; if [ -d '/srv/app dir/.deploy/lock' ]; then "
        "cat -- '/srv/app dir/.deploy/lock/holder.json' 2>/dev/null; echo; echo clock $(date +%s) "
        "$(stat -c %Y -- '/srv/app dir/.deploy/lock/heartbeat' 2>/dev/null || echo 0) "
        "$(stat -c %Y -- '/srv/app dir/.deploy/lock' 2>/dev/null || echo 0); else echo free; fi )")


def test_heartbeat_builder_exact():
    assert lock.heartbeat(D, "t1") == (
        "( [ -d '/srv/app dir/.deploy/lock' ] || exit 3; exec 9< '/srv/app dir/.deploy'; "
        f"{GUARD} exit 75; fi; "
        "grep -qF '\"token\": \"t1\"' -- '/srv/app dir/.deploy/lock/holder.json' 2>/dev/null || exit 3; "
        "touch -- '/srv/app dir/.deploy/lock/heartbeat' )")


def test_release_builder_exact():
    assert lock.release(D, "t1") == (
        "( [ -d '/srv/app dir/.deploy/lock' ] || { echo free; exit 0; }; exec 9< '/srv/app dir/.deploy'; "
        f"{GUARD} exit 75; fi; "
        "if grep -qF '\"token\": \"t1\"' -- '/srv/app dir/.deploy/lock/holder.json' 2>/dev/null; "
        "then rm -rf -- '/srv/app dir/.deploy/lock' && echo released; else echo not-ours; fi )")


def test_take_over_builder_exact():
    aside = "/srv/app dir/.deploy/lock.stale-1"
    tail = ("t=$(stat -c %Y -- '/srv/app dir/.deploy/lock/heartbeat' 2>/dev/null || stat -c %Y -- '/srv/app dir/.deploy/lock') "
            "|| exit 1; [ $(( $(date +%s) - t )) -gt 120 ] || exit 4; "
            "mv -- '/srv/app dir/.deploy/lock' '/srv/app dir/.deploy/lock.stale-1' )")
    head = f"( [ -d '/srv/app dir/.deploy/lock' ] || exit 3; exec 9< '/srv/app dir/.deploy'; {GUARD} exit 75; fi; "
    assert lock.take_over(D, "t1", aside, 120.5) == (
        head + "grep -qF '\"token\": \"t1\"' -- '/srv/app dir/.deploy/lock/holder.json' 2>/dev/null || exit 3; " + tail)
    # a half-created lock (no token) is taken over only if it still has none
    assert lock.take_over(D, "", aside, 120) == (
        head + "! grep -qF '\"token\": \"' -- '/srv/app dir/.deploy/lock/holder.json' 2>/dev/null || exit 3; " + tail)


# --- issue 7, lock item 2: an unwritable record directory is an error, never "held" -------------

def as_other_user(cmd):
    """Run as nobody when we are root (root may write anywhere), so 'Permission denied' is real."""
    if os.geteuid() == 0:
        return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", cmd],
                              capture_output=True, text=True)
    return sh(cmd)


def test_unwritable_record_dir_makes_acquire_say_error_not_held():
    base = tempfile.mkdtemp(dir="/tmp")
    try:
        os.chmod(base, 0o755)
        record = os.path.join(base, ".deploy")
        os.mkdir(record, 0o755)             # owned by us, not writable by the user who runs the command
        out = as_other_user(lock.acquire(record + "/lock", holder("aaa")))
        answer = lock.parse_acquire(out.stdout)
        assert out.returncode == 0 and answer.word == lock.ERROR, out
        assert "Permission denied" in answer.reason and answer.owner == pwd.getpwuid(os.geteuid()).pw_name
        assert answer.user and not os.path.exists(record + "/lock")
    finally:
        shutil.rmtree(base)


def test_lock_path_that_is_not_a_directory_is_an_error_not_held(tmp_path):
    """mkdir fails, yet no lock directory exists: the case that looped forever (held, then free)."""
    d = str(tmp_path / "lock")
    os.symlink(str(tmp_path / "nowhere" / "x"), d)          # a dangling link: `[ -d ]` is false
    answer = lock.parse_acquire(sh(lock.acquire(d, holder("aaa"))).stdout)
    assert answer.word == lock.ERROR and "File exists" in answer.reason
    assert lock.parse_status(sh(lock.status(d)).stdout) == lock.LockState(False, {})


def test_parse_acquire():
    assert lock.parse_acquire("acquired\n") == lock.AcquireAnswer("acquired")
    assert lock.parse_acquire("error\nuser deploy\nowner root\nreason mkdir: cannot create directory 'x': Permission denied\n") == \
        lock.AcquireAnswer("error", "deploy", "root", "mkdir: cannot create directory 'x': Permission denied")
    assert lock.parse_acquire("").word == lock.ERROR and "unexpected" in lock.parse_acquire("").reason


# --- issue 7, lock item 1: every beat proves ownership, and says which way it failed ------------

def test_heartbeat_tells_not_ours_from_could_not_run(tmp_path):
    d = str(tmp_path / ".deploy" / "lock")
    sh(lock.acquire(d, holder("aaa")))
    assert sh(lock.heartbeat(d, "aaa")).returncode == 0
    assert sh(lock.heartbeat(d, "bbb")).returncode == lock.NOT_OURS           # another token
    os.remove(d + "/heartbeat")
    os.symlink(str(tmp_path / "nowhere" / "hb"), d + "/heartbeat")           # touch cannot create it
    assert sh(lock.heartbeat(d, "aaa")).returncode not in (0, lock.NOT_OURS)  # could not run
    shutil.rmtree(d)
    assert sh(lock.heartbeat(d, "aaa")).returncode == lock.NOT_OURS           # the lock is gone
    shutil.rmtree(tmp_path / ".deploy")
    assert sh(lock.heartbeat(d, "aaa")).returncode == lock.NOT_OURS           # its directory too


def test_release_never_removes_another_holders_lock(tmp_path):
    d = str(tmp_path / "lock")
    sh(lock.acquire(d, holder("aaa")))
    assert sh(lock.release(d, "bbb")).stdout.strip() == lock.NOT_OURS_WORD and os.path.isdir(d)
    assert sh(lock.release(d, "aaa")).stdout.strip() == lock.RELEASED and not os.path.exists(d)
    assert sh(lock.release(d, "aaa")).stdout.strip() == "free"


# --- issue 7, lock item 3: half-created locks, the holder's own limits, no takeover window -------

def test_half_created_lock_ages_from_its_directory_and_can_be_taken_over(tmp_path):
    d, aside = str(tmp_path / "lock"), str(tmp_path / "lock.stale-1")
    os.mkdir(d)                                  # the creator died between mkdir and the holder file
    fresh = lock.parse_status(sh(lock.status(d)).stdout)
    assert fresh.held and fresh.half_created and fresh.heartbeat == 0 and 0 <= fresh.age <= 2
    assert not fresh.is_stale(120)               # just created: maybe its creator is writing it now
    assert "half-created" in lock.describe(fresh)
    assert sh(lock.take_over(d, "", aside, 120)).returncode == lock.STILL_LIVE
    sh(f"touch -d '-300 seconds' '{d}'")
    old = lock.parse_status(sh(lock.status(d)).stdout)
    assert old.age >= 299 and old.is_stale(120)
    assert sh(lock.take_over(d, "", aside, 120)).returncode == 0
    assert os.path.isdir(aside) and not os.path.exists(d)


def test_half_created_takeover_refuses_a_lock_that_got_its_holder_meanwhile(tmp_path):
    d, aside = str(tmp_path / "lock"), str(tmp_path / "lock.stale-1")
    sh(lock.acquire(d, holder("aaa")))
    sh(f"touch -d '-300 seconds' '{d}/heartbeat'")
    assert sh(lock.take_over(d, "", aside, 120)).returncode == lock.NOT_OURS and os.path.isdir(d)


def test_staleness_is_judged_by_the_holders_own_limits(tmp_path):
    d = str(tmp_path / "lock")
    sh(lock.acquire(d, {**holder("aaa"), "lock_heartbeat": 60, "lock_stale_after": 600}))
    sh(f"touch -d '-300 seconds' {d}/heartbeat")
    slow = lock.parse_status(sh(lock.status(d)).stdout)
    assert not slow.is_stale(120) and slow.stale_after(120) == 600     # its holder promised 600 s
    fast = lock.LockState(True, {"token": "t", "lock_stale_after": 4}, now=1010, heartbeat=1000)
    assert fast.is_stale(120)                                            # its holder promised 4 s
    old_file = lock.LockState(True, {"token": "t"}, now=1010, heartbeat=1000)
    assert not old_file.is_stale(120) and old_file.is_stale(5)           # no promise stored: ours
    for bad in ("600", None, -1, 0, float("nan"), True):
        assert lock.LockState(True, {"token": "t", "lock_stale_after": bad}).stale_after(120) == 120


def test_take_over_judges_again_on_the_host_and_refuses_a_fresh_heartbeat(tmp_path):
    d, aside = str(tmp_path / "lock"), str(tmp_path / "lock.stale-1")
    sh(lock.acquire(d, holder("aaa")))           # heartbeat touched just now
    assert sh(lock.take_over(d, "aaa", aside, 120)).returncode == lock.STILL_LIVE
    assert os.path.isdir(d) and not os.path.exists(aside)


def test_take_over_waits_for_a_beat_in_progress_and_then_refuses(tmp_path):
    """The window between the ownership check and the move is closed: a beat that holds the guard
    when the takeover starts is waited for, and the takeover then sees the fresh heartbeat."""
    d, aside = str(tmp_path / ".deploy" / "lock"), str(tmp_path / ".deploy" / "lock.stale-1")
    sh(lock.acquire(d, holder("aaa")))
    sh(f"touch -d '-300 seconds' '{d}/heartbeat'")
    inside = tmp_path / "beat-has-the-guard"
    beat = subprocess.Popen(["flock", str(tmp_path / ".deploy"), "sh", "-c",
                             f"touch '{inside}'; sleep 1; touch '{d}/heartbeat'"])
    try:
        deadline = time.monotonic() + 10
        while not inside.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert inside.exists(), "flock(1) did not start"
        assert sh(lock.take_over(d, "aaa", aside, 120)).returncode == lock.STILL_LIVE
    finally:
        beat.wait()
    assert os.path.isdir(d) and not os.path.exists(aside)


def test_holder_file_that_was_cut_short_still_names_its_token():
    st = lock.parse_status('{"token": "abc123", "who": "me@l\nclock 1000 990 900\n')
    assert st.holder["token"] == "abc123" and st.heartbeat_age == 10 and st.created == 900


def test_unreadable_holder_line_is_never_cut_into_the_state_before_redaction():
    """A corrupt holder file's text was kept cut to 200 characters, so a secret straddling the cut
    reached a lock_takeover record line as a prefix the redactor cannot recognise."""
    secret = "sentinel-holder-secret-0123456789"
    line = "{" + "x" * 190 + secret
    state = lock.parse_status(line + "\nclock 1000 990 980\n")
    assert state.held and not any(secret[:8] in str(v) for v in state.holder.values())
    assert state.holder["unreadable"] == f"{len(line)} characters, not JSON"


def test_a_holders_message_with_newlines_is_described_on_one_line():
    """Seen: `fab lock --acquire -m "$(printf 'a\nb')"`, then `fab lock` printed the message's
    second line as a line of its own, which could pass for the tool's verdict."""
    import json
    forged = "disk swap\n  STALE: LOCK_STALE_AFTER is 120 s; take it over with fab unlock --force\r\n"
    st = lock.parse_status(json.dumps({**holder("aaa"), "message": forged}) + "\nclock 100 95 90\n")
    text = lock.describe(st)
    assert "\n" not in text and "\r" not in text
    assert text.endswith("; message: disk swap STALE: LOCK_STALE_AFTER is 120 s; take it over with fab unlock --force")
