"""The deploy lock: an atomic ``mkdir`` on the host plus a holder file and a heartbeat.

Beats the anchors' locks: atomic (Deployer's test-then-write is not), holder details (who, from
where, pid, stage, started, message), a heartbeat so a dead holder is *provably* gone (Kamal's
lock has no staleness at all), and release only by the holder that took it.

Every operation runs under ``flock`` on the record directory (the lock's parent), so no reader
sees a half-written lock and nothing can beat between the takeover's staleness check and its
``mv``. flock(1) is util-linux, present on every Debian and Ubuntu server; where it is missing the
operations run unguarded (the README says so). Locking the directory itself needs no write
permission and creates no file.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from commands.secrets import excerpt
from commands.shell import check_path, q

ACQUIRED = "acquired"
HELD = "held"
BUSY = "busy"           # the guard stayed taken for GUARD_WAIT s: try again
ERROR = "error"         # the lock cannot be created at all (see AcquireAnswer)
RELEASED = "released"
NOT_OURS_WORD = "not-ours"

NOT_OURS = 3            # heartbeat, take_over: the lock is gone or holds another token
STILL_LIVE = 4          # take_over: the holder beat again since it was judged stale
GUARD_BUSY = 75         # the guard could not be taken within GUARD_WAIT s (EX_TEMPFAIL)
GUARD_WAIT = 5

HOLDER_FILE = "holder.json"
MAX_HOLDER_SECONDS = 7 * 86400      # config's own limit for LOCK_STALE_AFTER and LOCK_HEARTBEAT
HEARTBEAT_FILE = "heartbeat"


def _parent(lock_dir: str) -> str:
    return lock_dir.rsplit("/", 1)[0] or "/"


def _guard(on_busy: str) -> str:
    """Take flock on fd 9 (the record dir), or run ``on_busy``; skipped where flock is missing."""
    return f"if command -v flock >/dev/null 2>&1; then flock -w {GUARD_WAIT} 9 || {on_busy}; fi"


def _guarded(lock_dir: str, body: str, *, absent: str, on_busy: str = f"exit {GUARD_BUSY}") -> str:
    """``body`` in a subshell holding the guard; ``absent`` (which must exit) if there is no lock."""
    return (f"( [ -d {q(lock_dir)} ] || {absent}; exec 9< {q(_parent(lock_dir))}; {_guard(on_busy)}; "
            f"{body} )")


def _owned(lock_dir: str, token: str) -> str:
    """True if the holder file holds this token; with token "", true if it holds none (a
    half-created lock: no holder file, or one cut short before its token)."""
    needle = '"token": "' + token + ('"' if token else "")
    test = f"grep -qF {q(needle)} -- {q(lock_dir + '/' + HOLDER_FILE)} 2>/dev/null"
    return test if token else f"! {test}"


def acquire(lock_dir: str, holder: dict) -> str:
    """Prints ``acquired``, ``held``, ``busy``, or ``error`` followed by ``user``, ``owner`` and
    ``reason`` lines when the lock cannot be created (for instance the record dir is not writable
    by the SSH user). Exit 0 in every case; anything else is a real error."""
    check_path(lock_dir, "lock dir")
    parent = _parent(lock_dir)
    grand = _parent(parent)
    body = json.dumps(holder, sort_keys=True)
    holder_file, beat_file = lock_dir + "/" + HOLDER_FILE, lock_dir + "/" + HEARTBEAT_FILE
    report = (f"lock_error() {{ echo {ERROR}; echo \"user $(id -un)\"; "
              f"echo \"owner $(stat -c %U -- {q(parent)} 2>/dev/null || stat -c %U -- {q(grand)} 2>/dev/null)\"; "
              f"printf 'reason %s\\n' \"$1\"; }}; ")
    take = (f"if err=$(mkdir -- {q(lock_dir)} 2>&1); then "
            f"if printf '%s\\n' {q(body)} > {q(holder_file)} && touch -- {q(beat_file)}; then echo {ACQUIRED}; "
            f"else rm -rf -- {q(lock_dir)}; lock_error {q('could not write ' + holder_file)}; fi; "
            f"elif [ -d {q(lock_dir)} ]; then echo {HELD}; else lock_error \"$err\"; fi")
    return (report +
            f"if ! err=$(mkdir -p -- {q(parent)} 2>&1); then lock_error \"$err\"; "
            f"elif [ ! -r {q(parent)} ]; then lock_error {q('cannot read ' + parent)}; "
            f"else ( {_guard(f'{{ echo {BUSY}; exit 0; }}')}; {take} ) 9< {q(parent)}; fi")


def status(lock_dir: str) -> str:
    """Holder JSON, then ``clock <now> <heartbeat mtime> <lock dir mtime>`` from the host's own
    clock (0 for a missing file); ``free`` if there is no lock."""
    check_path(lock_dir, "lock dir")
    body = (f"if [ -d {q(lock_dir)} ]; then cat -- {q(lock_dir + '/' + HOLDER_FILE)} 2>/dev/null; echo; "
            f"echo clock $(date +%s) $(stat -c %Y -- {q(lock_dir + '/' + HEARTBEAT_FILE)} 2>/dev/null || echo 0) "
            f"$(stat -c %Y -- {q(lock_dir)} 2>/dev/null || echo 0); else echo free; fi")
    # A reader never waits on a stuck guard: it reads unguarded after GUARD_WAIT s.
    return _guarded(lock_dir, body, absent="{ echo free; exit 0; }", on_busy=":")


def heartbeat(lock_dir: str, token: str) -> str:
    """Touch the heartbeat if this run holds the lock. Exit 0: beaten; NOT_OURS: the lock is gone
    or holds another token; anything else: the beat could not run (try again)."""
    check_path(lock_dir, "lock dir")
    body = f"{_owned(lock_dir, token)} || exit {NOT_OURS}; touch -- {q(lock_dir + '/' + HEARTBEAT_FILE)}"
    return _guarded(lock_dir, body, absent=f"exit {NOT_OURS}")


def release(lock_dir: str, token: str) -> str:
    """Remove the lock only if this run holds it (a failed second deploy must never free the first's:
    the race that made Deployer revert its auto-unlock, deployer#958). Prints ``released``,
    ``not-ours`` or ``free``."""
    check_path(lock_dir, "lock dir")
    body = (f"if {_owned(lock_dir, token)}; then rm -rf -- {q(lock_dir)} && echo {RELEASED}; "
            f"else echo {NOT_OURS_WORD}; fi")
    return _guarded(lock_dir, body, absent="{ echo free; exit 0; }")


def take_over(lock_dir: str, expected_token: str, stale_dir: str, stale_after: float) -> str:
    """Move a stale lock aside (kept for the post-mortem), judging again on the host, under the
    guard, that it is still the lock judged stale (same token, or still no holder file: NOT_OURS
    otherwise) and that its heartbeat (or, with none, the lock dir) is older than ``stale_after``
    by the host's clock (STILL_LIVE otherwise)."""
    check_path(lock_dir, "lock dir")
    check_path(stale_dir, "stale lock dir")
    limit = int(math.floor(stale_after))
    beat_file = lock_dir + "/" + HEARTBEAT_FILE
    body = (f"{_owned(lock_dir, expected_token)} || exit {NOT_OURS}; "
            f"t=$(stat -c %Y -- {q(beat_file)} 2>/dev/null || stat -c %Y -- {q(lock_dir)}) || exit 1; "
            f"[ $(( $(date +%s) - t )) -gt {limit} ] || exit {STILL_LIVE}; "
            f"mv -- {q(lock_dir)} {q(stale_dir)}")
    return _guarded(lock_dir, body, absent=f"exit {NOT_OURS}")


@dataclass(frozen=True)
class AcquireAnswer:
    word: str
    user: str = ""
    owner: str = ""
    reason: str = ""


def parse_acquire(stdout: str) -> AcquireAnswer:
    lines = [l.strip() for l in stdout.strip().splitlines() if l.strip()]
    if not lines or lines[0] not in (ACQUIRED, HELD, BUSY, ERROR):
        # Whole, not cut: it is shown through the redactor, which must see a secret whole.
        return AcquireAnswer(ERROR, reason=f"unexpected answer: {stdout.strip()!r}")
    fields = {}
    for line in lines[1:]:
        key, _, value = line.partition(" ")
        fields.setdefault(key, value.strip())
    return AcquireAnswer(lines[0], fields.get("user", ""), fields.get("owner", ""), fields.get("reason", ""))


def holder_seconds(holder: dict, key: str, fallback: float) -> float:
    """The holder's own LOCK_HEARTBEAT / LOCK_STALE_AFTER as stored in its holder file; the local
    value for an old holder file, a half-created lock or a value that is not a positive number."""
    value = holder.get(key)
    # Compared, never converted first: float() of a huge int from a hostile file raises OverflowError.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_HOLDER_SECONDS:
        return fallback
    return float(value)


@dataclass(frozen=True)
class LockState:
    held: bool
    holder: dict
    now: int = 0
    heartbeat: int = 0
    created: int = 0        # mtime of the lock dir: the age of a lock that never beat

    @property
    def heartbeat_age(self) -> int:
        return max(0, self.now - self.heartbeat) if self.heartbeat else -1

    @property
    def age(self) -> int:
        """Seconds since the last sign of life: the heartbeat, else the lock's creation; -1 if unknown."""
        if self.heartbeat:
            return self.heartbeat_age
        return max(0, self.now - self.created) if self.created else -1

    @property
    def half_created(self) -> bool:
        return self.held and not self.holder.get("token")

    def stale_after(self, local: float) -> float:
        """Staleness is judged by the holder's promise, not by whoever looks."""
        return holder_seconds(self.holder, "lock_stale_after", local)

    def is_stale(self, stale_after: float) -> bool:
        """``stale_after`` is the local LOCK_STALE_AFTER, used only when the holder stored none."""
        return self.held and (self.age < 0 or self.age > self.stale_after(stale_after))


_TOKEN = re.compile(r'"token": "([0-9a-f]+)"')
HOLDER_FIELDS = ("token", "who", "from", "pid", "stage", "task", "started", "message",
                 "lock_heartbeat", "lock_stale_after", "unreadable")
FIELD_CHARS = 200
MESSAGE_CHARS = 500
_TOKEN_SHAPE = re.compile(r"^[0-9A-Za-z_-]{1,128}$")
_MAX_NUMBER = 10 ** 12


def bounded_holder(holder: dict, redact=None) -> dict:
    """What the tool shows and records of a holder file read from the host: the known fields only,
    text redacted THEN cut, numbers of a sane size, a token only of a token's shape. A hostile file
    (a 300 kB message) flooded `fab lock`, and copied into the takeover record it made the append
    command longer than the host accepts for one argument."""
    out: dict = {}
    for key in HOLDER_FIELDS:
        v = holder.get(key)
        if key == "token":
            if isinstance(v, str) and _TOKEN_SHAPE.match(v):
                out[key] = v
        elif isinstance(v, str):
            out[key] = excerpt(v, MESSAGE_CHARS if key in ("message", "unreadable") else FIELD_CHARS, redact)
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and -_MAX_NUMBER <= v <= _MAX_NUMBER:
            out[key] = v                     # nan and inf compare False; a huge int is never converted
    return out


def parse_status(stdout: str, redact=None) -> LockState:
    """``redact``: applied to the holder's text before it is cut (see :func:`bounded_holder`)."""
    text = stdout.strip()
    if text == "free" or not text:
        return LockState(False, {})
    holder: dict = {}
    now = beat = created = 0
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                holder = json.loads(line)
            except (ValueError, RecursionError):     # torn, corrupt, or nested too deep to parse
                # Its size only: the raw text could hold a secret, and cutting it before redaction
                # would print a prefix of one (this can reach a lock_takeover record line).
                holder = {"unreadable": f"{len(line)} characters, not JSON"}
                m = _TOKEN.search(line)             # a cut-short file may still name its token
                if m:
                    holder["token"] = m.group(1)
            if not isinstance(holder, dict):
                holder = {"unreadable": f"{len(line)} characters, not a JSON object"}
            holder = bounded_holder(holder, redact)
        elif line.startswith("clock "):
            nums = [int(p) if p.isdigit() else 0 for p in line.split()[1:4]]
            now, beat, created = (nums + [0, 0, 0])[:3]
    return LockState(True, holder, now, beat, created)


def describe(state: LockState) -> str:
    h = state.holder
    if state.half_created:
        age = f"{state.age} s ago" if state.age >= 0 else "at an unknown time"
        return (f"a half-created lock (no holder details: its creator stopped between mkdir and writing "
                f"{HOLDER_FILE}), created {age}")
    age = state.heartbeat_age
    beat = f"{age} s ago" if age >= 0 else "never"
    return (f"held by {h.get('who', '?')} from {h.get('from', '?')} (pid {h.get('pid', '?')}), "
            f"stage {h.get('stage', '?')}, {h.get('task', '?')} started {h.get('started', '?')}, "
            f"last heartbeat {beat}" + (f"; message: {one_line(h['message'])}" if h.get("message") else ""))


def one_line(text: str) -> str:
    """A holder's message on one line: a newline in it printed lines of its own under `fab lock`,
    which could pass for the tool's (a forged "STALE: take it over with ...")."""
    return " ".join(str(text).split())
