"""Connecting, against real servers on 127.0.0.1 that these tests start themselves: a throwaway
sshd (its own host key, port and temp dir; the shared sandbox is not used, so no `with-sandbox`
lock is needed) and tiny TCP servers that refuse the SSH banner.

Issue 7 #13 (host keys, `fab -H HOST -- CMD`) and #16 (a refused banner)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STOCK_FAB = str(Path(sys.executable).parent / "fab")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sshd:
    def __init__(self, tmp: Path):
        self.dir = tmp
        self.port = free_port()
        for name in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(tmp / name)], check=True)
        (tmp / "authorized_keys").write_text((tmp / "client_key.pub").read_text())
        (tmp / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {tmp}/host_key\nPidFile {tmp}/sshd.pid\n"
            f"AuthorizedKeysFile {tmp}/authorized_keys\nStrictModes no\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n")
        self.host_key_line = (tmp / "host_key.pub").read_text().split()[:2]     # type, base64
        # The client side: an alias whose host key is in NO known_hosts file.
        self.known_hosts = tmp / "known_hosts"
        self.known_hosts.write_text("")
        self.ssh_config = tmp / "ssh_config"
        self.ssh_config.write_text(
            f"Host throwaway\n  HostName 127.0.0.1\n  Port {self.port}\n  User root\n"
            f"  IdentityFile {tmp}/client_key\n  IdentitiesOnly yes\n  UserKnownHostsFile {self.known_hosts}\n")
        os.makedirs("/run/sshd", exist_ok=True)
        self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", str(tmp / "sshd_config"), "-E", str(tmp / "sshd.log")])
        deadline = time.monotonic() + 10
        while not _listening(self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"throwaway sshd did not start: {(tmp / 'sshd.log').read_text()}")
            time.sleep(0.1)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)

    def known_line(self, name: str | None = None) -> str:
        return f"{name or f'[127.0.0.1]:{self.port}'} {' '.join(self.host_key_line)}"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def sshd(tmp_path):
    if os.geteuid() != 0 or not os.path.exists("/usr/sbin/sshd") or not shutil.which("ssh-keygen"):
        why = "needs root, /usr/sbin/sshd and ssh-keygen (CI has them)"
        if os.environ.get("REQUIRE_STAGING") == "1":
            pytest.fail(f"REQUIRE_STAGING=1 but this test cannot run: {why}")     # CI must really connect
        pytest.skip(why)
    server = Sshd(tmp_path)
    yield server
    server.stop()


def run(fab: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOY_")}
    return subprocess.run([fab, *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**full, "DEPLOY_CONNECT_TIMEOUT": "5", **(env or {})})


def flat(r: subprocess.CompletedProcess) -> str:
    return " ".join((r.stdout + "\n" + r.stderr).split())


@pytest.fixture
def project_fab(tmp_path_factory):
    """The `fab` that `make setup` installs into the venv (tasks/program.py), written to a temp dir."""
    from tasks.program import install_entry_point
    path = tmp_path_factory.mktemp("bin") / "fab"
    install_entry_point(str(path))
    return str(path)


def test_fab_adhoc_remainder_command_is_refused_not_run_without_a_host_key_check(sshd, project_fab, tmp_path):
    """Issue 7 #13: stock `fab -S CONFIG -H HOST -- CMD` ran CMD on a host whose key is in no
    known_hosts file (Fabric accepts any key). The project's fab refuses it; so does stock fab
    whenever a task is named (fabric.yaml)."""
    marker = tmp_path / "ran"
    r = run(project_fab, "-S", str(sshd.ssh_config), "-H", "throwaway", "--", f"hostname; touch {marker}")
    assert r.returncode == 2, flat(r)
    assert "REFUSED: fab -H HOST -- COMMAND" in r.stderr and "Traceback" not in r.stderr
    assert "accepts any host key without checking known_hosts" in flat(r)
    assert socket.gethostname() not in r.stdout and not marker.exists()
    r = run(STOCK_FAB, "-S", str(sshd.ssh_config), "-H", "throwaway", "contacts", "--stage", "production", "--", f"touch {marker}")
    assert r.returncode == 2 and "REFUSED" in r.stderr and not marker.exists()


def test_project_fab_with_an_unparsable_S_ssh_config_is_a_config_error(project_fab, tmp_path):
    """Issue 7 #16: a bare `HostName` in the -S file (or ~/.ssh/config) is parsed by fab before any
    task or executor exists: stock fab prints a traceback, the project's fab an error block."""
    bad = tmp_path / "ssh_config"
    bad.write_text("Host *\n  HostName\n")
    r = run(project_fab, "-S", str(bad), "-H", "prod.example.com", "status", "--stage", "production")
    assert r.returncode == 2, flat(r)
    assert "Traceback" not in r.stderr and "Unparsable line HostName" in r.stderr


def test_revoked_host_key_offered_by_the_server_is_refused_as_a_security_error(sshd):
    """Issue 7 #13: a known_hosts with @revoked crashed, and @revoked was not enforced. Here the
    server's key is listed both as the host's key and as @revoked: revoked wins."""
    sshd.known_hosts.write_text(f"@revoked * {' '.join(sshd.host_key_line)}\n{sshd.known_line()}\n")
    r = run(STOCK_FAB, "-S", str(sshd.ssh_config), "-H", "throwaway", "lock", "--stage", "production")
    out = flat(r)
    assert r.returncode == 5, out
    assert f"the host key of [127.0.0.1]:{sshd.port} is REVOKED" in out and "line 1" in out
    assert "Security incident" in out and "Traceback" not in r.stderr
    r = run(STOCK_FAB, "-S", str(sshd.ssh_config), "-H", "throwaway", "lock", "--stage", "production", "--accept-new-host-key")
    assert r.returncode == 5 and "is REVOKED" in flat(r)


def test_changed_host_key_on_a_non_22_port_suggests_removing_the_bracketed_name(sshd, tmp_path):
    """Issue 7 #13: the block suggested `ssh-keygen -R '127.0.0.1'`, which removes nothing."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other = (tmp_path / "other.pub").read_text().split()[:2]
    sshd.known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {' '.join(other)}\n")
    r = run(STOCK_FAB, "-S", str(sshd.ssh_config), "-H", "throwaway", "lock", "--stage", "production")
    out = flat(r)
    assert r.returncode == 5, out
    assert f"the host key of [127.0.0.1]:{sshd.port} has CHANGED" in out
    assert f"ssh-keygen -R '[127.0.0.1]:{sshd.port}' -f {sshd.known_hosts}" in out


def test_accept_new_host_key_appends_to_a_known_hosts_without_final_newline(sshd):
    """Issue 7 #13: the new entry was glued to the last line, and the next run failed."""
    first = "other.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIESLtSCHr5KdvmNGHIzlk8GRk7RhgPd/VmDiBZOwCSwO"
    sshd.known_hosts.write_text(first)                                   # no final newline
    r = run(STOCK_FAB, "-S", str(sshd.ssh_config), "-H", "throwaway", "lock", "--stage", "production", "--accept-new-host-key")
    assert r.returncode == 0, flat(r)
    assert f"accepted NEW host key for [127.0.0.1]:{sshd.port}" in flat(r)
    assert sshd.known_hosts.read_text() == f"{first}\n{sshd.known_line()}\n"
    r = run(STOCK_FAB, "-S", str(sshd.ssh_config), "-H", "throwaway", "lock", "--stage", "production")
    assert r.returncode == 0, flat(r)


def test_host_known_only_through_a_cert_authority_is_refused_with_a_note(sshd):
    sshd.known_hosts.write_text(f"@cert-authority * {' '.join(sshd.host_key_line)}\n")
    r = run(STOCK_FAB, "-S", str(sshd.ssh_config), "-H", "throwaway", "lock", "--stage", "production")
    out = flat(r)
    assert r.returncode == 5, out
    assert "is not known" in out and "only a @cert-authority entry for this host" in out
    assert "certificates are not supported" in out and "Traceback" not in r.stderr


class BannerRefuser:
    """Accepts TCP connections and closes them at once, or after a line that is no SSH banner."""

    def __init__(self, garbage: bytes):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.garbage = garbage
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                if self.garbage:
                    conn.sendall(self.garbage)


@pytest.mark.parametrize("garbage", [b"", b"HTTP/1.1 400 Bad Request\r\n\r\n"], ids=["closes", "not-ssh"])
def test_refused_ssh_banner_is_a_clean_connection_error(tmp_path, garbage):
    """Issue 7 #16 (the failure itself; paramiko's own log lines are routed to the run's log by
    another change): a clean block and exit 5."""
    server = BannerRefuser(garbage)
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    try:
        r = run(STOCK_FAB, "-H", f"deploy@127.0.0.1:{server.port}", "status", "--stage", "production",
                env={"DEPLOY_KNOWN_HOSTS": str(kh)})
    finally:
        server.sock.close()
    assert r.returncode == 5, flat(r)
    assert f"cannot connect to deploy@127.0.0.1:{server.port}: SSHException: Error reading SSH protocol banner" in flat(r)
    # The block ends the run (its Log field last, then nothing: no uncaught exception, no paramiko
    # traceback), and paramiko's own messages went to the run log, not the terminal.
    lines = r.stderr.rstrip().splitlines()
    log = max(i for i, line in enumerate(lines) if line.startswith("  Log:"))
    assert lines[log - 1].startswith("  Exit code:") or any(x.startswith("  Exit code:") for x in lines[log - 3:log]), flat(r)
    rest = " ".join(x.strip() for x in lines[log:])          # the Log field, wrapped or not, ends the output
    assert rest.endswith("(with the SSH library's own messages)") and all(x.startswith("   ") for x in lines[log + 1:]), flat(r)
    assert "Traceback" not in r.stderr and "Exception (client)" not in r.stderr, flat(r)


def test_the_venv_fab_is_the_project_entry_point():
    """`make setup` installs tasks/program.py as the venv's `fab`; without it, `fab -H HOST -- CMD`
    (no task named) runs with no host-key check, because stock fab loads nothing of this project."""
    text = Path(STOCK_FAB).read_text()
    assert "from tasks.program import main" in text, f"{STOCK_FAB} is Fabric's stock fab: run `make setup`"
