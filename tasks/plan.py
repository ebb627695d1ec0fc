"""``fab plan``: the offline preview of a deploy. It never connects."""
from __future__ import annotations

from commands import compose as compose_cmd
from commands.plan import deploy_plan
from commands.shell import q
from tasks import ui
from tasks.base import Offline, operator_task
from tasks.errors import SETUP, DeployError, ExitCode


@operator_task(connects=False, help={"compose": "compose command to show: 'docker compose' (v2) or docker-compose (v1)"})
def plan(o: Offline, compose=""):
    """Offline preview: every command `fab deploy` would run for the stage, in order, without connecting."""
    st = o.settings
    if compose and compose not in (compose_cmd.V1, compose_cmd.V2):
        raise DeployError(f"--compose must be '{compose_cmd.V2}' or {compose_cmd.V1}, got {compose!r}",
                          kind=SETUP, code=ExitCode.CONFIG, state="nothing was run",
                          next_step=f"fab plan --compose '{compose_cmd.V2}' (or {compose_cmd.V1})")
    cmd = compose or (st.compose_command if st.compose_command != "auto" else compose_cmd.V2)
    ui.say(f"Plan for `fab deploy` on stage {st.stage} ({', '.join(st.hosts)}), app dir {q(st.app_dir)}; nothing is run.")
    if st.compose_command == "auto" and not compose:
        ui.say("Compose is detected on the host (COMPOSE_COMMAND=auto); shown as `docker compose`. --compose docker-compose shows v1.")
    last = None
    for step, what, command in deploy_plan(st, cmd):
        if step != last:
            ui.say(f"\n[{step}]")
            last = step
        ui.say(f"  # {what}")
        ui.say(f"  {command}")
