"""`fab plan` cannot drift from `fab deploy`: the real deploy task, run against a scripted host
(tests/tasks/scripted_host.py, answering like the sandbox host did), issues exactly the commands
the plan shows for the same path, in the same order.

What legitimately differs between two runs is normalised, explicitly (see ``normalised``):
- per run: the lock token, the lock holder (who, from, pid, started), the release-record JSON
  lines (release id, times, durations), the run tag of the downtime probe's file;
- per host: the answers themselves (container IDs, image IDs, commits, the registry of the image
  references): the scripted host is not the plan world;
- the downtime probe runs in a thread beside the switch in a deploy, so where its start lands
  among the main thread's commands is not fixed: it is compared as present once, not by position;
- independent reads run at once in a deploy (Session.concurrently), one after another in the
  plan: the commands of one such group are put back in the group's order (``in_group_order``),
  each read's own commands keeping theirs;
- a read a later step needs starts early in its own thread in a deploy (Session.prefetch), in
  place in the plan: its commands are put back where it started (``prefetched_in_place``);
- a deploy appends its release-record lines from a writer thread (tasks/recorder.py), several at
  once when they queue up: the appends are compared apart, as the sequence of events they write
  (``record_events``), and the writer's own ordering promise (every line queued before a command
  that changes the host is on the host before it) has its tests in tests/tasks/test_recorder.py.
"""
from __future__ import annotations

import re
import threading

import pytest
from invoke import Exit, MockContext

from config import load_settings
from tasks import base, web, worker
from tasks import executor as executor_mod
from tasks import session as session_mod
from tasks.conftest import Remote, hermetic_config
from tasks.deploy import deploy
from tasks.plan import PATHS, preview
from tasks.planworld import PlanWorld
from tests.conftest import NO_SANDBOX
from tests.tasks.scripted_host import ScriptedHost

PROBE_LOOP = re.compile(r"^rm -f /tmp/\S+-probe; end=")
NORMALISE = [
    (re.compile(r"printf '%s\\n' '\{.*?\}' > "), "printf '%s\\n' <holder> > "),     # the lock holder (acquire)
    (re.compile(r'"token": "[0-9a-f]{16}"'), '"token": <token>'),                    # heartbeat, release
    (re.compile(r"printf '%s\\n' '\{.*\}'; \} >> "), "printf '%s\\n' <json line>; } >> "),   # release record
    (re.compile(r"ai-doc-qa-(?:[0-9a-f]{8}|x{8})"), "ai-doc-qa-<run>"),
    (re.compile(r"^d=/tmp/tmp\.\w+; "), "d=<mktemp -d>; "),                           # the migration's Python started early
    (re.compile(r"sha256:[0-9a-f]{64}"), "<image>"),
    (re.compile(r"\b[0-9a-f]{64}\b"), "<container>"),
    (re.compile(r"\b[0-9a-f]{40}\b"), "<commit>"),
    (re.compile(r"\S+(/ai-doc-qa/[a-z_]+:latest)"), r"<registry>\1"),
]


def normalised(commands: list[str]) -> tuple[list[str], int]:
    """The commands with the per-run and per-host values replaced, without the probe's start (and
    how many probe starts there were)."""
    out = []
    for c in commands:
        for rx, to in NORMALISE:
            c = rx.sub(to, c)
        out.append(c)
    return [c for c in out if not PROBE_LOOP.match(c)], sum(1 for c in out if PROBE_LOOP.match(c))


def in_group_order(entries: list[tuple[tuple[int, int] | None, str]]) -> list[str]:
    """(read slot, command) in the order the host saw them -> the commands, with those of each
    concurrent group (consecutive, same group) ordered by their read's index, stably."""
    out: list[str] = []
    block: list[tuple[tuple[int, int], str]] = []
    for slot, command in [*entries, (None, None)]:
        if block and (slot is None or slot[0] != block[0][0][0]):
            out.extend(c for _, c in sorted(block, key=lambda e: e[0][1]))
            block = []
        if slot is not None:
            block.append((slot, command))
        elif command is not None:
            out.append(command)
    return out


def test_in_group_order_sorts_within_a_group_only():
    entries = [(None, "a"), ((7, 1), "r1"), ((7, 0), "r0-first"), ((7, 1), "r1-second"), ((7, 0), "r0-second"),
               (None, "b"), ((8, 1), "s1"), ((8, 0), "s0")]
    assert in_group_order(entries) == ["a", "r0-first", "r0-second", "r1", "r1-second", "b", "s0", "s1"]


def prefetched_in_place(entries: list, started: list[tuple[int, int]]) -> list:
    """(read slot, command) entries with the commands of each prefetch (its slot's group) moved to
    the place it started (the number of commands logged before it), in their order."""
    entries = list(entries)
    for at, group in sorted(started, reverse=True):
        mine = [e for e in entries[at:] if e[0] is not None and e[0][0] == group]
        rest = [e for e in entries[at:] if not (e[0] is not None and e[0][0] == group)]
        entries[at:] = [(None, c) for _, c in mine] + rest
    return entries


def test_prefetched_in_place_moves_a_prefetch_back_to_where_it_started():
    entries = [(None, "a"), (None, "b"), ((5, 0), "p1"), (None, "c"), ((5, 0), "p2"), ((6, 1), "r")]
    assert prefetched_in_place(entries, [(1, 5)]) == [(None, "a"), (None, "p1"), (None, "p2"), (None, "b"), (None, "c"), ((6, 1), "r")]


def scripted_deploy(mocker, world: PlanWorld) -> list[str]:
    """`fab deploy --stage production` as the CLI runs it, against scripted hosts: production,
    and staging (the checklist asks it whether the pending migrations were applied there)."""
    st = load_settings("production", {})
    prod = ScriptedHost(st.services, st.dependency_services, running=world.running,
                        healthy_after_up=world.healthy_after_up, database=world.database)
    staging = ScriptedHost(st.services, st.dependency_services, database="0002", app_dir=load_settings("staging", NO_SANDBOX).app_dir)
    remotes = [Remote(prod.script()), Remote(staging.script())]
    remotes[1].commands = remotes[0].commands               # one log, in the order the commands ran
    slots: list = []                                        # the read slot of each command in that log
    logging = threading.Lock()

    def answering(remote):
        def run(command, **kw):
            with logging:
                result = remote(command, **kw)
                slots.append(worker.read_slot())
            return result
        return run
    cxns = []
    for r in remotes:
        cxn = mocker.Mock()
        cxn.run.side_effect = answering(r)
        cxn.is_connected = True
        cxns.append(cxn)
    mocker.patch.object(base, "connect", return_value=cxns[0])
    mocker.patch.object(executor_mod, "connect", return_value=cxns[1])

    def request(method, url, **kw):                         # from this machine: logged as the plan shows it
        with logging:
            remotes[0].commands.append(f"{method} {url}")
            slots.append(worker.read_slot())
        return web.HttpAnswer(url, 200, 0.01, "ok")
    mocker.patch.object(web, "request", side_effect=request)
    started: list[tuple[int, int]] = []                    # (commands logged before it, its group) per prefetch
    real_background = session_mod.Background

    def background(fn, setup):
        with logging:                                       # its first command is logged after this
            job = real_background(fn, setup)
            started.append((len(remotes[0].commands), job.slot[0]))
        return job
    mocker.patch.object(session_mod, "Background", side_effect=background)
    try:
        deploy(MockContext(config=hermetic_config()), stage="production")
    except Exit:
        pass                    # the auto-rollback path ends with exit 7, as it should
    assert len(slots) == len(remotes[0].commands)
    assert any(slot is not None for slot in slots)          # reads did run at once (and were put back in order)
    assert started                                          # the checklist's database revision did start early
    return in_group_order(prefetched_in_place(list(zip(slots, remotes[0].commands)), started))


RECORD_APPEND = re.compile(r"^mkdir -p \S+/\.deploy && \{ if \[ -s \S+/releases\.jsonl \]")
EVENT = re.compile(r'"event":"([a-z_]+)"')


def record_events(commands: list[str]) -> tuple[list[str], list[str]]:
    """(the commands without the release-record appends, the events those appends wrote, in order)."""
    appends = [c for c in commands if RECORD_APPEND.match(c)]
    return [c for c in commands if not RECORD_APPEND.match(c)], [e for c in appends for e in EVENT.findall(c)]


@pytest.mark.parametrize("world", [PlanWorld(), *(w for _, w in PATHS)], ids=["deploy", "first-deploy", "auto-rollback"])
def test_the_plan_shows_exactly_the_commands_a_deploy_issues(mocker, world):
    deployed, deployed_events = record_events(scripted_deploy(mocker, world))
    deployed, deployed_probes = normalised(deployed)
    planned, planned_events = record_events([c.command for c in preview(load_settings("production", {}), world, "docker compose").calls])
    planned, planned_probes = normalised(planned)
    assert deployed_probes == planned_probes == 1
    assert len(deployed) > 30 and len(deployed_events) > 15
    assert planned == deployed
    assert planned_events == deployed_events


def test_the_comparison_sees_a_different_path(mocker):
    """Not vacuous: a deploy on a host where nothing runs yet is not the plan's main path."""
    deployed, _ = normalised(scripted_deploy(mocker, PlanWorld(running=False, database="")))
    planned, _ = normalised([c.command for c in preview(load_settings("production", {}), PlanWorld(), "docker compose").calls])
    assert planned != deployed
    assert any(" run --rm -T backend sh -c " in c for c in deployed) and not any(" run --rm " in c for c in planned)
