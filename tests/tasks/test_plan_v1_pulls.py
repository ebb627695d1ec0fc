"""(Found by an adversary pass.) `fab plan` on a Compose v1 host vs what `fab deploy` sends there now that the
early pull guesses `docker compose` before the probe answers (docker-compose v1 takes ~0.6 s to
start, the probe is usually slower than the checklist's git fetch)."""
from __future__ import annotations

import re

from invoke import Result

from commands import compose as compose_cmd
from config import load_settings
from tasks.plan import preview
from tasks.planworld import PlanWorld
from tests.tasks.scripted_host import NEW, ScriptedHost
from tests.tasks.test_early_pull_probe import NOT_A_COMMAND, V1_PULL, V2_PULL, probe_after_the_pull_began
from tests.tasks.test_prefetch import deploy_on


def test_the_plan_for_a_v1_host_shows_every_pull_a_deploy_sends_there(mocker, capsys):
    st = load_settings("production", {})
    host = ScriptedHost(st.services, st.dependency_services)
    began, probe = probe_after_the_pull_began("v1 1.29.2\n")

    def v2_pull(command):
        began.set()
        return NOT_A_COMMAND
    code, out, err, commands = deploy_on(mocker, capsys, host, [
        (re.escape(compose_cmd.PROBE_COMPOSE), probe), (r" diff --quiet ", Result(stdout=NEW + "\n", exited=0)),
        (V2_PULL, v2_pull), (V1_PULL, host.pull)])
    assert code == 0, err
    sent = [c for c in commands if " pull --quiet " in c]
    planned = [c.command for c in preview(load_settings("production", {}), PlanWorld(), "docker-compose").calls
               if " pull --quiet " in c.command]
    assert len(planned) == len(sent), f"deploy sent {sent}\nplan shows {planned}"
