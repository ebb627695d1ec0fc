"""The migration's Python, started before its turn (issue 9): ``alembic upgrade head`` in the
backend container costs a ``docker exec`` and a Python that imports SQLAlchemy and alembic (0.6-0.7
s on the staging host, most of the migration step) before it touches the database. A deploy starts
that Python while the earlier steps run; it imports alembic, then waits, touching nothing, until
the migration step hands it the word to go, or until it is told to stop, its stdin closes or
``WAIT`` seconds pass (then it exits without migrating).

On the host (:func:`start`, a quick read): a private directory (``mktemp -d``) holds a FIFO, ``go``,
and the migration's output. A detached shell (``setsid``: no run tag, so the run's clean-up of
the commands it began does not stop a migration under way) runs ``docker exec -i`` with its stdin
from the FIFO, writes the exit status to ``rc`` when it ends, and removes the directory when no
go came (or once the migration step has read the result, or after two minutes).

The migration step (:func:`migrate`) is one ordinary command of the run (under the migration's
timeout, let finish after Ctrl-C or a lost connection, its output kept on the host): it writes
``go`` and the arguments to the FIFO, waits for ``rc``, prints the output and exits with the
status: the same sections and exit codes as ``MIGRATE_SCRIPT``. If the prestarted Python is gone,
never read the word (it had given up) or could not import alembic, the directory says so (no
``@@go`` line, a status it gives only before a word) and the same command runs the migration the
ordinary way, in the same container. If it ended otherwise without saying it took the word (its
``docker exec`` killed just then), the step stops with UNSURE: it may have begun.
"""
from __future__ import annotations

import json
import re
from typing import Sequence

from commands.alembic import MIGRATE_PY_HEAD, MIGRATE_PY_RUN, PY, python_one_line
from commands.docker import exec_in
from commands.shell import q

WAIT = 60           # seconds the prestarted Python waits for its turn before it exits, doing nothing
TIDY = 600          # x 0.2 s: how long the detached shell waits for the step to read a migration's result
GO = "@@go"         # the first line of a prestarted Python that was told to go (before "@@before")
NOT_STARTED = 96    # start's exit status when the host cannot (no setsid, mkfifo or mktemp)
UNSURE = 95         # the hand-over's exit status when that Python ended without saying whether it took its turn
NOT_TAKEN = "97|99|127"   # its exit statuses before any word was read: no alembic, no word (stop, 60 s), no python
_DIR = re.compile(r"^(/[A-Za-z0-9_][A-Za-z0-9._-]*)+$")    # no empty, dot-led or dash-led part, no trailing /

# After the word, the import system forgets what it saw of the directories on sys.path: ``git
# pull`` has changed the app's files since (alembic reads env.py and the migrations when it runs;
# nothing of the app was imported before the word).
_WAIT_PY = """\
import importlib, json, select
line = sys.stdin.readline() if select.select([sys.stdin], [], [], WAIT)[0] else ""
if not line.startswith("go "):
    sys.exit(99)
sys.argv[1:] = json.loads(line[3:])
importlib.invalidate_caches()
print("GO", flush=True)
""".replace("GO", GO)


def prelude_py(wait: float = WAIT) -> str:
    """MIGRATE_SCRIPT's Python with a wait for the word between its import and its run."""
    return MIGRATE_PY_HEAD + _WAIT_PY.replace("WAIT", repr(float(wait))) + MIGRATE_PY_RUN


def start(container_id: str, limit: int, wait: float = WAIT) -> str:
    """Start the migration's Python in ``container_id``, detached; print the directory's path.
    ``limit``: seconds after which the detached ``docker exec`` is stopped (the wait and the
    migration's own timeout)."""
    run = exec_in(container_id, ["sh", "-c", PY + python_one_line(prelude_py(wait)) + ' "$@" 2>&1', "sh"], stdin=True)
    # The FIFO is opened (read-write: no wait for a writer) before the detached shell is started,
    # which inherits it: a word written as soon as the path is printed is already held, not lost.
    # A result the step may read (a migration, or an end it cannot place) waits for it (TIDY); one
    # that took no word is removed at once. Stopped before the detached shell runs, nothing stays.
    detached = (
        f'd=$1; timeout -k 5 {int(limit)} {run} <&3 >"$d/out" 2>&1; echo $? >"$d/rc.tmp"; mv "$d/rc.tmp" "$d/rc"; exec 3>&-; '
        f'case $(cat "$d/rc") in {NOT_TAKEN}) grep -qx {GO} "$d/out" || rm -rf "$d";; esac; '
        f'n=0; while [ -d "$d" ] && [ $n -lt {TIDY} ]; do sleep 0.2; n=$((n+1)); done; rm -rf "$d"'
    )
    return (f"command -v setsid >/dev/null || exit {NOT_STARTED}; d=$(mktemp -d) || exit {NOT_STARTED}; "
            f'trap \'rm -rf "$d"; exit 143\' TERM INT HUP; '
            f'mkfifo -m 600 "$d/go" && exec 3<>"$d/go" || {{ rm -rf "$d"; exit {NOT_STARTED}; }}; '
            f'setsid sh -c {q(detached)} ai-doc-qa-migration "$d" </dev/null >/dev/null 2>&1 & trap - TERM INT HUP; echo "$d"')


def parse_start(stdout: str) -> str | None:
    """The directory :func:`start` printed, or None."""
    path = stdout.strip()
    return path if _DIR.fullmatch(path) and ".." not in path else None


# The directory is this run's only if it is still the private one mktemp made: a directory of
# this user (other users cannot put files in it), not a link. /tmp is everyone's: once the
# prestart has given up and removed it, anyone may make a directory of the same name.
_OURS = '[ -d "$d" ] && [ ! -L "$d" ] && [ -O "$d" ] && [ -p "$d/go" ]'


def migrate(directory: str, argv: Sequence[str], ordinary: str) -> str:
    """Hand the prestarted Python in ``directory`` its turn (``argv``: MIGRATE_SCRIPT's arguments)
    and print what it printed, exit with its status; ``ordinary`` (the migration command run the
    usual way) when it surely did not take it: gone, ended before the word, or ended with a status
    it gives only before reading a word. Ended otherwise without saying it took the word (its
    ``docker exec`` killed at that moment): UNSURE, and nothing more is run."""
    d, word = q(directory), q("go " + json.dumps(list(argv)))
    return (f"d={d}; if {_OURS} && [ ! -e \"$d/rc\" ] && printf '%s\\n' {word} 1<>\"$d/go\"; then "
            'while [ -d "$d" ] && [ ! -e "$d/rc" ]; do sleep 0.02; done; '
            'if [ -e "$d/rc" ]; then rc=$(cat "$d/rc"); '
            f'if grep -qx {GO} "$d/out"; then cat "$d/out"; rm -rf "$d"; exit "$rc"; fi; '
            f'case $rc in {NOT_TAKEN}) ;; *) echo "the migration\'s Python started early ended (status $rc) when it was '
            f'handed its turn, before it said it took it: the database may have moved" >&2; rm -rf "$d"; exit {UNSURE};; esac; '
            f'fi; fi; if {_OURS} && [ -e "$d/rc" ]; then rm -rf "$d"; fi; ' + ordinary)


def stop(directory: str) -> str:
    """Tell a prestarted Python that was not used to exit (best effort: it gives up on its own).
    One that has ended already (its docker exec gone with its container, or killed) cannot have
    begun a migration, for no word was ever written: its directory is removed at once, not left
    to the detached shell's tidy-up (up to TIDY x 0.2 s)."""
    d = q(directory)
    return (f"d={d}; if {_OURS}; then if [ -e \"$d/rc\" ]; then rm -rf \"$d\"; "
            f"else printf 'stop\\n' 1<>\"$d/go\"; fi; fi; true")
