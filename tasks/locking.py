"""The deploy lock on the host (``<APP_DIR>/.deploy/lock``): acquire, heartbeat, release. The
``lock`` and ``unlock`` tasks (show it, take over a stale one): tasks/locktasks.py."""
from __future__ import annotations

import math
import os
import secrets
import threading
import time

from commands import lock as lock_cmd
from commands import record as record_cmd
from commands.shell import q
from tasks import interrupts, messages, ui
from tasks.errors import SETUP, CommandFailed, DeployError, ExitCode
from tasks.messages import operator
from tasks.session import Session

BEAT_TIMEOUT = 15           # one heartbeat command; a hung beat is a failed beat, the next one tries again
QUICK_RETRIES = 3           # tries (0.2 s apart) when the lock was freed or busy at the moment we looked


def read_state(s: Session) -> lock_cmd.LockState:
    return lock_cmd.parse_status(s.run(lock_cmd.status(s.settings.lock_dir)).stdout, s.redactor)


def lock_wait_seconds(value: float) -> float:
    """--lock-wait / LOCK_WAIT: a finite number of seconds (nan or inf would wait forever)."""
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise DeployError(f"--lock-wait must be a finite number of seconds (0 or more), got {value!r}",
                          state="nothing was changed: the lock was not requested", code=ExitCode.CONFIG, kind=SETUP,
                          next_step="re-run with --lock-wait SECONDS (0 refuses at once when another deploy holds the lock)")
    return float(value)


class DeployLock:
    """Context manager: acquired on enter (or DeployError LOCKED), released on every exit path.

    A daemon thread proves ownership every LOCK_HEARTBEAT seconds: the heartbeat command touches
    the heartbeat file only if the holder file still holds this run's token. A beat that could not
    run (dropped connection, timeout) is counted and the next one tries again, reconnecting if
    needed. The flow asks :meth:`ensure_held` at every step boundary: the lock is then ``held``,
    ``lost`` (gone, or another token) or unverified for half of LOCK_STALE_AFTER, which is when
    another operator could soon take it over.
    """

    def __init__(self, s: Session, task: str, message: str = "", wait: float | None = None):
        self.s = s
        self.task = task
        self.message = message
        self.wait = lock_wait_seconds(s.settings.lock_wait if wait is None else wait)
        self.token = secrets.token_hex(8)
        self.held = False           # taken by this run and not released
        self.lost = ""              # why the lock is no longer this run's (final)
        self.last_proof = 0.0       # monotonic time of the last proof of ownership (acquire or beat)
        self.failed_beats = 0       # beats in a row that could not run
        self.last_failure = ""
        self._state = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def holder(self) -> dict:
        st = self.s.settings
        return {"token": self.token, "who": operator(), "from": os.uname().nodename, "pid": os.getpid(),
                "stage": st.stage, "task": self.task, "started": record_cmd.utc_now(),
                # redacted like the record: the holder file is on the host, readable by the next operator
                "message": self.s.redactor.obj(self.message),
                # the holder's own promise: whoever judges staleness uses these, not their own settings
                "lock_heartbeat": st.lock_heartbeat, "lock_stale_after": st.lock_stale_after}

    # -- acquire ------------------------------------------------------------------------------------
    def __enter__(self) -> "DeployLock":
        s = self.s
        if s.dry:
            state = read_state(s)
            ui.say("[dry] would take the deploy lock" + (f" (it is {lock_cmd.describe(state)})" if state.held else " (it is free)"))
            return self
        try:
            self._acquire()
        except BaseException:
            # A signal between taking the lock and returning (the heartbeat thread's start) must
            # not leave it held: `with` calls __exit__ only once __enter__ has returned.
            with interrupts.ignored():
                self.release()
            raise
        return self

    def _acquire(self) -> None:
        """Try until LOCK_WAIT has passed; every branch sleeps between tries and meets the deadline."""
        s = self.s
        deadline = time.monotonic() + self.wait
        announced = False
        attempt = 0
        while True:
            attempt += 1
            command = lock_cmd.acquire(s.settings.lock_dir, self.holder())
            answer = lock_cmd.parse_acquire(s.run(command, mutating=True).stdout)
            if answer.word == lock_cmd.ACQUIRED:
                self._taken()
                return
            if answer.word == lock_cmd.ERROR:
                raise self._cannot_create(answer)      # waiting will not make the directory writable
            state = read_state(s) if answer.word == lock_cmd.HELD else None
            quick = state is None or not state.held             # busy guard, or freed since our mkdir
            left = deadline - time.monotonic()
            if left <= 0 and not (quick and attempt < QUICK_RETRIES):
                raise self._gave_up(state)
            if not announced and state is not None and state.held:
                ui.say(f"      waiting up to {self.wait:g} s for the deploy lock: {lock_cmd.describe(state)}")
                announced = True
            time.sleep(0.2 if quick else min(5.0, max(0.5, left)))

    def _taken(self) -> None:
        self.held = True
        self.last_proof = time.monotonic()
        if self.s.executor.background:     # fab plan: no thread; the beats at the step boundaries are its record
            self._start_heartbeat()

    def _refusal(self, state: lock_cmd.LockState) -> DeployError:
        st = self.s.settings
        stale_after = state.stale_after(st.lock_stale_after)
        if state.holder.get("task") == "maintenance":
            nxt = (f"an operator locked it for maintenance (see the message); when the work is done they release it "
                   f"with {messages.fab(self.s.host, 'lock --release')}")
        elif state.is_stale(st.lock_stale_after):
            nxt = (f"the holder looks gone (no sign of life for {state.age} s > its LOCK_STALE_AFTER {stale_after:g} s): "
                   f"check with {messages.status(self.s.host)}, then take it over with {messages.unlock_force(self.s.host)}")
        else:
            nxt = (f"wait for that deploy to finish ({messages.lock(self.s.host)} shows it), or re-run with --lock-wait SECONDS")
        return DeployError(f"another deploy holds the lock: {lock_cmd.describe(state)}",
                           state="nothing was changed by this run", next_step=nxt, code=ExitCode.LOCKED,
                           command=lock_cmd.status(st.lock_dir))

    def _gave_up(self, state: lock_cmd.LockState | None) -> DeployError:
        if state is not None and state.held:
            return self._refusal(state)
        st = self.s.settings
        what = (f"the deploy lock stayed busy: its guard (flock on {st.record_path}) was held for more than "
                f"{lock_cmd.GUARD_WAIT} s at each try" if state is None else
                "the deploy lock kept changing while this run tried to take it (held at each try, free when looked at)")
        return DeployError(what, command=lock_cmd.status(st.lock_dir), code=ExitCode.LOCKED,
                           state="nothing was changed by this run",
                           next_step=(f"{messages.lock(self.s.host)}; if this repeats, look on the host for a stuck "
                                      f"process: fuser -v {q(st.record_path)}"))

    def _cannot_create(self, answer: lock_cmd.AcquireAnswer) -> DeployError:
        st = self.s.settings
        user = answer.user or "the SSH user"
        owner = f" (owned by {answer.owner})" if answer.owner else ""
        kind = "infrastructure"
        if "Permission denied" in answer.reason or answer.reason.startswith("cannot read"):
            kind = SETUP                # the host was set up for another user: nothing is down
            what = f"cannot create the deploy lock: {st.record_path} is not writable by the SSH user {user}{owner}"
            nxt = (f"on the host, give {user} the record directory: sudo chown -R {user} {q(st.record_path)} "
                   f"(or point RECORD_DIR at a directory {user} can write), then re-run")
        else:
            what = f"cannot create the deploy lock {st.lock_dir} as the SSH user {user}{owner}"
            nxt = f"fix the cause shown above on the host (disk full? read-only file system?), then re-run; {messages.lock(self.s.host)} shows the lock"
        # The command shown is the step that failed inside the acquire script, paste-able as the SSH user.
        return DeployError(what, command=f"mkdir -- {q(st.lock_dir)}", output=answer.reason, code=ExitCode.STEP_FAILED, kind=kind,
                           state="nothing was changed by this run (the lock was not taken)", next_step=nxt)

    # -- heartbeat: every beat proves ownership ------------------------------------------------------
    def _start_heartbeat(self) -> None:
        def beat_forever():
            while not self._stop.wait(self.s.settings.lock_heartbeat):
                if self.lost:
                    return          # final: the lock is someone else's now, never touch it again
                self.beat()

        self._thread = threading.Thread(target=beat_forever, name="deploy-lock-heartbeat", daemon=True)
        self._thread.start()

    def beat(self) -> None:
        """One proof of ownership. Never raises: a beat that cannot run is counted, and the flow
        decides (ensure_held) when too long without proof is too long."""
        if not self.held or self.lost:
            return
        s = self.s
        command = lock_cmd.heartbeat(s.settings.lock_dir, self.token)
        try:
            s.ensure_connected(command)          # a dropped connection is re-opened, one thread at a time
            r = s.run(command, check=False, timeout=BEAT_TIMEOUT, quiet=True)
        except Exception as exc:                 # lost connection, timeout, ...: try again next beat
            self._failed(f"{exc.__class__.__name__}: {exc}")
            return
        if self._stop.is_set():
            return                               # released meanwhile: the answer is about a lock we gave back
        if r.exited == 0:
            self._proved()
        elif r.exited == lock_cmd.NOT_OURS:
            self._lose()
        else:
            self._failed(f"the heartbeat command exited with code {r.exited}: {(r.stderr or r.stdout).strip()[-200:]}")

    def _proved(self) -> None:
        with self._state:
            failures, self.failed_beats = self.failed_beats, 0
            self.last_proof = time.monotonic()
        if failures:
            ui.warn(f"deploy lock heartbeat resumed after {failures} failed beat(s)")

    def _failed(self, why: str) -> None:
        with self._state:
            self.failed_beats += 1
            self.last_failure = why
            first = self.failed_beats == 1
        if first:
            ui.warn(f"deploy lock heartbeat failed ({why}); retrying every {self.s.settings.lock_heartbeat:g} s")

    def _lose(self) -> None:
        try:
            state = read_state(self.s)
            why = (f"it now belongs to someone else: {lock_cmd.describe(state)}" if state.held else
                   "its directory is gone (moved aside or removed by someone else)")
        except Exception:
            why = "its directory is gone or holds another token"
        with self._state:
            self.lost = why
        ui.warn(f"this run lost the deploy lock: {why}")

    def silent_for(self) -> float:
        """Seconds since the last proof of ownership."""
        with self._state:
            return time.monotonic() - self.last_proof

    def ensure_held(self, before: str) -> None:
        """At a step boundary: prove ownership now, and refuse to go on (DeployError LOCKED) if the
        lock was lost or has gone unproven for half of LOCK_STALE_AFTER."""
        if not self.held and not self.lost:
            return                                # dry run: nothing was taken
        self.beat()
        if self.lost:
            raise self._stop_error(before, f"this run lost the deploy lock: {self.lost}")
        limit = self.s.settings.lock_stale_after / 2
        silent = self.silent_for()
        if silent >= limit:
            raise self._stop_error(before, (
                f"this run could not prove for {silent:.0f} s that it still holds the deploy lock (limit: half of "
                f"LOCK_STALE_AFTER {self.s.settings.lock_stale_after:g} s; last failure: {self.last_failure or 'none'}): "
                f"another operator may soon take it over"))

    def _stop_error(self, before: str, what: str) -> DeployError:
        s = self.s
        return DeployError(
            f"{what}; stopped before {before}", command=lock_cmd.status(s.settings.lock_dir), code=ExitCode.LOCKED,
            step=f"lock (before {before})",
            state=f"{s.describe_state()}; this run did not touch the services after that",
            next_step=(f"see who holds the lock now: {messages.lock(s.host)}. When no other run is active, check "
                       f"{messages.status(s.host)} and re-run"))

    # -- release ------------------------------------------------------------------------------------
    def release(self) -> None:
        self._stop.set()
        self.s.recorder.flush()         # the record's last lines first: the next run reads them
        if not self.held:
            return
        if self.lost:
            self.held = False           # someone else's now: never remove it
            return
        try:
            out = self.s.run(lock_cmd.release(self.s.settings.lock_dir, self.token), timeout=30).stdout.strip()
            self.held = False
        except (CommandFailed, DeployError) as exc:
            ui.warn(f"could not release the deploy lock ({exc}); it will go stale after "
                    f"{self.s.settings.lock_stale_after:g} s and can then be taken over with fab unlock --force")
            return
        if out == lock_cmd.NOT_OURS_WORD:
            ui.warn("the deploy lock was no longer this run's at release, so it was left as it is (fab lock shows it)")

    def __exit__(self, *exc) -> None:
        # Also on Ctrl-C/SIGTERM/SIGHUP: a second signal must not cut the release short.
        with interrupts.ignored():
            self.release()
