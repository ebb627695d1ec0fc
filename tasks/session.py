"""One SSH session per (task, host): running commands, timing, dry-run and the redaction hook (the
redactor every printed and recorded text goes through). Commands run through an executor
(tasks/executor.py): :class:`SSHExecutor` over SSH, or the plan's recording executor
(tasks/plan.py); the session's own ``_exec`` and ``kill_running`` are the only callers of
``Connection.run``. Elsewhere: host keys and connecting (tasks/hostkeys.py, tasks/ssh.py), worker
threads (tasks/worker.py), the secrets (tasks/hostsecrets.py), the record (tasks/recorder.py).

Fabric facts this module exists for (see ../shared/research/fabric-conventions.md):
- ``warn`` is always passed explicitly, so a global ``fab -w`` never turns a failed migration
  into a warning; output is always captured (``hide``) and shown redacted.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, TypeVar

from fabric import Connection
from invoke.exceptions import CommandTimedOut

from commands import compose as compose_cmd
from commands import files
from commands.secrets import Redactor
from commands.shell import STOP_WAIT, stop_tagged, whole_seconds
from commands.timing import Timer
from config import Settings
from tasks import messages, ui, web
from tasks.errors import SETUP, CommandFailed, DeployError, ExitCode
from tasks.executor import Executor, Result, SSHExecutor
from tasks.recorder import NullRecorder
from tasks.runstate import RunState
from tasks.ssh import open_connection, tune
from tasks.worker import Background, Ready, off_main_thread, read_slot, run_all, stop, stopped_here

T = TypeVar("T")
KILL_FLUSH_WAIT = 5     # seconds kill_running waits for queued record lines (a hung connection: no longer)


@dataclass
class Session:
    settings: Settings
    host: str
    cxn: Connection | None
    dry: bool = False
    echo: bool = False
    redactor: Redactor | None = None                 # default: one with the stage's SECRET_KEY_PATTERN
    timer: Timer = field(default_factory=Timer)
    state: RunState = field(default_factory=RunState)   # what this run knows about the host
    _compose: compose_cmd.Compose | None = None
    compose_version: str = ""
    recorder: NullRecorder = field(default_factory=NullRecorder)
    lock: object = None                                # the run's DeployLock: asked before the services are touched
    connect_seconds: float = 0.0
    ctx: object = None                                # the Fabric context, to open sessions to other stages
    run_tag: str = field(default_factory=lambda: "ai-doc-qa-" + os.urandom(4).hex())
    dead: bool = False                                 # a reconnect failed: the host is unreachable
    inflight: tuple | None = None                      # (job, command, timeout, must finish) of the main thread
    interrupted: list = field(default_factory=list)    # such tuples whose wait Ctrl-C interrupted
    first_contact: bool = True                         # no command has come back from the host yet
    _conn_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _compose_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    executor: Executor = field(default_factory=SSHExecutor)   # how commands run: over SSH, or recorded (fab plan)
    where: list = field(default_factory=list)          # the (step, sub) of the timed blocks open now, outermost first

    def __post_init__(self):
        if self.redactor is None:
            self.redactor = Redactor(self.settings.secret_key_pattern)
        # Secrets held in the config itself (a token in WEBHOOK_URL, PGPASSWORD= in DB_READY_COMMAND).
        self.redactor.add_many(self.settings.secrets)

    # -- running commands -----------------------------------------------------------------------
    def run(self, command: str, *, timeout: float | None = None, mutating: bool = False,
            check: bool = True, ok_codes: tuple[int, ...] = (0,), quiet: bool = False,
            interruptible: bool = False, bookkeeping: bool = False) -> Result:
        """Run one command on the host (through the executor); raise CommandFailed unless its exit
        code is in ok_codes.

        ``mutating`` commands are printed, not run, under ``fab --dry``: reads still run, so a dry
        run shows real state. After Ctrl-C a mutating command is allowed to finish (killing
        ``compose up`` half-way can leave no container serving) unless it is ``interruptible``
        (``compose pull`` changes nothing that runs). A ``bookkeeping`` write (the release record,
        the lock) changes nothing that runs either: what was observed stays valid. A mutating, not
        interruptible command with a timeout of its own (compose up, a migration) keeps its output
        on the host until it ends: a lost connection cannot kill it at its next progress line.
        """
        if stopped_here():
            raise CommandFailed(command, -1, "", "not sent: the run stopped the reads it had begun early")
        keep_output = bool(timeout) and mutating and not interruptible
        timeout = timeout or self.settings.command_timeout
        if (self.echo and not quiet) or (self.dry and mutating):
            ui.say(("[dry] would run: " if self.dry and mutating else "$ ") + command)
        if self.dry and mutating:
            return Result(command, 0, "", "", 0.0)
        if mutating or self.settings.releases_file in command:
            self.recorder.flush()            # what changes the host, or reads the record, comes after the lines queued before it
        if mutating and not bookkeeping:
            self.state.changed()             # what runs may change: observe again, resolve and inspect again
        result = self.executor.run(self, command, timeout=timeout, mutating=mutating, interruptible=interruptible,
                                   keep_output=keep_output)
        if check and result.exited not in ok_codes:
            raise CommandFailed(command, result.exited, result.stdout, result.stderr)
        return result

    def concurrently(self, *fns: Callable[[], T]) -> list[T]:
        """Independent reads at once, each on its own channel of the one SSH connection (paramiko
        multiplexes channels): their results in order. What they share is safe from any thread:
        ``run`` (the executor tracks only the main thread's command for Ctrl-C), the redactor
        (copy-on-write), the state caches (one assignment each), ``ui.say`` (whole lines, the
        fleet's host prefix carried over). Record writes and timed blocks stay with the caller.
        Without a background executor (``fab plan``) they run one after another, in order; so do
        reads started inside a concurrent read (one level: the order within a group stays known)."""
        if len(fns) < 2 or not self.executor.background or read_slot() is not None:
            return [fn() for fn in fns]      # a read inside a concurrent read: in order, in its thread
        context = ui.thread_context()
        return run_all(fns, setup=lambda: ui.adopt(context))

    def prefetch(self, key: str, fn: Callable[[], T], unused: Callable[[T], object] | None = None) -> None:
        """Start a read a later step needs now, in the background, on its own channel (the checklist's
        database revision). :meth:`fetched` gives its result; ``unused`` is given it if the run ends without
        asking. Without a background executor (``fab plan``), or inside a concurrent read, it runs here, in order."""
        if not self.executor.background or read_slot() is not None:
            job = Ready(fn)
        else:
            context = ui.thread_context()
            job = Background(fn, setup=lambda: ui.adopt(context))
        job.unused, self.state.prefetched[key] = unused, job

    def fetched(self, key: str, fn: Callable[[], T]) -> T:
        """The result of the read started by :meth:`prefetch` under ``key``, or ``fn()`` if none
        was started or it failed (read again, here, so its error is reported where it belongs)."""
        job = self.state.prefetched.pop(key, None)
        if job is not None:
            try:
                return job.result()
            except (CommandFailed, DeployError):
                pass
        return fn()

    def settle_prefetches(self) -> None:
        """Before the run ends (its lock released): nothing it began early goes on on the host (a
        pull begun during a checklist that then blocked). Those still running are stopped."""
        pending = [job for job in self.state.prefetched.values() if not job.done.is_set()]
        if pending:
            self.kill_running()
            for job in pending:
                job.done.wait(20)
        for job in [j for j in self.state.prefetched.values() if j.unused and j.done.is_set()]:   # never asked for
            with contextlib.suppress(Exception):
                job.unused(job.result())
        self.state.prefetched.clear()

    def request(self, method: str, url: str, *, deadline: float, data: bytes | None = None, headers: dict | None = None) -> web.HttpAnswer:
        """An HTTP request from the operator's machine (monitoring, operator smoke, webhook)."""
        return self.executor.request(self, method, url, deadline=deadline, data=data, headers=headers)

    def open_session(self, settings: Settings, host: str) -> "Session":
        """A second session from inside a task (the production checklist asking the test stage)."""
        return self.executor.open_session(self, settings, host)

    def _exec(self, wrapped: str, timeout: float):
        """The command on the host (in the SSH I/O thread). Whatever comes back, an exit status or
        invoke's own timeout, means the host opened a channel: no longer first contact."""
        try:
            r = self.cxn.run(wrapped, warn=True, hide=True, pty=False, in_stream=False, echo=False, timeout=timeout + 15)
        except CommandTimedOut:
            self.first_contact = False
            raise
        self.first_contact = False
        return r

    def _exec_streaming(self, wrapped: str, sink):
        """Like :meth:`_exec`, the output also written to ``sink`` as it comes (tasks/stream.py)."""
        r = self.cxn.run(wrapped, warn=True, hide=False, pty=False, in_stream=False, echo=False,
                         out_stream=sink, err_stream=sink)
        self.first_contact = False
        return r

    def _lost(self, command: str | None, why: str, started: bool = True) -> DeployError:
        """A connection that failed while a command ran, or before it could start. One that fails
        before any command came back is first contact with the host: a setup error (pages nobody)."""
        state = ("unknown: the last command may or may not have finished on the host" if started else
                 "this command did not start: the host opened no SSH channel for it")
        return DeployError(
            f"lost the SSH connection to {self.host} ({why})",
            command=command, code=ExitCode.CONNECTION, kind=SETUP if self.first_contact and not started else "infrastructure",
            state=self.describe_state(state),
            next_step=f"check the network, then {messages.status(self.host)}. {messages.lock_goes_stale(self.host, self.settings.lock_stale_after).capitalize()}")

    def ensure_connected(self, command: str | None = None) -> None:
        """Reconnect a dropped connection between commands (same hardened client: host keys are
        checked again). Once a reconnect has failed, fail fast instead of waiting for more timeouts.

        Safe from any thread (the lock's heartbeat reconnects while the main thread waits): one
        thread reconnects under ``_conn_lock``, the other then finds the connection open. Only the
        main thread's failure marks the host unreachable; a background thread tries again later."""
        if self.cxn is None or self.cxn.is_connected:
            return
        if self.dead:
            raise self._lost(command, "reconnecting failed earlier in this run")
        with self._conn_lock:
            if self.cxn.is_connected:
                return
            try:
                off_main_thread(lambda: open_connection(self.cxn, self.settings))
            except Exception as exc:
                if threading.current_thread() is threading.main_thread():
                    self.dead = True
                raise self._lost(command, f"reconnecting failed: {exc.__class__.__name__}: {exc}") from None
            tune(self.cxn, self.settings)
            ui.warn(f"the SSH connection to {self.host} dropped and was re-established")

    def settle_after_interrupt(self) -> None:
        """After Ctrl-C: let a command that changes the host finish, so nothing is left half-done."""
        for job, command, timeout, must_finish in self.interrupted:
            if must_finish and not job.done.is_set():
                ui.say(f"      Ctrl-C: letting the running command finish first (up to {timeout:g} s), "
                       f"so nothing is left half-done: {command}")
                job.done.wait(timeout + 20)
        self.interrupted.clear()

    def kill_running(self, let_finish: bool = False) -> bool:
        """After Ctrl-C or a lost connection: stop this run's commands still running on the host.
        ``timeout`` relays the TERM to its whole process group (docker compose included); it waits
        until they are gone, and with ``let_finish`` first lets the commands that must finish end
        (commands/shell.py, stop_tagged). Returns False if the host is unreachable."""
        stop([job for job in self.state.prefetched.values() if not job.done.is_set()])   # they send nothing more
        self.recorder.flush(KILL_FLUSH_WAIT)      # a record append in flight is not one to kill
        st, wait = self.settings, 0
        try:
            self.ensure_connected()
            if let_finish:        # as long as a command that changes the host may still run (its remote timeout, then KILL)
                wait = whole_seconds(max(st.command_timeout, st.up_timeout, st.migrate_timeout)) + 5
                ui.say(f"      letting this run's commands that change the host finish first (up to {wait} s), then stopping the rest")
            off_main_thread(lambda: self.cxn.run(stop_tagged(self.run_tag, let_finish=wait), warn=True, hide=True,
                                                 pty=False, in_stream=False, echo=False, timeout=wait + STOP_WAIT + 5))
            return True
        except Exception:
            return False

    def read_file(self, path: str) -> str | None:
        """A text file under the app dir, or None if it does not exist."""
        r = self.run(files.read_file(files.app_file(self.settings.app_dir, path)), check=False)
        if r.exited == files.MISSING:
            return None
        if r.exited != 0:
            raise CommandFailed(r.command, r.exited, r.stdout, r.stderr)
        return r.stdout

    # -- timing ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def timed(self, step: str, sub: str | None = None) -> Iterator[None]:
        start = time.monotonic()
        ok = False
        self.where.append((step, sub))
        try:
            yield
            ok = True
        finally:
            t = self.timer.add(step, sub, time.monotonic() - start, ok)
            self.recorder.step(t.step, t.sub, t.seconds, t.ok)
            self.where.pop()

    # -- compose ------------------------------------------------------------------------------------
    @property
    def compose(self) -> compose_cmd.Compose:
        if self._compose is None:
            with self._compose_lock:    # reads at once (prefetch, concurrently) probe the host once
                return self._probe_compose()
        return self._compose

    @property
    def compose_probed(self) -> bool:
        """Whether the host's Compose is known already (asking :attr:`compose` costs nothing then)."""
        return self._compose is not None

    def _probe_compose(self) -> compose_cmd.Compose:
        if self._compose is None:
            s = self.settings
            command = s.compose_command
            if command == "auto":
                command, self.compose_version = compose_cmd.parse_compose_probe(self.run(compose_cmd.PROBE_COMPOSE).stdout)
                if command is None:
                    raise DeployError(f"neither `docker compose` nor `docker-compose` works on {self.host} for this user",
                                      command=compose_cmd.PROBE_COMPOSE, state=self.describe_state(),
                                      next_step="install Docker Compose on the host, or check that the deploy user may use Docker (docker group)")
            self._compose = compose_cmd.Compose(command, s.app_dir, s.compose_file, s.compose_project)
        return self._compose

    # -- state description for error blocks --------------------------------------------------------
    def describe_state(self, override: str | None = None) -> str:
        return self.state.describe(override)

    def close(self) -> None:
        if self.cxn is not None:
            with contextlib.suppress(Exception):
                self.cxn.close()

