"""(Found by an adversary pass.) `fab plan` on a Compose v1 host vs what `fab deploy` sends there now that the
early pull guesses `docker compose` before the probe answers (docker-compose v1 takes ~0.6 s to
start, the probe is usually slower than the checklist's git fetch)."""
from __future__ import annotations

from config import load_settings
from tasks.plan import preview
from tasks.planworld import PlanWorld
from tests.tasks.test_early_pull_probe import deploy_on_a_v1_host


def test_the_plan_for_a_v1_host_shows_every_pull_a_deploy_sends_there(mocker, capsys):
    code, out, err, commands = deploy_on_a_v1_host(mocker, capsys)
    assert code == 0, err
    sent = [c for c in commands if " pull --quiet " in c]
    planned = [c.command for c in preview(load_settings("production", {}), PlanWorld(), "docker-compose").calls
               if " pull --quiet " in c.command]
    assert len(planned) == len(sent), f"deploy sent {sent}\nplan shows {planned}"
