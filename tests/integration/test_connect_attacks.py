"""Host keys looked up the way OpenSSH looks them up, against throwaway sshd servers on 127.0.0.1
(test_connect.py's; the shared sandbox is not used). Each case was a break found by trying:
which known_hosts files count (UserKnownHostsFile with several files, GlobalKnownHostsFile,
HostKeyAlias, %-tokens), a host with several keys, a ProxyJump hop on the same address as the
target, what --accept-new-host-key may write to, and a key exchange that stalls."""
from __future__ import annotations

import os
import socket
import stat
import subprocess
import threading
import time

import pytest
from test_connect import STOCK_FAB, Sshd, _listening, flat, run, sshd  # noqa: F401  (sshd is a fixture)

LOCK = ("lock", "--stage", "production")


def keygen(path, kind="ed25519") -> list[str]:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "", "-f", str(path)], check=True)
    return (path.parent / (path.name + ".pub")).read_text().split()[:2]


def config_with(server: Sshd, *options: str) -> None:
    """The throwaway alias with its UserKnownHostsFile line replaced by ``options``."""
    lines = [l for l in server.ssh_config.read_text().splitlines() if "UserKnownHostsFile" not in l]
    server.ssh_config.write_text("\n".join(lines + [f"  {o}" for o in options]) + "\n")


def fab_lock(server: Sshd, *extra: str) -> subprocess.CompletedProcess:
    return run(STOCK_FAB, "-S", str(server.ssh_config), "-H", "throwaway", *LOCK, *extra)


def restart(server: Sshd) -> None:
    """Start the throwaway sshd again (after its sshd_config changed)."""
    server.stop()
    server.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", str(server.dir / "sshd_config"), "-E", str(server.dir / "sshd.log")])
    for _ in range(100):
        if _listening(server.port):
            return
        if server.proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError((server.dir / "sshd.log").read_text())


def ssh_accepts(server: Sshd) -> bool:
    """What OpenSSH itself decides with the same ssh config (BatchMode: never asks)."""
    r = subprocess.run(["ssh", "-F", str(server.ssh_config), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                        "throwaway", "true"], capture_output=True, text=True, timeout=30)
    return r.returncode == 0


def test_user_known_hosts_file_list_is_read_like_ssh_first_missing_second_has_the_key(sshd, tmp_path):
    """`UserKnownHostsFile A B` with A missing and the key in B: ssh connects; the tool read only A
    and refused ("no known_hosts file at A")."""
    second = tmp_path / "known_hosts_b"
    second.write_text(sshd.known_line() + "\n")
    config_with(sshd, f"UserKnownHostsFile {tmp_path}/absent {second}", "GlobalKnownHostsFile none")
    assert ssh_accepts(sshd)
    r = fab_lock(sshd)
    assert r.returncode == 0, flat(r)


def test_accept_new_refuses_a_changed_key_that_only_the_second_known_hosts_file_lists(sshd, tmp_path):
    """The break: with A missing and B holding ANOTHER key for the host, --accept-new-host-key took
    the server's key as new and wrote it to A. ssh calls that a changed key."""
    other = keygen(tmp_path / "other")
    second = tmp_path / "known_hosts_b"
    second.write_text(f"[127.0.0.1]:{sshd.port} {' '.join(other)}\n")
    config_with(sshd, f"UserKnownHostsFile {tmp_path}/absent {second}", "GlobalKnownHostsFile none")
    r = fab_lock(sshd, "--accept-new-host-key")
    out = flat(r)
    assert r.returncode == 5, out
    assert f"the host key of [127.0.0.1]:{sshd.port} has CHANGED" in out and f"{second} line 1" in out
    assert "Security incident" in out
    assert not (tmp_path / "absent").exists()


def test_a_revoked_key_in_the_global_known_hosts_file_is_enforced(sshd, tmp_path):
    """GlobalKnownHostsFile (default /etc/ssh/ssh_known_hosts) was never read: a key revoked there
    was accepted because the user file lists it."""
    revoked = tmp_path / "ssh_known_hosts"
    revoked.write_text(f"@revoked * {' '.join(sshd.host_key_line)}\n")
    sshd.known_hosts.write_text(sshd.known_line() + "\n")
    config_with(sshd, f"UserKnownHostsFile {sshd.known_hosts}", f"GlobalKnownHostsFile {revoked}")
    assert not ssh_accepts(sshd)
    r = fab_lock(sshd)
    out = flat(r)
    assert r.returncode == 5, out
    assert "is REVOKED" in out and f"@revoked in {revoked} line 1" in out and "Security incident" in out


def test_host_key_alias_names_the_host_in_known_hosts(sshd, tmp_path):
    """HostKeyAlias was ignored: the key recorded under the alias was not checked, and
    --accept-new-host-key accepted any key under [127.0.0.1]:port."""
    other = keygen(tmp_path / "other")
    sshd.known_hosts.write_text(f"prod-alias {' '.join(other)}\n")
    config_with(sshd, f"UserKnownHostsFile {sshd.known_hosts}", "GlobalKnownHostsFile none", "HostKeyAlias prod-alias")
    r = fab_lock(sshd, "--accept-new-host-key")
    assert r.returncode == 5 and "the host key of prod-alias has CHANGED" in flat(r), flat(r)
    assert sshd.known_hosts.read_text() == f"prod-alias {' '.join(other)}\n"
    sshd.known_hosts.write_text(f"prod-alias {' '.join(sshd.host_key_line)}\n")
    r = fab_lock(sshd)
    assert r.returncode == 0, flat(r)


def test_known_hosts_path_with_percent_tokens_is_expanded_like_ssh(sshd, tmp_path, monkeypatch):
    """`UserKnownHostsFile %d/...` was taken literally (a relative path named "%d")."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / f"kh_{sshd.port}").write_text(sshd.known_line() + "\n")
    config_with(sshd, "UserKnownHostsFile %d/.ssh/kh_%p", "GlobalKnownHostsFile none")
    r = run(STOCK_FAB, "-S", str(sshd.ssh_config), "-H", "throwaway", *LOCK, env={"HOME": str(home)})
    assert r.returncode == 0, flat(r)


def test_a_host_with_two_keys_of_one_type_connects_whichever_line_comes_first(sshd, tmp_path):
    """Two ed25519 lines for the host (a rotated key, or hosts behind one name): ssh accepts the
    key if any line holds it. The tool compared only one key per type and raised CHANGED, a
    security incident, when the right key came first."""
    other = keygen(tmp_path / "other")
    sshd.known_hosts.write_text(f"{sshd.known_line()}\n[127.0.0.1]:{sshd.port} {' '.join(other)}\n")
    config_with(sshd, f"UserKnownHostsFile {sshd.known_hosts}", "GlobalKnownHostsFile none")
    assert ssh_accepts(sshd)
    r = fab_lock(sshd)
    assert r.returncode == 0, flat(r)


def test_a_stale_key_of_another_type_listed_first_does_not_hide_the_valid_key(sshd, tmp_path):
    """The server has ed25519 and RSA keys; known_hosts lists a stale RSA key first, then the right
    ed25519 key. ssh prefers every known key type and connects; the tool asked for RSA only (the
    first line's type) and reported a CHANGED key."""
    keygen(tmp_path / "host_rsa", "rsa")
    stale_rsa = keygen(tmp_path / "stale_rsa", "rsa")
    conf = sshd.dir / "sshd_config"
    conf.write_text(conf.read_text() + f"HostKey {tmp_path}/host_rsa\n")
    restart(sshd)
    sshd.known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {' '.join(stale_rsa)}\n{sshd.known_line()}\n")
    config_with(sshd, f"UserKnownHostsFile {sshd.known_hosts}", "GlobalKnownHostsFile none")
    assert ssh_accepts(sshd)
    r = fab_lock(sshd)
    assert r.returncode == 0, flat(r)


def test_a_changed_jump_host_key_names_the_jump_host_not_the_target(tmp_path_factory):
    """Jump host and target on the same address (127.0.0.1, two ports): the block named the
    target's [host]:port and told the operator to remove the TARGET's correct key."""
    jump, target = Sshd(tmp_path_factory.mktemp("jump")), Sshd(tmp_path_factory.mktemp("target"))
    try:
        other = keygen(target.dir / "other")
        kh = target.dir / "kh_all"
        kh.write_text(f"[127.0.0.1]:{jump.port} {' '.join(other)}\n{target.known_line()}\n")
        cfg = target.dir / "ssh_config_jump"
        cfg.write_text(
            f"Host target\n  HostName 127.0.0.1\n  Port {target.port}\n  User root\n  ProxyJump jumphost\n"
            f"  IdentityFile {target.dir}/client_key\n  IdentitiesOnly yes\n"
            f"Host jumphost\n  HostName 127.0.0.1\n  Port {jump.port}\n  User root\n"
            f"  IdentityFile {jump.dir}/client_key\n  IdentitiesOnly yes\n"
            f"Host *\n  UserKnownHostsFile {kh}\n  GlobalKnownHostsFile none\n")
        r = run(STOCK_FAB, "-S", str(cfg), "-H", "target", *LOCK)
        out = flat(r)
        assert r.returncode == 5, out
        assert f"the host key of [127.0.0.1]:{jump.port} has CHANGED" in out
        assert f"ssh-keygen -R '[127.0.0.1]:{jump.port}'" in out and f"[127.0.0.1]:{target.port}'" not in out
        kh.write_text(target.known_line() + "\n")             # the jump host unknown: its port in the hint
        r = run(STOCK_FAB, "-S", str(cfg), "-H", "target", *LOCK)
        assert r.returncode == 5 and f"ssh-keyscan -p {jump.port} 127.0.0.1" in flat(r), flat(r)
    finally:
        jump.stop()
        target.stop()


def test_accept_new_never_replaces_a_device_known_hosts_file(sshd, tmp_path):
    """`UserKnownHostsFile /dev/null` is a common idiom. --accept-new-host-key replaced the file by
    renaming a temp file over it: as root, /dev/null itself would have become a regular file. A
    device node made here stands in for it."""
    fake_null = tmp_path / "null"
    os.mknod(fake_null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    config_with(sshd, f"UserKnownHostsFile {fake_null}", "GlobalKnownHostsFile none")
    r = fab_lock(sshd, "--accept-new-host-key")
    out = flat(r)
    assert r.returncode == 5, out
    assert f"could not be recorded in {fake_null}: it is not a regular file" in out and "Escalate: nobody" in out
    assert stat.S_ISCHR(os.stat(fake_null).st_mode)


def test_accept_new_leaves_a_read_only_known_hosts_file_as_it_is(sshd):
    sshd.known_hosts.write_text("other.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIESLtSCHr5KdvmNGHIzlk8GRk7RhgPd/VmDiBZOwCSwO\n")
    sshd.known_hosts.chmod(0o444)
    before = sshd.known_hosts.read_bytes()
    r = fab_lock(sshd, "--accept-new-host-key")
    out = flat(r)
    assert r.returncode == 5, out
    assert "could not be recorded" in out and "the file is read-only" in out
    assert sshd.known_hosts.read_bytes() == before


class KexStaller:
    """Sends an SSH banner, then never takes part in the key exchange."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
            self.conns.append(conn)

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def test_a_stalled_key_exchange_ends_at_connect_timeout_even_with_connecttimeout_0_in_ssh_config(tmp_path):
    """`ConnectTimeout 0` in the operator's ssh config (fabric reads it as "no timeout") left the
    key exchange to paramiko's own 15 s, whatever CONNECT_TIMEOUT said; the block read
    "EOFError:"."""
    server = KexStaller()
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"Host staller\n  HostName 127.0.0.1\n  Port {server.port}\n  ConnectTimeout 0\n")
    try:
        r = run(STOCK_FAB, "-S", str(cfg), "-H", "staller", *LOCK,
                env={"DEPLOY_CONNECT_TIMEOUT": "2", "DEPLOY_KNOWN_HOSTS": str(kh)})
    finally:
        server.close()
    out = flat(r)
    assert r.returncode == 5, out
    assert "the SSH handshake did not complete within 2 s (CONNECT_TIMEOUT)" in out
    assert "Escalate: nobody" in out and "Traceback" not in r.stderr


class ChannelStaller:
    """A real SSH server (paramiko) that lets any client key in, then never opens a channel."""

    def __init__(self, host_key_file):
        import paramiko

        class Server(paramiko.ServerInterface):
            def get_allowed_auths(self, username):
                return "publickey"

            def check_auth_publickey(self, username, key):
                return paramiko.AUTH_SUCCESSFUL

            def check_channel_request(self, kind, chanid):
                release.wait()
                return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

        release = self.release = threading.Event()
        self.key = paramiko.Ed25519Key.from_private_key_file(str(host_key_file))
        self.server, self.transports = Server, []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        import paramiko
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = paramiko.Transport(conn)
            t.add_server_key(self.key)
            self.transports.append(t)
            t.start_server(server=self.server())

    def close(self):
        self.release.set()
        self.sock.close()
        for t in self.transports:
            t.close()


def test_a_host_that_opens_no_channel_is_a_setup_error_on_first_contact(tmp_path):
    """Authenticated, then the channel for the first command never opens: it ended after
    channel_timeout as "lost the SSH connection ... may or may not have finished", paging Platform."""
    host_key = keygen(tmp_path / "host_key")
    keygen(tmp_path / "client_key")
    server = ChannelStaller(tmp_path / "host_key")
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{server.port} {' '.join(host_key)}\n")
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"Host staller\n  HostName 127.0.0.1\n  Port {server.port}\n  User deploy\n"
                   f"  IdentityFile {tmp_path}/client_key\n  IdentitiesOnly yes\n  UserKnownHostsFile {kh}\n")
    try:
        r = run(STOCK_FAB, "-S", str(cfg), "-H", "staller", *LOCK, env={"DEPLOY_CONNECT_TIMEOUT": "1"})
    finally:
        server.close()
    out = flat(r)
    assert r.returncode == 5, out
    assert "Timeout opening channel" in out and "this command did not start" in out
    assert "Escalate: nobody" in out and "Traceback" not in r.stderr


def test_proxyjump_with_two_hops_goes_through_them_in_order(tmp_path_factory):
    """`ProxyJump j1,j2` means: connect to j1, from there to j2, from there to the target.
    Fabric builds the chain backwards (fabric#2203): it connected to j2 directly and reached j1
    through it, bypassing the bastion j1. Here each hop may forward only to the next one
    (PermitOpen, as bastions are set up), so only the right order works."""
    j1, j2, target = (Sshd(tmp_path_factory.mktemp(n)) for n in ("j1", "j2", "target"))
    try:
        for hop, nxt in ((j1, j2), (j2, target)):
            conf = hop.dir / "sshd_config"
            conf.write_text(conf.read_text() + f"PermitOpen 127.0.0.1:{nxt.port}\n")
            restart(hop)
        kh = target.dir / "kh_all"
        kh.write_text("".join(f"{s.known_line()}\n" for s in (j1, j2, target)))
        cfg = target.dir / "ssh_config_jumps"
        cfg.write_text("".join(
            f"Host {name}\n  HostName 127.0.0.1\n  Port {s.port}\n  User root\n  IdentityFile {s.dir}/client_key\n"
            f"  IdentitiesOnly yes\n  UserKnownHostsFile {kh}\n  GlobalKnownHostsFile none\n" + extra
            for name, s, extra in (("target", target, "  ProxyJump j1,j2\n"), ("j1", j1, ""), ("j2", j2, ""))))
        r = run(STOCK_FAB, "-S", str(cfg), "-H", "target", *LOCK)
        assert r.returncode == 0, flat(r)
    finally:
        for s in (j1, j2, target):
            s.stop()


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative-to-dot-ssh"])
def test_hosts_defined_in_an_included_ssh_config_file_are_used(sshd, tmp_path, relative):
    """`Include config.d/*` (Debian's own /etc/ssh/ssh_config has one): paramiko ignores the line,
    so HostName, Port, User, ProxyJump and UserKnownHostsFile of the hosts defined there were all
    lost; the alias was looked up in DNS as a host name."""
    home = tmp_path / "home"
    included = home / ".ssh" / "config.d"
    included.mkdir(parents=True)
    (included / "throwaway.conf").write_text(sshd.ssh_config.read_text() + "  GlobalKnownHostsFile none\n")
    sshd.known_hosts.write_text(sshd.known_line() + "\n")
    main = tmp_path / "ssh_config_main"
    main.write_text(f"Include {'config.d/*.conf' if relative else f'{included}/*.conf'}\n")
    r = run(STOCK_FAB, "-S", str(main), "-H", "throwaway", *LOCK, env={"HOME": str(home)})
    assert r.returncode == 0, flat(r)
