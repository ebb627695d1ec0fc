"""The deploy lock: an atomic ``mkdir`` on the host plus a holder file and a heartbeat.

Beats the anchors' locks: atomic (Deployer's test-then-write is not), holder details (who, from
where, pid, stage, started, message), a heartbeat so a dead holder is *provably* gone (Kamal's
lock has no staleness at all), and release only by the holder that took it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from commands.shell import check_path, q

ACQUIRED = "acquired"
HELD = "held"


def acquire(lock_dir: str, holder: dict) -> str:
    """Prints ``acquired`` or ``held``; exit 0 either way, anything else is a real error."""
    check_path(lock_dir, "lock dir")
    parent = lock_dir.rsplit("/", 1)[0]
    body = json.dumps(holder, sort_keys=True)
    return (
        f"mkdir -p {q(parent)} && "
        f"if mkdir {q(lock_dir)} 2>/dev/null; then "
        f"printf '%s\\n' {q(body)} > {q(lock_dir + '/holder.json')} && touch {q(lock_dir + '/heartbeat')} && echo {ACQUIRED}; "
        f"else echo {HELD}; fi"
    )


def status(lock_dir: str) -> str:
    """Holder JSON, then ``clock <now> <heartbeat mtime>`` from the host's own clock; ``free`` if none."""
    check_path(lock_dir, "lock dir")
    return (
        f"if [ -d {q(lock_dir)} ]; then cat {q(lock_dir + '/holder.json')} 2>/dev/null; echo; "
        f"echo clock $(date +%s) $(stat -c %Y {q(lock_dir + '/heartbeat')} 2>/dev/null || echo 0); "
        f"else echo free; fi"
    )


def _owned(lock_dir: str, token: str) -> str:
    return f"grep -qF {q(chr(34) + 'token' + chr(34) + ': ' + chr(34) + token + chr(34))} {q(lock_dir + '/holder.json')}"


def heartbeat(lock_dir: str, token: str) -> str:
    return f"{_owned(lock_dir, token)} && touch {q(lock_dir + '/heartbeat')}"


def release(lock_dir: str, token: str) -> str:
    """Remove the lock only if this run holds it (a failed second deploy must never free the first's:
    the race that made Deployer revert its auto-unlock, deployer#958)."""
    return f"if [ -d {q(lock_dir)} ] && {_owned(lock_dir, token)}; then rm -rf {q(lock_dir)}; fi"


def take_over(lock_dir: str, expected_token: str, stale_dir: str) -> str:
    """Move a stale lock aside (kept for the post-mortem) if it is still the one that was judged stale."""
    check_path(stale_dir, "stale lock dir")
    return f"{_owned(lock_dir, expected_token)} && mv {q(lock_dir)} {q(stale_dir)}"


@dataclass(frozen=True)
class LockState:
    held: bool
    holder: dict
    now: int = 0
    heartbeat: int = 0

    @property
    def heartbeat_age(self) -> int:
        return max(0, self.now - self.heartbeat) if self.heartbeat else -1

    def is_stale(self, stale_after: float) -> bool:
        return self.held and (self.heartbeat == 0 or self.heartbeat_age > stale_after)


def parse_status(stdout: str) -> LockState:
    text = stdout.strip()
    if text == "free" or not text:
        return LockState(False, {})
    holder: dict = {}
    now = beat = 0
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                holder = json.loads(line)
            except json.JSONDecodeError:
                holder = {"unreadable": line[:200]}
        elif line.startswith("clock "):
            parts = line.split()
            now, beat = int(parts[1]), int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 0
    return LockState(True, holder, now, beat)


def describe(state: LockState) -> str:
    h = state.holder
    age = state.heartbeat_age
    beat = f"{age} s ago" if age >= 0 else "never"
    return (f"held by {h.get('who', '?')} from {h.get('from', '?')} (pid {h.get('pid', '?')}), "
            f"stage {h.get('stage', '?')}, {h.get('task', '?')} started {h.get('started', '?')}, "
            f"last heartbeat {beat}" + (f"; message: {h['message']}" if h.get("message") else ""))
