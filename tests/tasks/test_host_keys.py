"""Host keys and connecting (tasks/hostkeys.py, tasks/ssh.py), without a server."""
import base64
import dataclasses
import fcntl
import os
import shutil
import socket
import threading

import paramiko
import pytest
from fabric import Connection

from tasks.conftest import hermetic_config
from tasks.errors import DeployError

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "known_hosts-mixed")


class Ctx:
    """What connect() reads from the task's context: its config."""
    config = hermetic_config()


def ed25519(seed: int) -> paramiko.PKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    raw = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    blob = paramiko.Message()
    blob.add_string("ssh-ed25519")
    blob.add_string(raw)
    return paramiko.PKey.from_type_string("ssh-ed25519", blob.asbytes())


def test_known_hosts_with_cert_authority_revoked_and_non_utf8_lines_does_not_crash(tmp_path, settings):
    """Issue 7 #13: paramiko's loader raised on this file (traceback, exit 1)."""
    from tasks.hostkeys import ChangedHostKey, UnknownHostKey
    from tasks.ssh import harden
    kh = tmp_path / "known_hosts"
    shutil.copy(FIXTURE, kh)
    st = dataclasses.replace(settings, known_hosts=str(kh))
    target = Connection("web1.example.com", config=hermetic_config())
    assert harden(target, st, accept_new=False) == [str(kh)]
    web1_key = paramiko.PKey.from_type_string("ssh-ed25519", base64.b64decode(
        "AAAAC3NzaC1lZDI1NTE5AAAAIKSgyF9Qwlbg8Mp7ieP2IUh+t+GVTZY6xGEfLeJoitbF"))
    target.client._policy.missing_host_key(target.client, "web1.example.com", web1_key)     # known: accepted
    with pytest.raises(ChangedHostKey):
        target.client._policy.missing_host_key(target.client, "web1.example.com", ed25519(11))
    other_port = Connection("web1.example.com", port=2222, config=hermetic_config())
    harden(other_port, st, accept_new=False)
    with pytest.raises(UnknownHostKey):                                 # [web1.example.com]:2222 is another name
        other_port.client._policy.missing_host_key(other_port.client, "[web1.example.com]:2222", web1_key)


def test_revoked_host_key_is_refused_even_with_accept_new_host_key(tmp_path):
    """Issue 7 #13: @revoked was not enforced. A revoked key is refused and never recorded."""
    from tasks.hostkeys import AcceptNewPolicy, RevokedHostKey, StrictPolicy
    key = ed25519(1)
    kh = tmp_path / "known_hosts"
    kh.write_text(f"@revoked * {key.get_name()} {key.get_base64()}\n")
    for policy in (StrictPolicy(str(kh)), AcceptNewPolicy(str(kh))):
        with pytest.raises(RevokedHostKey) as exc:
            policy.missing_host_key(paramiko.SSHClient(), "[10.0.0.5]:2222", key)
        assert exc.value.line == 1
    assert kh.read_text().count("\n") == 1                   # nothing appended
    with pytest.raises(paramiko.SSHException, match="not in"):   # any other key: unknown, as before
        StrictPolicy(str(kh)).missing_host_key(paramiko.SSHClient(), "[10.0.0.5]:2222", ed25519(2))


def test_a_host_known_only_through_a_cert_authority_says_certificates_are_not_supported(tmp_path):
    from tasks.hostkeys import StrictPolicy, UnknownHostKey
    ca = ed25519(3)
    kh = tmp_path / "known_hosts"
    kh.write_text(f"@cert-authority *.example.com {ca.get_name()} {ca.get_base64()}\n")
    with pytest.raises(UnknownHostKey) as exc:
        StrictPolicy(str(kh)).missing_host_key(paramiko.SSHClient(), "prod.example.com", ed25519(4))
    assert f"only a @cert-authority entry for this host ({kh} line 1)" in exc.value.note
    assert "certificates are not supported" in exc.value.note


def test_accept_new_host_key_appends_atomically_to_a_file_without_final_newline(tmp_path):
    """Issue 7 #13: the new entry was glued to the last line (both lost) and written in place."""
    from tasks.hostkeys import AcceptNewPolicy
    old, new = ed25519(5), ed25519(6)
    real = tmp_path / "dotfiles" / "known_hosts"
    real.parent.mkdir()
    real.write_text(f"old.example.com {old.get_name()} {old.get_base64()}")      # no final newline
    real.chmod(0o640)
    link = tmp_path / "known_hosts"
    link.symlink_to(real)
    AcceptNewPolicy(str(link)).missing_host_key(paramiko.SSHClient(), "[10.0.0.5]:2222", new)
    assert real.read_text() == (f"old.example.com {old.get_name()} {old.get_base64()}\n"
                                f"[10.0.0.5]:2222 {new.get_name()} {new.get_base64()}\n")
    assert link.is_symlink() and oct(real.stat().st_mode & 0o777) == "0o640"
    assert sorted(p.name for p in real.parent.iterdir()) == ["known_hosts"]   # no temp file left


def test_accept_new_host_key_that_fails_mid_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    from tasks.hostkeys import append_known_host
    kh = tmp_path / "known_hosts"
    kh.write_text("old.example.com ssh-ed25519 AAAA")

    def crash(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        append_known_host(str(kh), "new.example.com ssh-ed25519 BBBB")
    assert kh.read_text() == "old.example.com ssh-ed25519 AAAA"
    assert [p.name for p in tmp_path.iterdir()] == ["known_hosts"]


def test_changed_key_on_port_2222_suggests_removing_the_bracketed_name(tmp_path, settings):
    """Issue 7 #13: the block said `ssh-keygen -R '127.0.0.1'`, which leaves [127.0.0.1]:2222 in place."""
    from tasks.ssh import connect_error
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    st = dataclasses.replace(settings, known_hosts=str(kh))
    cxn = Connection("127.0.0.1", port=2222, config=hermetic_config())
    err = connect_error(paramiko.BadHostKeyException("127.0.0.1", ed25519(7), ed25519(8)), cxn, st, [str(kh)])
    assert err.code == 5 and err.kind == "security"
    assert "the host key of [127.0.0.1]:2222 has CHANGED" in err.what
    assert f"ssh-keygen -R '[127.0.0.1]:2222' -f {kh}" in err.next_step


def test_changed_key_that_is_also_revoked_is_reported_as_revoked(tmp_path, settings):
    from tasks.ssh import connect_error
    offered = ed25519(9)
    kh = tmp_path / "known_hosts"
    kh.write_text(f"@revoked * ssh-ed25519 {offered.get_base64()}\n")
    st = dataclasses.replace(settings, known_hosts=str(kh))
    cxn = Connection("prod.example.com", config=hermetic_config())
    err = connect_error(paramiko.BadHostKeyException("prod.example.com", offered, ed25519(10)), cxn, st, [str(kh)])
    assert "is REVOKED" in err.what and f"@revoked in {kh} line 1" in err.what and err.kind == "security"


def test_name_resolution_that_hangs_ends_at_connect_timeout_with_a_setup_error(tmp_path, settings, monkeypatch):
    """Issue 7 #15: getaddrinfo inside paramiko had no deadline."""
    from tasks.ssh import connect
    release = threading.Event()

    def hung_resolver(*args, **kwargs):
        release.wait(5)
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hung_resolver)
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    st = dataclasses.replace(settings, known_hosts=str(kh), connect_timeout=0.5)
    try:
        with pytest.raises(DeployError) as exc:
            connect(Ctx(), "deploy@prod.example.com", st)
    finally:
        release.set()
    assert exc.value.what == "could not resolve host prod.example.com within 0.5 s (CONNECT_TIMEOUT)"
    assert exc.value.code == 5 and exc.value.kind == "setup"
    assert "getent hosts prod.example.com" in exc.value.next_step


@pytest.mark.parametrize("text, message", [
    ("Host *\n  Port abc\n", "Port 'abc' is not a port number"),
    ("Host *\n  HostName\n", "Unparsable line HostName"),
    ("Host *\n  ConnectTimeout soon\n", "ConnectTimeout 'soon' is not a whole number"),
    ("Host *\n  ProxyJump jump:notaport\n", "ProxyJump: host 'jump:notaport': port 'notaport'"),
])
def test_stage_ssh_config_with_bad_values_is_a_configuration_error(tmp_path, settings, text, message):
    """Issue 7 #16: `Port abc` and a bare `HostName` were tracebacks (ValueError, ConfigParseError)."""
    from tasks.ssh import connect
    cfg = tmp_path / "ssh_config"
    cfg.write_text(text)
    st = dataclasses.replace(settings, ssh_config=str(cfg), known_hosts=str(tmp_path / "absent"))
    with pytest.raises(DeployError) as exc:
        connect(Ctx(), "deploy@prod.example.com", st)
    assert message in exc.value.what and str(cfg) in exc.value.what
    assert exc.value.code == 2 and "nothing was run" in exc.value.state


@pytest.mark.parametrize("host, shown, keyscan", [
    ("[::1]:1", "[::1]:1", "ssh-keyscan -p 1 ::1 >>"),
    ("deploy@[2001:db8::5]:2222", "[2001:db8::5]:2222", "ssh-keyscan -p 2222 2001:db8::5 >>"),
    ("deploy@10.0.0.5:2222", "[10.0.0.5]:2222", "ssh-keyscan -p 2222 10.0.0.5 >>"),
])
def test_bracketed_ipv6_host_is_host_and_port_not_a_host_named_with_brackets(tmp_path, settings, host, shown, keyscan):
    """Issue 7 #16: `[::1]:1` was taken as host `[::1]:1` on port 22. Stopped before any traffic
    by the missing known_hosts file, which names the parsed host and port."""
    from tasks.ssh import connect
    st = dataclasses.replace(settings, known_hosts=str(tmp_path / "absent"))
    with pytest.raises(DeployError) as exc:
        connect(Ctx(), host, st)
    assert f"the host key of {shown} cannot be verified" in exc.value.what
    assert keyscan in exc.value.next_step


def test_malformed_host_string_is_a_configuration_error(settings):
    from tasks.ssh import connect
    with pytest.raises(DeployError) as exc:
        connect(Ctx(), "deploy@prod:notaport", settings)
    assert exc.value.code == 2 and "port 'notaport' is not a port number" in exc.value.what


def test_host_strings_give_ipv6_hosts_their_brackets(settings):
    from tasks.sshconfig import host_strings
    assert host_strings(Connection("::1", port=1, config=hermetic_config()), settings) == ["[::1]:1"]
    assert host_strings(Connection("prod", user="deploy", config=hermetic_config()), settings) == ["deploy@prod"]
    assert host_strings(Connection("prod", port=2222, config=hermetic_config()), settings) == ["prod:2222"]


def test_accept_new_judges_the_known_hosts_files_as_they_are_when_the_key_arrives(tmp_path, settings):
    """The files were read once, when the connection was prepared: a key recorded for the host in
    between (another run's --accept-new-host-key, an admin's edit) was ignored, and the offered key
    was appended next to it. Read again when the server shows its key, that is a changed key."""
    from tasks.ssh import harden
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    st = dataclasses.replace(settings, known_hosts=str(kh))
    target = Connection("10.0.0.5", port=2222, config=hermetic_config())
    harden(target, st, accept_new=True)
    recorded = ed25519(12)
    kh.write_text(f"[10.0.0.5]:2222 {recorded.get_name()} {recorded.get_base64()}\n")
    with pytest.raises(paramiko.SSHException, match=r"\[10.0.0.5\]:2222 has changed"):
        target.client._policy.missing_host_key(target.client, "[10.0.0.5]:2222", ed25519(13))
    assert kh.read_text() == f"[10.0.0.5]:2222 {recorded.get_name()} {recorded.get_base64()}\n"


def test_accept_new_writes_known_hosts_under_a_lock_on_its_directory(tmp_path, monkeypatch):
    """Two runs recording keys at once (two new hosts) each rewrote the file from what they had
    read: one entry was lost. The write now holds a flock on the file's directory."""
    from tasks import hostkeys as hostkeys_mod
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    write = hostkeys_mod.append_known_host
    seen = []

    def checking(path, line):
        fd = os.open(str(tmp_path), os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seen.append("unlocked")
        except BlockingIOError:
            seen.append("locked")
        finally:
            os.close(fd)
        write(path, line)

    monkeypatch.setattr(hostkeys_mod, "append_known_host", checking)
    hostkeys_mod.AcceptNewPolicy(str(kh)).missing_host_key(paramiko.SSHClient(), "[10.0.0.5]:2222", ed25519(14))
    assert seen == ["locked"] and kh.read_text().startswith("[10.0.0.5]:2222 ssh-ed25519 ")
