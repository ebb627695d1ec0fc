import os

import pytest

from commands.docker import ContainerState

# Stage config reads DEPLOY_* variables; unit tests must not see an operator's overrides.
for _k in list(os.environ):
    if _k.startswith("DEPLOY_"):
        del os.environ[_k]



@pytest.fixture(scope="session", autouse=True)
def _run_logs_in_a_temporary_state_dir(tmp_path_factory):
    """The tool writes a log per run under $XDG_STATE_HOME; tests (and the fab they start) must
    not fill the real one."""
    saved = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))
    yield
    if saved is None:
        os.environ.pop("XDG_STATE_HOME", None)
    else:
        os.environ["XDG_STATE_HOME"] = saved


# Stage staging names the sandbox's client files (config/staging.env), and loading a stage checks
# that they exist. Production's checklist loads staging (has it applied the pending migrations?),
# so a unit test that deploys to a scripted production host loads it too. On a machine where the
# sandbox was never installed (a fresh CI machine: `make coverage` runs before `sandbox/ctl up`)
# those files are missing. Unit tests load staging without them (no unit test opens a real SSH
# connection); integration tests keep the real ones.
NO_SANDBOX = {"DEPLOY_STAGING_SSH_CONFIG": "", "DEPLOY_STAGING_KNOWN_HOSTS": ""}


@pytest.fixture(autouse=True)
def _staging_loads_without_the_sandbox(request, monkeypatch):
    if "integration" in request.node.path.parts:
        return
    for k, v in NO_SANDBOX.items():
        monkeypatch.setenv(k, v)


CAPTURED = os.path.join(os.path.dirname(__file__), "fixtures", "captured")


def captured(name: str) -> str:
    with open(os.path.join(CAPTURED, name), encoding="utf-8") as fh:
        return fh.read()


def state(service="backend", status="running", health="healthy", restarts=0, oom=False, exit_code=0,
          cid=None, image_id="sha256:" + "a" * 64, ref="reg/app:latest", env=None, health_log=()):
    return ContainerState(id=cid or (service + "0" * 64)[:64], name=f"app-{service}-1", service=service,
                          image_ref=ref, image_id=image_id, status=status, health=health,
                          restart_count=restarts, oom_killed=oom, exit_code=exit_code, started_at="",
                          finished_at="", memory_limit=64 * 1024 * 1024, health_log=tuple(health_log),
                          env=env or {})


@pytest.fixture
def staging_settings():
    from config import load_settings
    env = {"DEPLOY_SSH_CONFIG": "", "DEPLOY_KNOWN_HOSTS": ""}
    return load_settings("staging", env)
