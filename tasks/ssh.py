"""SSH for the task layer: host keys and connecting (one hardened fabric Connection per host).

Fabric facts this module exists for (see ../shared/research/fabric-conventions.md):
- Fabric never loads known_hosts and accepts any key (fabric#1804, #2071). We read the known_hosts
  file ourselves (commands/ssh.py: paramiko's loader crashes on @cert-authority, @revoked and
  non-UTF-8 files), hand paramiko only the keys that pin this host, and install our own policy on
  the target and every ProxyJump hop before ``open()``. A key listed as @revoked is refused.
- Paramiko leaves Nagle on: ~40 ms extra per command. We set TCP_NODELAY on the socket.
- Name resolution (``getaddrinfo`` inside paramiko) has no deadline: we resolve in a worker
  thread bounded by CONNECT_TIMEOUT and hand paramiko the connected socket.
- Fabric int()s the connect timeout (0.5 s became "no timeout") and the ssh_config port (``Port
  abc`` was a traceback): both are checked or rounded here first.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import stat
import tempfile
import threading

import paramiko
from fabric import Connection

from commands import ssh as ssh_cmd
from commands.shell import q, whole_seconds
from config import Settings
from tasks import ui
from tasks.errors import SETUP, DeployError, ExitCode

NOT_CONNECTED = "nothing was run: the connection was refused before authentication"


# ---------------------------------------------------------------------------------------------
# Host keys

def fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


known_hosts_name = ssh_cmd.known_hosts_name


class UnknownHostKey(paramiko.SSHException):
    def __init__(self, hostname: str, key: paramiko.PKey, known_hosts: str, note: str = ""):
        self.hostname, self.key, self.known_hosts, self.note = hostname, key, known_hosts, note
        super().__init__(f"host key for {hostname} not in {known_hosts}")


class RevokedHostKey(paramiko.SSHException):
    def __init__(self, hostname: str, key: paramiko.PKey, known_hosts: str, line: int):
        self.hostname, self.key, self.known_hosts, self.line = hostname, key, known_hosts, line
        super().__init__(f"host key for {hostname} is @revoked in {known_hosts} line {line}")


class StrictPolicy(paramiko.MissingHostKeyPolicy):
    """Called by paramiko when no pinned key of this host matches: refuse (revoked or unknown)."""

    def __init__(self, known_hosts: str, match: ssh_cmd.HostMatch | None = None):
        self.known_hosts = known_hosts
        self.match = match or ssh_cmd.HostMatch()

    def missing_host_key(self, client, hostname, key):
        revoked = self.match.is_revoked(key.asbytes())
        if revoked:
            raise RevokedHostKey(hostname, key, self.known_hosts, revoked.line)
        self.unknown(client, hostname, key)

    def unknown(self, client, hostname, key):
        note = ""
        if self.match.authorities and not self.match.keys:
            lines = ", ".join(str(a.line) for a in self.match.authorities)
            note = (f"{self.known_hosts} has only a @cert-authority entry for this host (line {lines}); "
                    f"host certificates are not supported by this tool, so add the host's own key")
        raise UnknownHostKey(hostname, key, self.known_hosts, note)


class AcceptNewPolicy(StrictPolicy):
    """OpenSSH's ``StrictHostKeyChecking=accept-new``: record an unknown key. A *changed* key is
    still refused (paramiko raises BadHostKeyException before asking the policy), and so is a
    revoked one."""

    def unknown(self, client, hostname, key):
        append_known_host(self.known_hosts, ssh_cmd.known_hosts_line(hostname, key.get_name(), key.get_base64()))
        client.get_host_keys().add(hostname, key.get_name(), key)
        ui.warn(f"accepted NEW host key for {hostname}: {key.get_name()} {fingerprint(key)} "
                f"(recorded in {self.known_hosts}; --accept-new-host-key)")


def append_known_host(path: str, line: str) -> None:
    """Add one line to known_hosts atomically: the whole new file is written next to the old one,
    fsync'ed and renamed over it, so a crash leaves the old file or the new one, never half a line.
    A symlinked file is updated at its target; its mode (and owner, when we may) is kept."""
    target = os.path.realpath(path)
    directory = os.path.dirname(target)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    try:
        with open(target, "rb") as fh:
            old = fh.read()
        st = os.stat(target)
    except FileNotFoundError:
        old, st = b"", None
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".known_hosts.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(ssh_cmd.appended(old, line))
            fh.flush()
            os.fchmod(fh.fileno(), stat.S_IMODE(st.st_mode) if st else 0o644)
            if st:
                try:
                    os.fchown(fh.fileno(), st.st_uid, st.st_gid)
                except PermissionError:
                    pass            # not ours to give away; the mode is what matters
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)            # the rename itself survives a crash
    finally:
        os.close(dir_fd)


_warned: set[str] = set()


def load_known_hosts(path: str) -> ssh_cmd.KnownHosts:
    try:
        with open(path, "rb") as fh:
            known = ssh_cmd.parse_known_hosts(fh.read())
    except OSError as exc:
        raise DeployError(f"cannot read the known_hosts file {path}: {exc.strerror or exc}",
                          state="nothing was run: the connection was not attempted",
                          next_step=f"check the file's permissions (ls -l {path})",
                          kind=SETUP, code=ExitCode.CONNECTION) from None
    if known.skipped and path not in _warned:
        _warned.add(path)
        ui.warn(f"{path}: ignored {len(known.skipped)} line(s) that are not usable host keys: "
                + "; ".join(known.skipped[:5]) + (" ..." if len(known.skipped) > 5 else ""))
    return known


def pin(client: paramiko.SSHClient, name: str, match: ssh_cmd.HostMatch) -> None:
    """Give paramiko the known keys of this host (never a revoked one). Paramiko then asks the
    server for that key type first, and raises BadHostKeyException for a different key."""
    for entry in match.keys:
        try:
            key = paramiko.PKey.from_type_string(entry.keytype, entry.blob)
        except (paramiko.SSHException, ValueError, TypeError):
            continue                 # a key type paramiko cannot use cannot pin anything
        client.get_host_keys().add(name, key.get_name(), key)


def known_hosts_for(cxn: Connection, settings: Settings) -> str:
    if settings.known_hosts:
        return settings.known_hosts
    files = cxn.ssh_config.get("userknownhostsfile")
    if files:
        first = files.split()[0] if isinstance(files, str) else files[0]
        return os.path.expanduser(first)
    return os.path.expanduser("~/.ssh/known_hosts")


def hops(cxn: Connection) -> list[Connection]:
    """The target, then each ProxyJump hop in front of it."""
    chain, hop = [], cxn
    while isinstance(hop, Connection):
        chain.append(hop)
        hop = hop.gateway
    return chain


def harden(cxn: Connection, settings: Settings, accept_new: bool) -> list[str]:
    """Pin the known keys and install a strict (or accept-new) policy on the target and every hop."""
    used = []
    accept = accept_new or settings.host_key_policy == "accept-new"
    for hop in hops(cxn):
        path = known_hosts_for(hop, settings)
        match = ssh_cmd.HostMatch()
        if os.path.isfile(path):
            match = ssh_cmd.lookup(load_known_hosts(path), known_hosts_name(hop.host, hop.port))
            pin(hop.client, known_hosts_name(hop.host, hop.port), match)
        elif not accept:
            raise DeployError(
                f"no known_hosts file at {path}: the host key of {known_hosts_name(hop.host, hop.port)} cannot be verified",
                state="nothing was run: the connection was not attempted",
                next_step=(f"get the host key fingerprint from the server's admin, then: {ssh_cmd.scan_host_key(hop.host, hop.port, path)} "
                           f"(compare its fingerprint with {ssh_cmd.list_fingerprints(path)}), or run once with --accept-new-host-key"),
                kind=SETUP, code=ExitCode.CONNECTION)
        hop.client.set_missing_host_key_policy(AcceptNewPolicy(path, match) if accept else StrictPolicy(path, match))
        used.append(path)
    return used


# ---------------------------------------------------------------------------------------------
# Connection settings

def config_error(what: str, next_step: str) -> DeployError:
    return DeployError(what, state="nothing was run: the connection was not attempted", next_step=next_step,
                       kind=SETUP, code=ExitCode.CONFIG)


def stage_config(c, settings: Settings):
    """The fabric Config for this stage: the task's config (so --dry, -i, -e still apply) with the
    stage's ssh_config file and timeouts."""
    config = c.config.clone()
    # Dry-run and echo are applied by Session.run (reads still run under --dry); invoke's own
    # versions would hand empty output to every parser.
    config.run.dry = False
    config.run.echo = False
    if settings.ssh_config:
        # The stage's file replaces ~/.ssh/config, as `fab -S FILE` would.
        try:
            config._set(base_ssh_config=paramiko.SSHConfig.from_path(settings.ssh_config))
        except (paramiko.ConfigParseError, OSError, ValueError) as exc:
            raise config_error(f"the stage's ssh_config {settings.ssh_config} (SSH_CONFIG) cannot be read: {exc}",
                               f"fix that line in {settings.ssh_config} (every option needs a value: `HostName 10.0.0.5`), then re-run") from None
    if "timeout" not in (config.connect_kwargs or {}):
        # fabric int()s this value: 0.5 would become 0, which means no timeout at all.
        config.timeouts.connect = whole_seconds(settings.connect_timeout)
    config.connect_kwargs.setdefault("banner_timeout", settings.connect_timeout)
    config.connect_kwargs.setdefault("auth_timeout", settings.connect_timeout)
    # Opening a channel waits up to an hour by default (paramiko); a silent peer must not hang us.
    config.connect_kwargs.setdefault("channel_timeout", 3 * settings.connect_timeout)
    return config


def parse_host(host: str) -> ssh_cmd.HostSpec:
    try:
        return ssh_cmd.parse_host(host)
    except ssh_cmd.BadHostString as exc:
        raise config_error(str(exc), "give the host as [user@]host[:port], an IPv6 address as [address]:port") from None


def new_connection(spec: ssh_cmd.HostSpec, config, settings: Settings) -> Connection:
    """A Connection whose ssh_config options were checked first (fabric would int() them with a
    traceback)."""
    source = settings.ssh_config or "your ssh config (~/.ssh/config, or the file given with -S)"
    problems = ssh_cmd.ssh_config_problems(config.base_ssh_config.lookup(spec.host))
    if problems:
        raise config_error(f"{source}, for host {spec.host}: " + "; ".join(problems),
                           f"fix the options above in {source}, then re-run")
    try:
        return Connection(spec.host, user=spec.user, port=spec.port, config=config)
    except (ValueError, KeyError) as exc:          # e.g. a ProxyJump hop's own options
        raise config_error(f"{source}: cannot use the options for {spec.host}: {exc}",
                           f"fix the options for {spec.host} in {source}, then re-run") from None


def host_strings(c, settings: Settings) -> list[str]:
    """-H hosts as fab gave them (one Connection per call), else the stage's HOSTS."""
    if isinstance(c, Connection):
        user_default = c.ssh_config.get("user", c.config.user)
        port_default = int(c.ssh_config.get("port", c.config.port))
        user = c.user if c.user != user_default else None
        port = int(c.port) if int(c.port) != port_default else None
        return [ssh_cmd.format_host(c.original_host, user, port)]
    return list(settings.hosts)


# ---------------------------------------------------------------------------------------------
# Connecting

def resolve(host: str, port: int, seconds: float) -> list:
    """getaddrinfo with a deadline: it runs in a worker thread, which a hung resolver may keep
    (a daemon thread, so it never holds up the exit)."""
    box: dict = {}
    done = threading.Event()

    def work():
        try:
            box["addrs"] = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        except OSError as exc:
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=work, name="resolve", daemon=True).start()
    if not done.wait(seconds):
        why = f"within {seconds:g} s (CONNECT_TIMEOUT)"
    elif "error" in box:
        why = f"({box['error']})"
    else:
        return box["addrs"]
    raise DeployError(f"could not resolve host {host} {why}", state="nothing was run: the connection was not attempted",
                      next_step=f"check the host name for a typo, and the DNS resolver: getent hosts {q(host)}",
                      kind=SETUP, code=ExitCode.CONNECTION)


def tcp_connect(host: str, port: int, seconds: float) -> socket.socket:
    """A connected TCP socket (resolution and connect each bounded), with TCP_NODELAY."""
    error: OSError = OSError(f"no address for {host}")
    for family, kind, proto, _, addr in resolve(host, port, seconds):
        sock = socket.socket(family, kind, proto)
        sock.settimeout(seconds)
        try:
            sock.connect(addr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise error


def open_connection(cxn: Connection, settings: Settings) -> None:
    """Open the connection (and its ProxyJump hops). The first hop gets a socket we connected, so
    paramiko never resolves a name without a deadline. Also used to reconnect."""
    first = hops(cxn)[-1]
    if not first.is_connected and not first.gateway:          # not behind a ProxyCommand
        sock = tcp_connect(first.host, first.port, settings.connect_timeout)
        first._set(connect_kwargs={**first.connect_kwargs, "sock": sock})
    cxn.open()


def connect(c, host: str, settings: Settings, accept_new: bool = False) -> Connection:
    spec = parse_host(host)
    cxn = new_connection(spec, stage_config(c, settings), settings)
    paths = harden(cxn, settings, accept_new)
    try:
        open_connection(cxn, settings)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise connect_error(exc, cxn, settings, paths) from None
    tune(cxn, settings)
    return cxn


def _hop_named(cxn: Connection, hostname: str) -> Connection:
    return next((h for h in hops(cxn) if h.host == hostname), cxn)


def connect_error(exc: BaseException, cxn: Connection, settings: Settings, paths: list[str]) -> DeployError:
    """The error block for a failed connect: host key problems first, they are security errors."""
    if isinstance(exc, paramiko.BadHostKeyException):
        hop = _hop_named(cxn, exc.hostname)
        path = known_hosts_for(hop, settings)
        name = known_hosts_name(hop.host, hop.port)
        match = ssh_cmd.lookup(load_known_hosts(path), name)
        revoked = match.is_revoked(exc.key.asbytes())
        if revoked:
            return revoked_error(RevokedHostKey(name, exc.key, path, revoked.line))
        return DeployError(
            f"the host key of {name} has CHANGED: offered {exc.key.get_name()} {fingerprint(exc.key)}, "
            f"known_hosts has {exc.expected_key.get_name()} {fingerprint(exc.expected_key)}",
            state=NOT_CONNECTED,
            next_step=(f"do not connect until the change is explained (server rebuilt? man in the middle?). "
                       f"If the new key is verified out of band: {ssh_cmd.remove_host_key(name, path)} and add the new key"),
            kind="security", code=ExitCode.CONNECTION)
    if isinstance(exc, RevokedHostKey):
        return revoked_error(exc)
    if isinstance(exc, UnknownHostKey):
        return unknown_key_error(exc, _hop_named(cxn, exc.hostname.strip("[").split("]")[0]))
    if isinstance(exc, paramiko.AuthenticationException):
        return DeployError(
            f"SSH authentication to {ssh_cmd.format_host(cxn.host, cxn.user, cxn.port)} failed: {exc}",
            state="nothing was run", next_step="check the user and key (ssh -v to the same host), -i KEY, or the IdentityFile in your ssh config",
            kind=SETUP, code=ExitCode.CONNECTION)
    return DeployError(
        f"cannot connect to {ssh_cmd.format_host(cxn.host, cxn.user, cxn.port)}: {exc.__class__.__name__}: {exc}",
        state="nothing was run",
        next_step=f"check that the host is up and sshd listens (ssh -p {cxn.port} {q(cxn.user + '@' + cxn.host)} true)",
        kind=SETUP, code=ExitCode.CONNECTION)


def revoked_error(exc: RevokedHostKey) -> DeployError:
    return DeployError(
        f"the host key of {exc.hostname} is REVOKED: offered {exc.key.get_name()} {fingerprint(exc.key)}, "
        f"listed as @revoked in {exc.known_hosts} line {exc.line}",
        state=NOT_CONNECTED,
        next_step="do not connect: a revoked key was retired or compromised. Report it, and get the server's current key from its admin",
        kind="security", code=ExitCode.CONNECTION)


def unknown_key_error(exc: UnknownHostKey, hop: Connection) -> DeployError:
    kind = exc.key.get_name().replace("ssh-", "")
    return DeployError(
        f"the host key of {exc.hostname} is not known: offered {exc.key.get_name()} {fingerprint(exc.key)}"
        + (f". {exc.note}" if exc.note else ""),
        state=NOT_CONNECTED,
        next_step=(f"verify that fingerprint with the server's admin (on the server: ssh-keygen -lf /etc/ssh/ssh_host_{kind}_key.pub), "
                   f"then add it to {exc.known_hosts} ({ssh_cmd.scan_host_key(hop.host, hop.port, exc.known_hosts)}) "
                   f"or re-run with --accept-new-host-key"),
        kind=SETUP, code=ExitCode.CONNECTION)


def tune(cxn: Connection, settings: Settings) -> None:
    """TCP_NODELAY (Nagle costs ~40 ms per command on paramiko) and the SSH keepalive."""
    sock = getattr(cxn.transport, "sock", None)
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    cxn.transport.set_keepalive(settings.keepalive)
