"""How ``fab plan`` shows a deploy: the commands the real flow issued against the plan world
(tasks/plan.py runs it), grouped by step, and the paths a deploy can take as differences from
the main one. Pure: it only arranges what it is given."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from typing import Sequence

RECORD = "release record: "
CHANGES = "  [changes the host]"

Where = tuple[tuple[str, "str | None"], ...]     # the session's timed blocks open at a command, outermost first


@dataclass(frozen=True)
class Entry:
    step: str                 # the step of the flow ("start", "checklist", ..., "finish")
    sub: str                  # the part of the step ("git fetch"), "" if none
    command: str              # as built; per-run values (lock token, record line) as placeholders
    what: str = ""            # what it is for
    changes: bool = False     # it changes the host
    host: str = ""            # another host than the deploy's (the test stage's), else ""
    local: bool = False       # an HTTP request from the operator's machine, not a command on a host


def label_steps(wheres: Sequence[Where], guards: Sequence[bool]) -> list[tuple[str, str]]:
    """(step, sub) of each command, from the timed blocks open when it ran. A command outside every
    step is a lock action that guards the step after it (taking the lock, proving it), or the
    flow's book-keeping, which belongs to the step before it; before the first step that is
    ``start``, after the last one ``finish``."""
    inside = [i for i, w in enumerate(wheres) if w]
    out = []
    for i, w in enumerate(wheres):
        if w:
            out.append((w[0][0], next((sub for _, sub in reversed(w) if sub), "")))
            continue
        after = [j for j in inside if j > i]
        before = [j for j in inside if j < i]
        if not after:
            out.append(("finish", ""))
        elif guards[i]:
            out.append((wheres[after[0]][0][0], "lock"))
        elif before:
            out.append((wheres[before[-1]][0][0], ""))
        else:
            out.append(("start", ""))
    return out


def collapse(entries: Sequence[Entry]) -> list[Entry]:
    """Consecutive release-record appends of a step as one entry naming their events: each is the
    same command with a different JSON line."""
    out: list[Entry] = []
    for e in entries:
        prev = out[-1] if out else None
        if (prev and e.what.startswith(RECORD) and prev.what.startswith(RECORD)
                and (prev.step, prev.sub, prev.host, prev.command) == (e.step, e.sub, e.host, e.command)):
            out[-1] = replace(prev, what=prev.what + ", " + e.what[len(RECORD):])
        else:
            out.append(e)
    return out


def comment(e: Entry) -> str:
    where = f"on {e.host}: " if e.host else "from this machine, not a command on the host: " if e.local else ""
    sub = f"{e.sub}: " if e.sub else ""
    return f"# {sub}{where}{e.what}" + (CHANGES if e.changes else "")


def render(entries: Sequence[Entry], indent: str = "  ") -> list[str]:
    """The plan: ``[step]`` headers, then per command a ``#`` line saying what it is for and the
    command itself, paste-able. A release-record append is shown in full once; the later ones
    differ only in their JSON line, so they are named, not repeated."""
    lines: list[str] = []
    step = None
    shown: set[str] = set()
    for e in entries:
        if e.step != step:
            lines += ["", f"[{e.step}]"]
            step = e.step
        if e.what.startswith(RECORD) and e.command in shown:
            lines.append(indent + comment(e) + "  (as above, with its own JSON line)")
            continue
        shown.add(e.command)
        lines += [indent + comment(e), indent + e.command]
    return lines


def _key(e: Entry) -> tuple[str, str, str]:
    """What makes two commands of two paths the same step of the flow: what they are for, not the
    values the world answered with (container IDs differ between the paths)."""
    return (e.step, e.host, RECORD if e.what.startswith(RECORD) else e.what or e.command)


def render_difference(base: Sequence[Entry], other: Sequence[Entry]) -> list[str]:
    """Another path as its differences from ``base``: where they part, per step what it does not
    run (named by what it is for), then what it runs instead or in addition (in full). Every line
    but the commands and the ``[step]`` headers is a ``#`` comment."""
    lines: list[str] = []
    shown = None
    matcher = difflib.SequenceMatcher(None, [_key(e) for e in base], [_key(e) for e in other], autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        gone, new = base[i1:i2], other[j1:j2]
        for step in dict.fromkeys(e.step for e in gone):
            shown = _header(lines, step, shown)
            skipped = dict.fromkeys(comment(e)[2:].removesuffix(CHANGES) for e in gone if e.step == step)
            lines.append("  # does not run: " + "; ".join(skipped))
        for n, e in enumerate(new):
            shown = _header(lines, e.step, shown)
            if n == 0:
                lines.append("  # runs instead:" if gone else "  # also runs:")
            lines += render([e])[2:]
    return lines


def _header(lines: list[str], step: str, shown: str | None) -> str:
    if step != shown:
        lines.append(f"[{step}]")
    return step
