"""Hostile .env values under ``fab deploy --version`` (adversary pass): the value now in the .env is
what an auto-rollback writes back, so it must be read as Compose reads it, and one that cannot be
written back must be refused before anything changes."""
import json
import subprocess
import types

import pytest

from commands import versions as versions_cmd
from tasks import versions
from tasks.errors import DeployError, ExitCode
from tasks.steps import RunOptions


class _Result:
    def __init__(self, stdout):
        self.stdout = stdout


def _session(env_line, tmp_path):
    """A session whose commands run in a local shell against tmp_path/.env; compose and pull are faked."""
    (tmp_path / ".env").write_text(f"SECRET=s3cr3t\n{env_line}\n")
    ran = []
    st = types.SimpleNamespace(app_dir=str(tmp_path), image_tag_variable="IMAGE_TAG", services=("backend",),
                               compose_file="compose.yaml", pull_timeout=10)

    def run(cmd, **_):
        ran.append(cmd)
        if cmd.startswith(("sed ", "cd ")):
            r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, check=True)
            return _Result(r.stdout)
        return _Result("")
    s = types.SimpleNamespace(settings=st, run=run, host="h", describe_state=lambda: "services untouched",
                              state=types.SimpleNamespace(before=None, tag_change=None, services_touched=False),
                              recorder=types.SimpleNamespace(write=lambda *a, **k: None))
    return s, ran


@pytest.mark.parametrize("line", ['IMAGE_TAG="v1"', "IMAGE_TAG='v1'", "IMAGE_TAG=v1 # pinned", "export IMAGE_TAG=v1",
                                  "IMAGE_TAG=v1\r"])
def test_quoted_or_exported_env_value_is_read_as_compose_reads_it_and_can_be_written_back(line, tmp_path, mocker):
    s, _ = _session(line, tmp_path)
    mocker.patch.object(versions, "refs_using", return_value=["reg/backend:v2"])
    mocker.patch("dataclasses.replace", lambda obj, **kw: types.SimpleNamespace(env=kw.get("env")))
    s.compose = types.SimpleNamespace(env=None)
    versions.check_step(s, RunOptions("deploy", version="v2"))
    assert s.state.tag_change == ("IMAGE_TAG", "v1")
    # the auto-rollback's write-back of that value works (it raised UnsafeValue on '"v1"')
    subprocess.run(["sh", "-c", versions_cmd.set_variable_command(str(tmp_path), "IMAGE_TAG", "v1")], check=True)


def test_env_value_that_is_not_a_tag_is_refused_before_anything_changes(tmp_path, mocker):
    s, ran = _session("IMAGE_TAG=${OTHER:-s3cr3t}", tmp_path)
    pull = mocker.patch.object(versions, "refs_using", return_value=["reg/backend:v2"])
    with pytest.raises(DeployError) as e:
        versions.check_step(s, RunOptions("deploy", version="v2"))
    assert e.value.code == ExitCode.CONFIG and "nothing was changed" in e.value.state
    assert s.state.tag_change is None and not pull.called and len(ran) == 1
    assert "s3cr3t" not in json.dumps(e.value.to_dict())       # the value is never quoted: the .env holds secrets
