"""The deploy lock on the host (``<APP_DIR>/.deploy/lock``): acquire, heartbeat, release,
show, and takeover of a stale lock."""
from __future__ import annotations

import os
import secrets
import threading
import time

from commands import lock as lock_cmd
from commands import record as record_cmd
from tasks import ui
from tasks.base import operator_task
from tasks.errors import CommandFailed, DeployError, ExitCode
from tasks.session import Session, operator


def read_state(s: Session) -> lock_cmd.LockState:
    return lock_cmd.parse_status(s.run(lock_cmd.status(s.settings.lock_dir)).stdout)


class DeployLock:
    """Context manager: acquired on enter (or DeployError LOCKED), released on every exit path.

    A daemon thread touches the heartbeat file every LOCK_HEARTBEAT seconds over the same SSH
    connection; if this process dies, the heartbeat stops and the lock becomes provably stale.
    """

    def __init__(self, s: Session, task: str, message: str = "", wait: float | None = None):
        self.s = s
        self.task = task
        self.message = message
        self.wait = s.settings.lock_wait if wait is None else wait
        self.token = secrets.token_hex(8)
        self.held = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def holder(self) -> dict:
        st = self.s.settings
        return {"token": self.token, "who": operator(), "from": os.uname().nodename, "pid": os.getpid(),
                "stage": st.stage, "task": self.task, "started": record_cmd.utc_now(), "message": self.message}

    def __enter__(self) -> "DeployLock":
        s = self.s
        if s.dry:
            state = read_state(s)
            ui.say("[dry] would take the deploy lock" + (f" (it is {lock_cmd.describe(state)})" if state.held else " (it is free)"))
            return self
        deadline = time.monotonic() + self.wait
        announced = False
        while True:
            out = s.run(lock_cmd.acquire(s.settings.lock_dir, self.holder()), mutating=True).stdout.strip()
            if out == lock_cmd.ACQUIRED:
                self.held = True
                self._start_heartbeat()
                return self
            state = read_state(s)
            if not state.held:
                continue          # released between our mkdir and our read: try again at once
            if time.monotonic() >= deadline:
                raise self._refusal(state)
            if not announced:
                ui.say(f"      waiting up to {self.wait:g} s for the deploy lock: {lock_cmd.describe(state)}")
                announced = True
            time.sleep(min(5.0, max(0.5, deadline - time.monotonic())))

    def _refusal(self, state: lock_cmd.LockState) -> DeployError:
        st = self.s.settings
        stale = state.is_stale(st.lock_stale_after)
        if stale:
            nxt = (f"the holder looks gone (no heartbeat for {state.heartbeat_age} s > LOCK_STALE_AFTER {st.lock_stale_after:g} s): "
                   f"check with fab -H {self.s.host} status, then take it over with fab -H {self.s.host} unlock --force")
        else:
            nxt = (f"wait for that deploy to finish (fab -H {self.s.host} lock shows it), or re-run with --lock-wait SECONDS")
        return DeployError(f"another deploy holds the lock: {lock_cmd.describe(state)}",
                           state="nothing was changed by this run", next_step=nxt, code=ExitCode.LOCKED,
                           command=lock_cmd.status(st.lock_dir))

    def _start_heartbeat(self) -> None:
        s = self.s

        def beat():
            while not self._stop.wait(s.settings.lock_heartbeat):
                if s.dead or not s.cxn.is_connected:
                    continue      # only the main thread reconnects; a missed beat is harmless
                try:
                    s.run(lock_cmd.heartbeat(s.settings.lock_dir, self.token), check=False, timeout=30, quiet=True)
                except Exception:        # a lost connection ends the heartbeat; the lock then goes stale
                    return

        self._thread = threading.Thread(target=beat, name="deploy-lock-heartbeat", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if not self.held:
            return
        try:
            self.s.run(lock_cmd.release(self.s.settings.lock_dir, self.token), timeout=30)
            self.held = False
        except (CommandFailed, DeployError) as exc:
            ui.warn(f"could not release the deploy lock ({exc}); it will go stale after "
                    f"{self.s.settings.lock_stale_after:g} s and can then be taken over with fab unlock --force")

    def __exit__(self, *exc) -> None:
        self.release()


@operator_task()
def lock(s: Session):
    """Show the deploy lock: free, or who holds it, since when, and how fresh its heartbeat is."""
    state = read_state(s)
    if not state.held:
        ui.say(f"deploy lock: free ({s.settings.lock_dir})")
        return
    stale = state.is_stale(s.settings.lock_stale_after)
    ui.say(f"deploy lock: {lock_cmd.describe(state)}")
    ui.say(f"  {'STALE' if stale else 'live'}: LOCK_STALE_AFTER is {s.settings.lock_stale_after:g} s"
           + (f"; take it over with fab -H {s.host} unlock --force" if stale else ""))


@operator_task(help={"force": "take over a lock whose holder is provably gone (heartbeat older than LOCK_STALE_AFTER)"})
def unlock(s: Session, force=False):
    """Take over a stale deploy lock (with --force); a live lock is never broken. The takeover is recorded."""
    st = s.settings
    state = read_state(s)
    if not state.held:
        ui.say("deploy lock: free; nothing to do")
        return
    ui.say(f"deploy lock: {lock_cmd.describe(state)}")
    if not state.is_stale(st.lock_stale_after):
        raise DeployError(
            f"the lock is live: its heartbeat is {state.heartbeat_age} s old (LOCK_STALE_AFTER {st.lock_stale_after:g} s)",
            state="lock left as it is", code=ExitCode.LOCKED,
            next_step="a deploy is running: wait for it. If its machine died, wait until the heartbeat is older than LOCK_STALE_AFTER")
    if not force:
        raise DeployError("the lock is stale; taking it over needs --force", state="lock left as it is",
                          code=ExitCode.LOCKED, next_step=f"fab -H {s.host} unlock --force")
    token = state.holder.get("token", "")
    stale_dir = f"{st.record_path}/lock.stale-{record_cmd.new_release_id()}"
    try:
        s.run(lock_cmd.take_over(st.lock_dir, token, stale_dir), mutating=True)
    except CommandFailed as failed:
        raise DeployError.from_command(failed, "the lock changed while we looked at it; not taken over",
                                       code=ExitCode.LOCKED, state="lock left as it is",
                                       next_step=f"fab -H {s.host} lock") from None
    rid = record_cmd.new_release_id()
    text = record_cmd.line(rid, "lock_takeover", who=operator(), previous_holder={k: v for k, v in state.holder.items() if k != "token"},
                           heartbeat_age=state.heartbeat_age, kept_at=stale_dir)
    s.run(record_cmd.append(st.releases_file, s.redactor(text)), mutating=True)
    ui.say(f"stale lock taken over and moved to {stale_dir}; the takeover is recorded in {st.releases_file}")
