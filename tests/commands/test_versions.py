import os
import stat
import subprocess

import pytest

from commands.shell import UnsafeValue
from commands.versions import check_tag, read_variable_command, set_variable_command


def test_set_variable_command_exact():
    assert set_variable_command("/srv/app", "IMAGE_TAG", "v2") == (
        "cd /srv/app && touch .env && f=$(readlink -f .env) && tmp=$(mktemp \"$f.XXXXXX\") && { cp -p \"$f\" \"$tmp\" && "
        "awk -v v=IMAGE_TAG -v t=v2 '$0 ~ \"^(export[ \\t]+)?\" v \"=\" { if (!done) print v \"=\" t; done = 1; next } "
        "{ print } END { if (!done) print v \"=\" t }' \"$f\" > \"$tmp\" && mv \"$tmp\" \"$f\" || "
        "{ rm -f \"$tmp\"; exit 1; }; }")


def test_read_variable_command_exact():
    assert read_variable_command("/srv/app", "IMAGE_TAG") == (
        "sed -n -E 's/^(export[[:space:]]+)?IMAGE_TAG=//p' /srv/app/.env 2>/dev/null | tail -n 1")


def _sh(cmd):
    return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True)


def test_set_variable_replaces_one_line_keeps_others_and_mode(tmp_path):
    env = tmp_path / ".env"
    env.write_bytes(b"A=1\r\nIMAGE_TAG=v1\nIMAGE_TAG_OLD=x\n# c\nSECRET='p w'\n")
    env.chmod(0o600)
    r = _sh(set_variable_command(str(tmp_path), "IMAGE_TAG", "v2"))
    assert r.returncode == 0 and r.stdout == ""           # the file (with secrets) is never printed
    assert env.read_bytes() == b"A=1\r\nIMAGE_TAG=v2\nIMAGE_TAG_OLD=x\n# c\nSECRET='p w'\n"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == [".env"]                 # no temp file left behind
    assert _sh(read_variable_command(str(tmp_path), "IMAGE_TAG")).stdout == "v2\n"


def test_set_variable_appends_when_absent_and_creates_file(tmp_path):
    r = _sh(set_variable_command(str(tmp_path), "IMAGE_TAG", "v3"))
    assert r.returncode == 0
    assert (tmp_path / ".env").read_text() == "IMAGE_TAG=v3\n"
    (tmp_path / ".env").write_text("A=1\n")
    _sh(set_variable_command(str(tmp_path), "IMAGE_TAG", "v4"))
    assert (tmp_path / ".env").read_text() == "A=1\nIMAGE_TAG=v4\n"


def test_set_variable_failure_leaves_no_temp_file(tmp_path):
    (tmp_path / ".env").mkdir()                             # cp fails: the temp file is removed
    r = _sh(set_variable_command(str(tmp_path), "IMAGE_TAG", "v2"))
    assert r.returncode != 0
    assert os.listdir(tmp_path) == [".env"] and (tmp_path / ".env").is_dir()


@pytest.mark.parametrize("tag", ["v2", "1.0.3", "_x", "a" * 128, "release-2026.11_a"])
def test_check_tag_accepts_docker_tags(tag):
    assert check_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", ".v", "-v", "a" * 129, "v 2", "v2;rm", "a/b", "v:2", "é"])
def test_check_tag_refuses(tag):
    with pytest.raises(UnsafeValue):
        check_tag(tag)


from commands.compose import Compose  # noqa: E402
from commands.policy import plan_restore  # noqa: E402
from commands.record import releases  # noqa: E402
from commands.record_schema import validate  # noqa: E402
from commands.versions import refs_using, restore_value, split_ref, unset_variable_command  # noqa: E402

R = "127.0.0.1:5000/ai-doc-qa/backend"


def test_compose_with_the_tag_overrides_the_env_file_for_one_command():
    c = Compose("docker compose", "/srv/app", "dc.yml", env=("IMAGE_TAG", "v2"))
    assert c.config_images() == "cd /srv/app && IMAGE_TAG=v2 docker compose -f dc.yml config --images"


def test_compose_v1_has_no_config_images_so_the_image_lines_are_filtered_on_the_host():
    """The defect: `docker-compose config --images` does not exist in Compose v1 (1.29), so a
    --version deploy on a v1 host failed its tag check. The resolved file holds the env files'
    values: only the image lines leave the host."""
    c = Compose("docker-compose", "/srv/app", "dc.yml", env=("IMAGE_TAG", "v2"))
    assert c.config_images() == ("cd /srv/app && out=$(IMAGE_TAG=v2 docker-compose -f dc.yml config) && "
                                 "printf '%s\\n' \"$out\" | sed -n 's/^    image: *//p'")


def test_refs_using_is_what_changes_with_the_value():
    a = {f"{R}:v2", "127.0.0.1:5000/ai-doc-qa/proxy:latest"}
    b = {f"{R}:x", "127.0.0.1:5000/ai-doc-qa/proxy:latest"}
    assert refs_using(a, b) == [f"{R}:v2"]


def test_split_ref():
    assert split_ref(f"{R}:v2") == (R, "v2")
    assert split_ref("127.0.0.1:5000/x") == ("127.0.0.1:5000/x", "")
    assert split_ref(f"{R}@sha256:" + "a" * 64)[1] == ""


def _img(tag, i):
    return {"ref": f"{R}:{tag}", "id": "sha256:" + i * 64}


def test_rollback_of_a_release_deployed_by_tag_sets_the_variable_back():
    """The defect: rollback re-pointed backend:v2 at v1's image and left IMAGE_TAG=v2."""
    target, current = {"backend": _img("v1", "1")}, {"backend": _img("v2", "2")}
    assert restore_value(target, current, ["backend"], "v2") == "v1"
    plan = plan_restore(["backend"], target, current, set(), target_refs=True)
    assert plan.changes[0].ref == f"{R}:v1"          # never backend:v2


def test_without_the_variable_the_tag_is_re_pointed_as_before():
    target, current = {"backend": _img("latest", "1")}, {"backend": _img("latest", "2")}
    assert restore_value(target, current, ["backend"], "") is None
    assert restore_value(target, current, ["backend"], "latest") is None
    assert plan_restore(["backend"], target, current, set()).changes[0].ref == f"{R}:latest"


def test_restore_value_refuses_another_repository():
    target = {"backend": {"ref": "other/backend:v1", "id": "sha256:" + "1" * 64}}
    assert restore_value(target, {"backend": _img("v2", "2")}, ["backend"], "v2") is None


def test_unset_variable_removes_only_its_line(tmp_path):
    (tmp_path / ".env").write_text("A=1\nIMAGE_TAG=v2\nB=2\n")
    assert _sh(unset_variable_command(str(tmp_path), "IMAGE_TAG")).returncode == 0
    assert (tmp_path / ".env").read_text() == "A=1\nB=2\n"
    assert os.listdir(tmp_path) == [".env"]


def test_the_record_keeps_the_version_and_refuses_a_hostile_tag():
    base = {"v": 1, "release": "r1", "at": ""}
    lines = [{**base, "event": "start"}, {**base, "event": "version", "variable": "IMAGE_TAG", "tag": "v2", "previous": "v1"},
             {**base, "event": "version_restored", "variable": "IMAGE_TAG", "tag": "v1"}]
    assert releases(lines)[0].version == {"variable": "IMAGE_TAG", "tag": "v2", "previous": "v1", "restored": "v1"}
    assert validate({**base, "event": "version", "variable": "IMAGE_TAG", "tag": "v2;rm"})


def test_parse_images_on_both_generations_captured_output():
    """Real output of Compose.config_images with IMAGE_TAG=v2 on the staging host: v2's
    `config --images`, v1's filtered `config` (which also lists the blue-green slot, in file order)."""
    from commands.versions import parse_images
    from tests.conftest import captured
    v2 = parse_images(captured("compose-v2-config-images-tag-v2.txt"))
    v1 = parse_images(captured("compose-v1-config-images-tag-v2.txt"))
    assert v1 == v2 == {f"{R}:v2", "127.0.0.1:5000/ai-doc-qa/model-server:latest", "127.0.0.1:5000/ai-doc-qa/proxy:latest",
                        "127.0.0.1:5000/ai-doc-qa/postgres:15", "127.0.0.1:5000/ai-doc-qa/redis:7"}
    assert refs_using(v1, {x.replace(":v2", ":x") for x in v1}) == [f"{R}:v2"]


def test_symlinked_env_is_edited_where_it_points_and_stays_a_symlink(tmp_path):
    """Adversary pass: ``mv`` onto the link replaced it with a regular copy, so the file config
    management owns kept the old tag and its later edits no longer reached Compose."""
    from commands.versions import unset_variable_command
    (tmp_path / "etc").mkdir()
    (tmp_path / "app").mkdir()
    real = tmp_path / "etc" / "env"
    real.write_text("A=1\nIMAGE_TAG=v1\n")
    real.chmod(0o640)
    (tmp_path / "app" / ".env").symlink_to("../etc/env")
    assert _sh(set_variable_command(str(tmp_path / "app"), "IMAGE_TAG", "v2")).returncode == 0
    assert (tmp_path / "app" / ".env").is_symlink() and real.read_text() == "A=1\nIMAGE_TAG=v2\n"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640 and sorted(os.listdir(tmp_path / "etc")) == ["env"]
    assert _sh(unset_variable_command(str(tmp_path / "app"), "IMAGE_TAG")).returncode == 0
    assert (tmp_path / "app" / ".env").is_symlink() and real.read_text() == "A=1\n"


def test_an_exported_line_is_the_line_replaced_and_removed(tmp_path):
    """Adversary pass: ``export IMAGE_TAG=v1`` was left and ``IMAGE_TAG=v2`` appended after it, two
    definitions of the one variable; a rollback's unset left the exported old value behind."""
    from commands.versions import unset_variable_command
    env = tmp_path / ".env"
    env.write_text("A=1\nexport IMAGE_TAG=v1\nexport\tIMAGE_TAG=v0\nIMAGE_TAGS=x\n")
    assert _sh(set_variable_command(str(tmp_path), "IMAGE_TAG", "v2")).returncode == 0
    assert env.read_text() == "A=1\nIMAGE_TAG=v2\nIMAGE_TAGS=x\n"
    env.write_text("export IMAGE_TAG=v1\nB=2\n")
    assert _sh(unset_variable_command(str(tmp_path), "IMAGE_TAG")).returncode == 0
    assert env.read_text() == "B=2\n"
