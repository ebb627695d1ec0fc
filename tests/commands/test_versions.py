import os
import stat
import subprocess

import pytest

from commands.shell import UnsafeValue
from commands.versions import check_tag, read_variable_command, set_variable_command


def test_set_variable_command_exact():
    assert set_variable_command("/srv/app", "IMAGE_TAG", "v2") == (
        "cd /srv/app && touch .env && tmp=$(mktemp .env.XXXXXX) && { cp -p .env \"$tmp\" && "
        "awk -v v=IMAGE_TAG -v t=v2 'index($0, v \"=\") == 1 { if (!done) print v \"=\" t; done = 1; next } "
        "{ print } END { if (!done) print v \"=\" t }' .env > \"$tmp\" && mv \"$tmp\" .env || "
        "{ rm -f \"$tmp\"; exit 1; }; }")


def test_read_variable_command_exact():
    assert read_variable_command("/srv/app", "IMAGE_TAG") == (
        "sed -n 's/^IMAGE_TAG=//p' /srv/app/.env 2>/dev/null | tail -n 1")


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
