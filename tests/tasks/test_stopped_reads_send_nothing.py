"""(Found by an adversary pass.) the early pull on a v1-only host when the run stops while the Compose probe
is still running (a checklist that blocks). settle_prefetches promises that nothing the run began
early goes on on the host: no pull may be *sent* after its kill."""
from __future__ import annotations

import re
import threading

from invoke import Result

from commands import compose as compose_cmd
from config import load_settings
from tests.tasks.scripted_host import NEW, ScriptedHost
from tests.tasks.test_prefetch import deploy_on

V2_PULL = r"^cd \S+ && docker compose -f \S+ pull --quiet "
V1_PULL = r"^cd \S+ && docker-compose -f \S+ pull --quiet "
NOT_A_COMMAND = Result(stdout="", stderr="docker: 'compose' is not a docker command.\n", exited=1)


def test_no_pull_is_sent_after_the_kill_when_the_killed_probe_is_asked_again(mocker, capsys, monkeypatch):
    monkeypatch.setenv("DEPLOY_CHECKLIST_BLOCKING", "monitoring")
    monkeypatch.setenv("DEPLOY_MONITORING_URL", "")
    st = load_settings("production", {})
    host = ScriptedHost(st.services, st.dependency_services)
    killed = threading.Event()
    guessed = threading.Event()
    probes = []

    def probe(command):
        probes.append(command)
        if len(probes) == 1:            # the start's probe: docker-compose (v1) is slow to start...
            killed.wait(30)             # ...and is still running when the checklist blocks
            return Result(stdout="", stderr="", exited=143)
        return Result(stdout="v1 1.29.2\n", exited=0)

    def v2_pull(command):
        guessed.set()
        return NOT_A_COMMAND

    def pkill(command):
        guessed.wait(10)                # the guessed pull has failed: the early pull waits for the probe
        killed.set()
        return Result(exited=0)
    code, out, err, commands = deploy_on(mocker, capsys, host, [
        (re.escape(compose_cmd.PROBE_COMPOSE), probe), (r" diff --quiet ", Result(stdout=NEW + "\n", exited=0)),
        (V2_PULL, v2_pull), (V1_PULL, host.pull), (r"^pkill ", pkill)])
    assert code == 9, err
    kill = max(i for i, c in enumerate(commands) if c.startswith("pkill "))
    after = [c for c in commands[kill:] if " pull --quiet " in c or c == compose_cmd.PROBE_COMPOSE]
    assert not after, f"sent after the run stopped its early commands: {after}"
