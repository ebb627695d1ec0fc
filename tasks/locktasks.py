"""The lock's own tasks: ``fab lock`` shows the deploy lock, ``fab unlock --force`` takes over a
stale one (recorded in the release record). The lock itself: tasks/locking.py."""
from __future__ import annotations

from commands import lock as lock_cmd
from commands import record as record_cmd
from tasks import maintenance, messages, ui
from tasks.base import operator_task
from tasks.errors import CommandFailed, DeployError, ExitCode
from tasks.locking import read_state
from tasks.messages import operator
from tasks.session import Session

LOCK_HELP = {
    "acquire": "take the lock for maintenance (-m says why): deploys, rollbacks, restarts and prunes then refuse (exit 6) until --release",
    "release": "give back a maintenance lock taken with --acquire by you (another operator's needs --force)",
    "message": "why the lock is taken (shown to whoever is refused)",
    "force": "with --release: release another operator's maintenance lock",
    "json": "print the lock's state as JSON on stdout (with --acquire/--release: the state after)",
}


def check_lock_options(acquire=False, release=False, message="", force=False, **_) -> list[str]:
    problems = []
    if acquire and release:
        problems.append("--acquire and --release are two different runs")
    if acquire and not message.strip():
        problems.append("--acquire needs -m MESSAGE: whoever is refused must learn why")
    if force and not release:
        problems.append("--force goes with --release (a stale deploy lock is taken over with fab unlock --force)")
    return problems


@operator_task(help=LOCK_HELP, check=check_lock_options)
def lock(s: Session, acquire=False, release=False, message="", force=False, json=False):
    """Show the deploy lock; take or give back a maintenance lock (--acquire -m MSG / --release).

    Shown: free, or who holds it, since when, and how fresh its heartbeat is."""
    if acquire or release:
        maintenance.acquire(s, message) if acquire else maintenance.release(s, force)
        if not json:
            return
    state = read_state(s)     # also after --acquire/--release with --json: stdout is JSON, never empty
    if json:
        ui.emit_json(maintenance.as_dict(state, s.settings.lock_stale_after))
        return
    if not state.held:
        ui.say(f"deploy lock: free ({s.settings.lock_dir})")
        return
    stale = state.is_stale(s.settings.lock_stale_after)
    ui.say(f"deploy lock: {lock_cmd.describe(state)}")
    ui.say(f"  {'STALE' if stale else 'live'}: {_judged_by(s, state)}"
           + (f"; take it over with {messages.unlock_force(s.host)}" if stale else ""))


def _judged_by(s: Session, state: lock_cmd.LockState) -> str:
    whose = "the holder's" if "lock_stale_after" in state.holder else "this machine's; the holder stored none"
    return f"LOCK_STALE_AFTER is {state.stale_after(s.settings.lock_stale_after):g} s ({whose})"


TAKEOVER_REFUSED = {
    lock_cmd.NOT_OURS: "the lock changed while we looked at it (another holder, or already gone); not taken over",
    lock_cmd.STILL_LIVE: "the lock is live again: its holder beat since it was judged stale; not taken over",
    lock_cmd.GUARD_BUSY: f"the lock's guard stayed busy for {lock_cmd.GUARD_WAIT} s; not taken over",
}


@operator_task(help={"force": "take over a lock whose holder is provably gone (heartbeat older than its LOCK_STALE_AFTER)"})
def unlock(s: Session, force=False):
    """Take over a stale deploy lock (with --force); a live lock is never broken. The takeover is recorded."""
    st = s.settings
    state = read_state(s)
    if not state.held:
        ui.say("deploy lock: free; nothing to do")
        return
    ui.say(f"deploy lock: {lock_cmd.describe(state)}")
    stale_after = state.stale_after(st.lock_stale_after)
    if not state.is_stale(st.lock_stale_after):
        raise DeployError(
            f"the lock is live: its last sign of life is {state.age} s old ({_judged_by(s, state)})",
            state="lock left as it is", code=ExitCode.LOCKED,
            next_step="a deploy is running: wait for it. If its machine died, wait until the heartbeat is older than LOCK_STALE_AFTER")
    if not force:
        raise DeployError("the lock is stale; taking it over needs --force", state="lock left as it is",
                          code=ExitCode.LOCKED, next_step=messages.unlock_force(s.host))
    stale_dir = f"{st.record_path}/lock.stale-{record_cmd.new_release_id()}"
    try:
        s.run(lock_cmd.take_over(st.lock_dir, state.holder.get("token", ""), stale_dir, stale_after), mutating=True)
    except CommandFailed as failed:
        what = TAKEOVER_REFUSED.get(failed.exit_code, "the takeover command failed; not taken over")
        raise DeployError.from_command(failed, what, code=ExitCode.LOCKED, state="lock left as it is",
                                       next_step=messages.lock(s.host)) from None
    rid = record_cmd.new_release_id()
    # Redacted before it is serialized (redacting the JSON text could break it); the holder came from the host.
    data = s.redactor.obj({"who": operator(), "previous_holder": {k: v for k, v in state.holder.items() if k != "token"},
                           "heartbeat_age": state.age, "stale_after": stale_after, "half_created": state.half_created,
                           "kept_at": stale_dir})
    s.run(record_cmd.append(st.releases_file, record_cmd.line(rid, "lock_takeover", **data)), mutating=True)
    ui.say(f"stale lock taken over and moved to {stale_dir}; the takeover is recorded in {st.releases_file}")
