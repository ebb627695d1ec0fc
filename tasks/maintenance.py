"""The maintenance lock: ``fab lock --acquire -m MSG`` takes the deploy lock itself (same
directory, same atomic mkdir), so every run that takes the deploy lock (deploy, rollback, restart,
prune, check-db --fix) is refused with exit 6 and the message. It has no heartbeat: its holder
file promises a LOCK_STALE_AFTER of ten years, so it never looks stale and ``fab unlock --force``
cannot take it over; ``fab lock --release`` gives it back (another operator's: ``--force``)."""
from __future__ import annotations

import os
import secrets

from commands import lock as lock_cmd
from commands import record as record_cmd
from tasks import messages, ui
from tasks.errors import DeployError, ExitCode
from tasks.locking import read_state
from tasks.messages import operator
from tasks.session import Session

TASK = "maintenance"
NEVER_STALE = 10 * 365 * 86400      # seconds: the holder's own promise, read by whoever judges staleness


def holder(s: Session, message: str) -> dict:
    st = s.settings
    return {"token": secrets.token_hex(8), "who": operator(), "from": os.uname().nodename, "pid": os.getpid(),
            # redacted: the holder file is readable on the host, and is copied into a takeover record
            "stage": st.stage, "task": TASK, "started": record_cmd.utc_now(), "message": s.redactor(message),
            "lock_heartbeat": NEVER_STALE, "lock_stale_after": NEVER_STALE}


def acquire(s: Session, message: str) -> None:
    st = s.settings
    answer = lock_cmd.parse_acquire(s.run(lock_cmd.acquire(st.lock_dir, holder(s, message)), mutating=True).stdout)
    if s.dry:
        return
    if answer.word != lock_cmd.ACQUIRED:
        state = read_state(s)
        raise DeployError(f"the lock was not taken: {lock_cmd.describe(state) if state.held else answer.word + ' ' + answer.reason}",
                          command=lock_cmd.status(st.lock_dir), code=ExitCode.LOCKED, state="lock left as it is",
                          next_step=f"{messages.lock(s.host)} shows who holds it; try again when it is free")
    ui.say(f"maintenance lock taken on {s.host}: deploys are refused until {messages.fab(s.host, 'lock --release')}")


def release(s: Session, force: bool) -> None:
    st = s.settings
    state = read_state(s)
    if not state.held:
        ui.say("deploy lock: free; nothing to do")
        return
    h = state.holder
    if h.get("task") != TASK:
        raise DeployError(f"the lock is a {h.get('task', '?')} lock, not a maintenance lock: {lock_cmd.describe(state)}",
                          code=ExitCode.LOCKED, state="lock left as it is",
                          next_step=f"wait for that run to end; if its machine died, {messages.unlock_force(s.host)} once it is stale")
    if h.get("who") != operator() and not force:
        raise DeployError(f"the maintenance lock is {h.get('who', '?')}'s, not yours ({operator()}): {lock_cmd.describe(state)}",
                          code=ExitCode.LOCKED, state="lock left as it is",
                          next_step=f"ask them, or {messages.fab(s.host, 'lock --release --force')}")
    out = s.run(lock_cmd.release(st.lock_dir, h.get("token", "")), mutating=True).stdout.strip()
    if s.dry:
        return
    if out != lock_cmd.RELEASED:
        raise DeployError(f"the lock changed while we looked at it ({out}); not released", code=ExitCode.LOCKED,
                          command=lock_cmd.status(st.lock_dir), state="lock left as it is", next_step=messages.lock(s.host))
    ui.say(f"maintenance lock of {h.get('who', '?')} released" + (" (--force)" if h.get("who") != operator() else ""))


def as_dict(state: lock_cmd.LockState, local_stale_after: float) -> dict:
    """``fab lock --json``: the state without the holder's token (whoever has it can release the lock)."""
    return {"held": state.held, "holder": {k: v for k, v in state.holder.items() if k != "token"},
            "heartbeat_age": state.heartbeat_age if state.held else None,
            "stale": state.is_stale(local_stale_after), "stale_after": state.stale_after(local_stale_after) if state.held else None,
            "maintenance": state.holder.get("task") == TASK}
