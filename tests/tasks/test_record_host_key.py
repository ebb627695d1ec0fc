"""--accept-new-host-key when the key cannot or must not be written (tasks/hostkeys.py
record_new_key), and the error block each case ends in (tasks/ssh.py connect_error): the known_hosts
file is never replaced or changed, and the block names the file, the reason and the fingerprint."""
import os

import pytest
from fabric import Connection

from tasks.conftest import hermetic_config
from tasks.errors import ExitCode
from tasks.hostkeys import (
    ChangedHostKey,
    HostKeyNotRecorded,
    KeySources,
    RevokedHostKey,
    fingerprint,
    record_new_key,
)
from tasks.ssh import connect_error
from tasks.test_host_keys import ed25519

NAME = "[10.0.0.5]:2222"


def sources(*user_files: str) -> KeySources:
    return KeySources(NAME, "10.0.0.5", 2222, tuple(user_files))


def block(exc: HostKeyNotRecorded, settings):
    return connect_error(exc, Connection("10.0.0.5", port=2222, config=hermetic_config()), settings, [])


def test_user_known_hosts_file_none_leaves_no_file_to_record_in(settings):
    key = ed25519(20)
    with pytest.raises(HostKeyNotRecorded) as exc:
        record_new_key(sources(), NAME, key)
    err = block(exc.value, settings)
    assert err.what == (f"--accept-new-host-key: the new host key of {NAME} (ssh-ed25519 {fingerprint(key)}) could not be "
                        f"recorded in (no file): UserKnownHostsFile is none, so there is no file to record it in")
    assert err.code == ExitCode.CONNECTION and err.kind == "setup"
    assert err.state == "nothing was run: the connection was refused before authentication"
    assert "verify that fingerprint with the server's admin" in err.next_step


def test_a_known_hosts_path_that_is_a_directory_is_never_replaced(tmp_path, settings):
    target = tmp_path / "known_hosts"
    target.mkdir()
    with pytest.raises(HostKeyNotRecorded) as exc:
        record_new_key(sources(str(target)), NAME, ed25519(21))
    assert exc.value.path == str(target) and "it is not a regular file" in exc.value.reason
    assert target.is_dir() and list(target.iterdir()) == []
    assert f"could not be recorded in {target}: it is not a regular file" in block(exc.value, settings).what


def test_a_read_only_known_hosts_file_is_left_as_it_is(tmp_path, settings):
    kh = tmp_path / "known_hosts"
    kh.write_text("old.example.com ssh-ed25519 AAAA\n")
    kh.chmod(0o444)
    with pytest.raises(HostKeyNotRecorded) as exc:
        record_new_key(sources(str(kh)), NAME, ed25519(22))
    assert exc.value.reason == "the file is read-only; it is left as it is"
    assert kh.read_text() == "old.example.com ssh-ed25519 AAAA\n" and sorted(os.listdir(tmp_path)) == ["known_hosts"]


def test_a_directory_that_cannot_be_created_is_an_error_block_not_a_traceback(tmp_path, settings):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    path = str(blocker / "known_hosts")          # its "directory" is a file: makedirs fails
    with pytest.raises(HostKeyNotRecorded) as exc:
        record_new_key(sources(path), NAME, ed25519(23))
    assert exc.value.path == path and exc.value.reason       # the OS's words, e.g. "Not a directory"
    assert block(exc.value, settings).code == ExitCode.CONNECTION


def test_a_key_recorded_meanwhile_by_another_run_is_judged_again_under_the_lock(tmp_path):
    """The policy saw no key; by the time the lock is held, another run has written one. The same
    key: nothing is appended (no duplicate line). Another key: a changed key, nothing written.
    A revoked one: revoked."""
    key, other = ed25519(24), ed25519(25)
    kh = tmp_path / "known_hosts"
    same = f"{NAME} ssh-ed25519 {key.get_base64()}\n"
    kh.write_text(same)
    assert record_new_key(sources(str(kh)), NAME, key) is False
    assert kh.read_text() == same

    kh.write_text(f"{NAME} ssh-ed25519 {other.get_base64()}\n")
    with pytest.raises(ChangedHostKey) as changed:
        record_new_key(sources(str(kh)), NAME, key)
    assert [k.blob for k in changed.value.known] == [other.asbytes()]
    assert kh.read_text() == f"{NAME} ssh-ed25519 {other.get_base64()}\n"

    kh.write_text(f"@revoked * ssh-ed25519 {key.get_base64()}\n")
    with pytest.raises(RevokedHostKey) as revoked:
        record_new_key(sources(str(kh)), NAME, key)
    assert (revoked.value.known_hosts, revoked.value.line) == (str(kh), 1)


def test_a_new_key_is_appended_to_the_first_user_file_only(tmp_path):
    key = ed25519(26)
    first, second = tmp_path / "kh1", tmp_path / "kh2"
    second.write_text("")
    assert record_new_key(sources(str(first), str(second)), NAME, key) is True
    assert first.read_text() == f"{NAME} ssh-ed25519 {key.get_base64()}\n" and second.read_text() == ""
