"""Expected failures and their exit codes.

Every expected failure becomes a :class:`DeployError` and is printed as one error block: what
failed, the exact command, the last lines of its output, the state the host is in now, the next
command to run and the escalation contact. Nothing expected ends in a traceback.

``kind`` says who is escalated to: ``database``, ``infrastructure`` and ``security`` are failures
on a service and name a team; ``setup`` (configuration, first contact with a host: unknown host
key, name resolution, authentication, connection refused) pages nobody, because the fix is in
the operator's own hands and the block's Next line says what it is. A CHANGED host key stays
``security``.
"""
from __future__ import annotations

from enum import IntEnum
from typing import Sequence


class ExitCode(IntEnum):
    OK = 0
    BUG = 1                # an unexpected error: a traceback is printed (please report it)
    CONFIG = 2             # bad configuration or arguments; nothing was run on any host
    STEP_FAILED = 3        # a remote step failed; the block says what state the host is in
    UNHEALTHY = 4          # health or smoke checks failed and nothing was rolled back
    CONNECTION = 5         # SSH: cannot connect, authentication, unknown or changed host key
    LOCKED = 6             # another deploy holds the lock
    ROLLED_BACK = 7        # the deploy failed and the previous images were put back (serving old)
    ROLLBACK_FAILED = 8    # a rollback could not restore service, or had no valid target
    CHECKLIST = 9          # a blocking pre-deployment checklist item failed; nothing was changed
    HANGUP = 129           # SIGHUP (terminal closed); cleaned up like Ctrl-C
    INTERRUPTED = 130      # Ctrl-C; the lock was released and the record marked aborted
    TERMINATED = 143       # SIGTERM (e.g. a cancelled CI job); cleaned up like Ctrl-C


EXIT_CODE_HELP = {
    ExitCode.OK: "success",
    ExitCode.BUG: "unexpected error (traceback printed): a bug in the tool",
    ExitCode.CONFIG: "configuration or usage error; nothing ran on any host",
    ExitCode.STEP_FAILED: "a remote step failed; the error block says what state the host is in",
    ExitCode.UNHEALTHY: "health or smoke checks failed and nothing was rolled back",
    ExitCode.CONNECTION: "SSH connection, authentication or host key problem",
    ExitCode.LOCKED: "another deploy holds the lock, or this run lost its lock and stopped",
    ExitCode.ROLLED_BACK: "deploy failed; the previous images were restored and are serving",
    ExitCode.ROLLBACK_FAILED: "rollback had no valid target or could not restore a healthy service",
    ExitCode.CHECKLIST: "a blocking checklist item failed; nothing was changed",
    ExitCode.HANGUP: "hung up (SIGHUP): cleaned up like Ctrl-C",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
    ExitCode.TERMINATED: "terminated (SIGTERM): cleaned up like Ctrl-C",
}


SETUP = "setup"      # DeployError.kind of configuration and first-contact errors: nobody is paged


class CommandFailed(Exception):
    """A remote command exited non-zero (or timed out). Carries what the error block needs."""

    def __init__(self, command: str, exit_code: int | None, stdout: str = "", stderr: str = "",
                 timed_out: bool = False, timeout: float | None = None):
        self.command = command
        self.exit_code = exit_code
        self.stdout = stdout or ""
        self.stderr = stderr or ""
        self.timed_out = timed_out
        self.timeout = timeout
        super().__init__(self.summary)

    @property
    def summary(self) -> str:
        if self.timed_out:
            return f"timed out after {self.timeout:g} s (the remote command was killed)"
        return f"exited with code {self.exit_code}"

    @property
    def output(self) -> str:
        return (self.stdout + ("\n" if self.stdout and self.stderr else "") + self.stderr).strip()


class DeployError(Exception):
    """An expected failure, rendered as the error block by the task wrapper."""

    def __init__(self, what: str, *, command: str | None = None, output: str | Sequence[str] | None = None,
                 state: str | None = None, next_step: str | None = None, kind: str = "infrastructure",
                 code: ExitCode = ExitCode.STEP_FAILED, step: str | None = None, details: Sequence[str] = ()):
        self.what = what
        self.command = command
        self.output = output
        self.state = state
        self.next_step = next_step
        self.kind = kind
        self.code = code
        self.step = step
        self.details = list(details)
        self.reconnected = False    # a lost connection: the step itself reconnected and stopped this run's commands
        super().__init__(what)

    @classmethod
    def from_command(cls, failed: CommandFailed, what: str, **kw) -> "DeployError":
        kw.setdefault("command", failed.command)
        kw.setdefault("output", failed.output)
        return cls(f"{what}: {failed.summary}", **kw)

    def to_dict(self) -> dict:
        return {"what": self.what, "step": self.step, "command": self.command, "state": self.state,
                "next": self.next_step, "kind": self.kind, "exit_code": int(self.code)}
