"""Issue 10, Versions, on the staging host (docs/versions.md). The sandbox's compose file reads the
backend tag from IMAGE_TAG in the app dir's .env, as the issue's host did. After every run below,
the .env, `docker compose config`, the image the backend container runs and the local tags agree;
the real v2 image is never left dangling; a missing tag changes nothing."""
import re
import signal

import pytest

from tests.integration.conftest import APP_DIR, flat

STAGING = ["--stage", "staging"]
REPO = "127.0.0.1:5000/ai-doc-qa/backend"


def env_tag() -> str:
    """IMAGE_TAG in the app dir's .env ('' when the line is absent)."""
    env = APP_DIR / ".env"
    lines = env.read_text().splitlines() if env.exists() else []
    return next((x.split("=", 1)[1] for x in lines if x.startswith("IMAGE_TAG=")), "")


def configured_backend(sandbox) -> str:
    """The backend image `compose config` resolves, run by the active generation as the deploy user
    in the app dir, as an operator would (v1 has no --images: the image lines of the whole file)."""
    r = sandbox.compose("config")
    assert r.returncode == 0, r.stderr
    images = re.findall(r"^\s+image: (\S+)$", r.stdout, re.M)
    assert len(set(x for x in images if x.startswith(REPO + ":"))) == 1, images     # both slots: one reference
    return next(x for x in images if x.startswith(REPO + ":"))


def local_id(sandbox, ref: str) -> str:
    return sandbox.docker("image", "inspect", "--format", "{{.Id}}", ref).strip()


def tags_of(sandbox, image_id: str) -> set[str]:
    """The backend tags `docker images` lists for an image ID (empty: dangling or absent)."""
    out = sandbox.docker("images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", REPO)
    return {line.split()[0].rsplit(":", 1)[1] for line in out.splitlines() if line.split()[1] == image_id}


def assert_agree(sandbox, tag: str, env_value: str | None = None) -> None:
    """What runs is backend:TAG, and the .env, compose config and the local tag say so."""
    assert env_tag() == (tag if env_value is None else env_value)
    assert configured_backend(sandbox) == f"{REPO}:{tag}"
    assert sandbox.image_id("backend") == local_id(sandbox, f"{REPO}:{tag}")


@pytest.mark.parametrize("compose", ["v2", "v1"])
def test_deploy_version_then_rollback_tags_tell_the_truth(sandbox, compose):
    """The issue's host: after --version v2 then fab rollback, backend:v2 is still v2's image
    (not re-pointed at v1's, not dangling) and IMAGE_TAG names what runs; with both Compose
    generations (v1 has no `config --images`)."""
    sandbox.reset(compose)
    r = sandbox.fab("deploy", *STAGING, "--version", "v1")
    assert r.returncode == 0, flat(r)
    assert_agree(sandbox, "v1")
    v1 = local_id(sandbox, f"{REPO}:v1")
    sandbox.ctl("version", "v2")            # origin main = v2 (the code and migration 0002)
    r = sandbox.fab("deploy", *STAGING, "--version", "v2")
    assert r.returncode == 0, flat(r)
    assert_agree(sandbox, "v2") and sandbox.version() == "v2"
    v2 = local_id(sandbox, f"{REPO}:v2")
    assert v2 != v1 and v2 == sandbox.registry_image_id("v2")
    assert [e["tag"] for e in sandbox.last_release() if e["event"] == "version"] == ["v2"]
    r = sandbox.fab("rollback", *STAGING)
    assert r.returncode == 0, flat(r)
    assert_agree(sandbox, "v1")
    assert sandbox.version() == "v1"
    assert local_id(sandbox, f"{REPO}:v2") == v2 and "v2" in tags_of(sandbox, v2)     # not re-pointed, not dangling
    assert local_id(sandbox, f"{REPO}:v1") == v1
    restored = [e for e in sandbox.last_release("rollback") if e["event"] == "version_restored"]
    assert [(e["variable"], e["tag"]) for e in restored] == [("IMAGE_TAG", "v1")]


def test_rollback_of_a_first_version_deploy_sets_the_variable_to_latest(sandbox):
    """From the reset host (no IMAGE_TAG: backend:latest = v1) to --version v2 and back: the
    variable names latest again, and v2 keeps its own image."""
    sandbox.reset()
    assert env_tag() == "" and configured_backend(sandbox) == f"{REPO}:latest"
    sandbox.ctl("version", "v2")
    r = sandbox.fab("deploy", *STAGING, "--version", "v2")
    assert r.returncode == 0, flat(r)
    assert_agree(sandbox, "v2")
    v2 = local_id(sandbox, f"{REPO}:v2")
    r = sandbox.fab("rollback", *STAGING)
    assert r.returncode == 0, flat(r)
    assert_agree(sandbox, "latest")
    assert sandbox.version() == "v1" and local_id(sandbox, f"{REPO}:v2") == v2 and "v2" in tags_of(sandbox, v2)


def test_a_broken_tag_is_rolled_back_and_the_variable_set_back(sandbox):
    sandbox.reset()
    r = sandbox.fab("deploy", *STAGING, "--version", "v1")
    assert r.returncode == 0, flat(r)
    r = sandbox.fab("deploy", *STAGING, "--version", "broken")
    assert r.returncode == 7, flat(r)
    assert "restored automatically" in flat(r)
    # No traceback of the tool's own; the broken app's (in its log lines, shown in the error
    # block's output after a `|`) is part of the evidence, present or not as the logs fall.
    assert not [line for line in (r.stdout + r.stderr).splitlines() if line.lstrip().startswith("Traceback")], flat(r)
    assert_agree(sandbox, "v1")
    assert sandbox.version() == "v1"
    assert local_id(sandbox, f"{REPO}:broken") == sandbox.registry_image_id("broken")      # not re-pointed
    restored = [e for e in sandbox.last_release() if e["event"] == "version_restored"]
    assert [e["tag"] for e in restored] == ["v1"]


def test_ctrl_c_after_the_env_write_sets_the_variable_back(sandbox):
    """Ctrl-C while the broken tag's health is awaited (the .env already says broken): the abort's
    clean-up writes the previous value back (the line removed: it was absent) and restores v1."""
    sandbox.reset()
    proc = sandbox.fab_background("deploy", *STAGING, "--version", "broken")
    sandbox.wait_for(lambda: proc.poll() is not None or env_tag() == "broken", 120, ".env IMAGE_TAG=broken")
    assert proc.poll() is None, sandbox.finish(proc, 10)
    proc.send_signal(signal.SIGINT)
    out = sandbox.finish(proc, 120)
    assert proc.returncode == 130, out
    assert "Traceback" not in out and not sandbox.lock_held()
    assert_agree(sandbox, "latest", env_value="")          # the line is gone again: backend:latest (= v1)
    assert sandbox.version() == "v1"
    release = sandbox.last_release()
    assert release[-1]["outcome"] == "aborted"
    assert [e["tag"] for e in release if e["event"] == "version_restored"] == [""]


def test_a_missing_tag_is_refused_and_nothing_changes(sandbox):
    sandbox.reset()
    before_env, before_id, head = (APP_DIR / ".env").read_bytes(), sandbox.image_id("backend"), sandbox.head()
    r = sandbox.fab("deploy", *STAGING, "--version", "v99")
    out = flat(r)
    assert r.returncode == 3, out
    assert "image 127.0.0.1:5000/ai-doc-qa/backend:v99 is not in the registry" in out
    assert "nothing was changed (IMAGE_TAG is still unset)" in out and "Traceback" not in out
    assert (APP_DIR / ".env").read_bytes() == before_env
    assert (sandbox.image_id("backend"), sandbox.head()) == (before_id, head)
    assert configured_backend(sandbox) == f"{REPO}:latest" and not sandbox.lock_held()


def serving_slot(sandbox) -> str:
    """STRATEGY=blue-green: the one backend slot whose container runs."""
    up = [svc for svc in ("backend", "backend_green")
          if sandbox.docker("ps", "-q", "--filter", f"label=com.docker.compose.service={svc}").split()]
    assert len(up) == 1, up
    return up[0]


def test_blue_green_version_deploy_and_rollback_tags_tell_the_truth(sandbox):
    """Both slots read the same variable: the slot that serves after each run runs backend:TAG."""
    blue_green = {"DEPLOY_STRATEGY": "blue-green"}
    sandbox.reset()
    assert sandbox.fab("deploy", *STAGING, "--version", "v1", env=blue_green).returncode == 0
    sandbox.ctl("version", "v2")
    r = sandbox.fab("deploy", *STAGING, "--version", "v2", env=blue_green)
    assert r.returncode == 0, flat(r)
    slot = serving_slot(sandbox)
    assert env_tag() == "v2" and sandbox.image_id(slot) == local_id(sandbox, f"{REPO}:v2") and sandbox.version() == "v2"
    v2 = local_id(sandbox, f"{REPO}:v2")
    r = sandbox.fab("rollback", *STAGING, env=blue_green)
    assert r.returncode == 0, flat(r)
    back = serving_slot(sandbox)
    assert back != slot and env_tag() == "v1" and configured_backend(sandbox) == f"{REPO}:v1"
    assert sandbox.image_id(back) == local_id(sandbox, f"{REPO}:v1") and sandbox.version() == "v1"
    assert local_id(sandbox, f"{REPO}:v2") == v2 and "v2" in tags_of(sandbox, v2)
