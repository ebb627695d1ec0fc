"""(Found by an adversary pass.) The stop mark (e19fc59) comes only in Session.settle_prefetches, which the
Ctrl-C/SIGTERM clean-up calls from _finish, AFTER its own kill_running(). Between that first kill
and the settle, a Background read whose command the kill ended goes on sending: the early pull
whose `docker compose pull` was killed probes Compose after the kill (and on a v1 host, probes and
sends a `docker-compose pull` after the kill, which only the settle's second pkill may or may not
catch: the race e19fc59 closed for the blocking checklist)."""
from __future__ import annotations

import re
import signal
import threading

from invoke import Result

from commands import compose as compose_cmd
from config import load_settings
from tests.tasks.scripted_host import NEW, ScriptedHost
from tests.tasks.test_prefetch import deploy_on

V2_PULL = r"^cd \S+ && docker compose -f \S+ pull --quiet "
V1_PULL = r"^cd \S+ && docker-compose -f \S+ pull --quiet "


def run(mocker, capsys, probe_answer):
    st = load_settings("production", {})
    host = ScriptedHost(st.services, st.dependency_services)
    pulling, killed, probed = threading.Event(), threading.Event(), threading.Event()
    grep = dict(host.script())[r" grep -E "]

    def v2_pull(command):
        pulling.set()
        killed.wait(10)                              # a long pull, killed by the clean-up
        return Result(stdout="", stderr="", exited=143)

    def headers(command):                            # a checklist read: Ctrl-C meanwhile
        if pulling.wait(10):
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
            killed.wait(10)
        return grep(command)

    def pkill(command):
        if not killed.is_set():
            killed.set()
            # pkill's own answer comes back after the killed pull's exit status (the pull died
            # while pkill ran): the early pull's thread goes on meanwhile.
            probed.wait(2)
        return Result(exited=0)

    def probe(command):
        probed.set()
        return Result(stdout=probe_answer, exited=0)
    code, out, err, commands = deploy_on(mocker, capsys, host, [
        (r"^pkill ", pkill), (re.escape(compose_cmd.PROBE_COMPOSE), probe),
        (r" diff --quiet ", Result(stdout=NEW + "\n", exited=0)), (V2_PULL, v2_pull), (V1_PULL, host.pull),
        (r" grep -E ", headers)])
    assert killed.is_set(), err
    first_kill = next(i for i, c in enumerate(commands) if c.startswith("pkill "))
    return code, err, commands, commands[first_kill + 1:]


def test_ctrl_c_during_the_checklist_sends_no_pull_after_killing_the_early_pull_v1(mocker, capsys):
    code, err, commands, after = run(mocker, capsys, "v1 1.29.2\n")
    assert code == 130, err
    sent = [c for c in after if " pull --quiet " in c or c == compose_cmd.PROBE_COMPOSE]
    assert not sent, f"sent by the early pull after the Ctrl-C clean-up killed it: {sent}"


def test_ctrl_c_during_the_checklist_sends_nothing_more_from_the_early_pull_v2(mocker, capsys):
    code, err, commands, after = run(mocker, capsys, "v2 2.26.1\n")
    assert code == 130, err
    sent = [c for c in after if c == compose_cmd.PROBE_COMPOSE or " pull --quiet " in c]
    assert not sent, f"sent by the early pull after the Ctrl-C clean-up killed it: {sent}"
