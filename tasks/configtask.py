"""``fab config``: the resolved configuration of a stage, key by key, with where each value came
from; ``fab version``: the tool's version and the libraries it runs on. Neither connects."""
from __future__ import annotations

import subprocess

import fabric
import invoke
import paramiko
from fabric import task

from config import PROJECT_ROOT, placeholder_problems, raw_values
from config.keys import PER_STAGE
from tasks import ui
from tasks.base import Offline, operator_task
from tasks.errors import SETUP, DeployError, ExitCode


def config_rows(stage: str) -> list[tuple[str, str, str]]:
    """(key, raw value, source) for every key the tool reads, in the schema's order."""
    values, sources = raw_values(stage)
    return [(k, values.get(k, ""), sources.get(k, "-")) for k in PER_STAGE]


@operator_task(connects=False, help={"json": "print the keys as one JSON object on stdout"})
def config(o: Offline, json=False):
    """Every configuration key of the stage, its value (secrets masked) and where it came from.

    Sources: config/defaults.env, the stage file, config/local.env, $DEPLOY_LOCAL_CONFIG, the
    environment. Placeholder hosts and URLs (example.com) are refused: the first step before a
    real server."""
    st = o.settings
    rows = config_rows(st.stage)
    placeholders = placeholder_problems(st)
    if json:
        ui.emit_json({"stage": st.stage, "placeholders": placeholders,
                      "keys": {k: {"value": v, "source": src} for k, v, src in rows}})
    else:
        ui.say(f"stage {st.stage}: {len(rows)} keys (secrets masked)")
        ui.table([[k, v, src] for k, v, src in rows], ["key", "value", "from"])
    if placeholders:
        raise DeployError(f"stage {st.stage} still has placeholder hosts or URLs", details=placeholders,
                          code=ExitCode.CONFIG, kind=SETUP, state="nothing was run: no connection was made",
                          next_step=f"set your own values in config/{st.stage}.env or in config/local.env "
                                    f"({st.stage.upper()}_HOSTS=...), then re-run fab config --stage {st.stage}")


def tool_version() -> str:
    import tomllib  # only fab version reads pyproject.toml: not imported at every start-up

    with open(PROJECT_ROOT / "pyproject.toml", "rb") as fh:
        version = tomllib.load(fh)["project"]["version"]
    try:
        commit = subprocess.run(["git", "-C", str(PROJECT_ROOT), "describe", "--always", "--dirty"],
                                capture_output=True, text=True, timeout=5).stdout.strip()
    except OSError:
        commit = ""
    return version + (f" (git {commit})" if commit else "")


@task
def version(c):
    """The tool's version and the Fabric, Invoke, Paramiko and Python versions in use."""
    import platform  # only fab version needs it: not imported at every start-up

    print(f"ai-doc-qa-deploy {tool_version()}")
    print(f"Fabric {fabric.__version__}, Invoke {invoke.__version__}, Paramiko {paramiko.__version__}, "
          f"Python {platform.python_version()}")
