"""Connecting, for the task layer: one hardened fabric Connection per host. Host keys are judged by
tasks/hostkeys.py, the ssh config read by tasks/sshconfig.py; here the policy is installed on the
target and every ProxyJump hop, the socket is opened, and a failed connect becomes an error block.

Fabric facts this module exists for (see ../shared/research/fabric-conventions.md):
- Paramiko leaves Nagle on: ~40 ms extra per command. We set TCP_NODELAY on the socket.
- Name resolution (``getaddrinfo`` inside paramiko) has no deadline: we resolve in a worker
  thread bounded by CONNECT_TIMEOUT and hand paramiko the connected socket.
- Paramiko waits 15 s for the key exchange whatever the connect timeout says: bounded here too.
"""
from __future__ import annotations

import os
import socket
import threading

import paramiko
from fabric import Connection

from commands import known_hosts as kh_cmd
from commands import ssh as ssh_cmd
from commands.shell import q, whole_seconds
from config import Settings
from tasks.errors import SETUP, DeployError, ExitCode
from tasks.hostkeys import (
    AcceptNewPolicy,
    ChangedHostKey,
    HostKeyNotRecorded,
    KeySources,
    RevokedHostKey,
    StrictPolicy,
    UnknownHostKey,
    fingerprint,
    key_sources,
    load_keys,
)
from tasks.sshconfig import new_connection, parse_host, stage_config

NOT_CONNECTED = "nothing was run: the connection was refused before authentication"


# ---------------------------------------------------------------------------------------------
# The hops and the host-key policy on each

def hops(cxn: Connection) -> list[Connection]:
    """The target, then each ProxyJump hop in front of it."""
    chain, hop = [], cxn
    while isinstance(hop, Connection):
        chain.append(hop)
        hop = hop.gateway
    return chain


def harden(cxn: Connection, settings: Settings, accept_new: bool) -> list[str]:
    """Install a strict (or accept-new) policy on the target and every hop, with the key types
    known for it preferred and the handshake bounded by CONNECT_TIMEOUT. Returns the file each hop
    records a new key in."""
    used = []
    accept = accept_new or settings.host_key_policy == "accept-new"
    for hop in hops(cxn):
        sources = key_sources(hop, settings)
        match = kh_cmd.lookup(load_keys(sources), sources.name)
        if not accept and not any(os.path.isfile(p) for p in sources.files):
            raise no_known_hosts_error(sources)
        # ssh's HostKeyAlgorithms order puts the types it knows keys of first; the server then shows
        # a key we can verify when it has several.
        known_types = [k.keytype for k in match.keys]
        # A pinned key makes paramiko decide by itself (one key per type): keep every decision ours.
        hop.client.get_host_keys().clear()
        hop.client._system_host_keys.clear()
        hop._set(connect_kwargs={**hop.connect_kwargs,
                                 "transport_factory": _transport_factory(known_types, settings.connect_timeout)})
        # The ssh config's ConnectTimeout (0 meant none) must not outlast CONNECT_TIMEOUT.
        hop._set(connect_timeout=whole_seconds(settings.connect_timeout))
        hop.client.set_missing_host_key_policy(AcceptNewPolicy(sources) if accept else StrictPolicy(sources))
        used.append(sources.record_to)
    return used


def _transport_factory(known_types: list[str], seconds: float):
    def make(sock, **kwargs):
        t = paramiko.Transport(sock, **kwargs)
        opts = t.get_security_options()
        opts.key_types = kh_cmd.preferred_key_types(known_types, list(opts.key_types))
        # paramiko waits 15 s for the key exchange whatever the connect timeout says.
        t.handshake_timeout = seconds
        return t
    return make


def no_known_hosts_error(sources: KeySources) -> DeployError:
    path = sources.record_to or (sources.files[0] if sources.files else "~/.ssh/known_hosts")
    where = ", ".join(sources.files) or "(none: UserKnownHostsFile none)"
    return DeployError(
        f"no known_hosts file at {where}: the host key of {sources.name} cannot be verified",
        state="nothing was run: the connection was not attempted",
        next_step=(f"get the host key fingerprint from the server's admin, then: {ssh_cmd.scan_host_key(sources.host, sources.port, path)} "
                   f"(compare its fingerprint with {ssh_cmd.list_fingerprints(path)}), or run once with --accept-new-host-key"),
        kind=SETUP, code=ExitCode.CONNECTION)


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
        except (OSError, UnicodeError) as exc:      # UnicodeError: a label over 63 characters (idna)
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
        exc = _judged(exc, key_sources(_hop_named(cxn, exc.hostname), settings))
    if isinstance(exc, ChangedHostKey):
        return changed_error(exc)
    if isinstance(exc, RevokedHostKey):
        return revoked_error(exc)
    if isinstance(exc, HostKeyNotRecorded):
        return not_recorded_error(exc)
    if isinstance(exc, UnknownHostKey):
        return unknown_key_error(exc, _hop_named(cxn, exc.hostname.strip("[").split("]")[0]))
    where = ssh_cmd.format_host(cxn.host, cxn.user, cxn.port)
    if isinstance(exc, paramiko.AuthenticationException) or "No authentication methods available" in str(exc):
        return DeployError(
            f"SSH authentication to {where} failed: {exc}",
            state="nothing was run", next_step="check the user and key (ssh -v to the same host), -i KEY, or the IdentityFile in your ssh config",
            kind=SETUP, code=ExitCode.CONNECTION)
    why = f"{exc.__class__.__name__}: {exc}"
    if isinstance(exc, EOFError) or str(exc) == "No existing session":
        # paramiko's words when the banner or key exchange did not finish in time
        why = f"the SSH handshake did not complete within {settings.connect_timeout:g} s (CONNECT_TIMEOUT)"
    return DeployError(
        f"cannot connect to {where}: {why}",
        state="nothing was run",
        next_step=f"check that the host is up and sshd listens (ssh -p {cxn.port} {q(cxn.user + '@' + cxn.host)} true)",
        kind=SETUP, code=ExitCode.CONNECTION)


def _judged(exc: paramiko.BadHostKeyException, sources: KeySources) -> paramiko.SSHException:
    """A key paramiko refused by itself (only if something pinned keys in it): what the files say."""
    match = kh_cmd.lookup(load_keys(sources), sources.name)
    verdict, entries = kh_cmd.judge(match, exc.key.asbytes())
    if verdict == kh_cmd.REVOKED_KEY:
        return RevokedHostKey(sources.name, exc.key, entries[0].source, entries[0].line)
    expected = kh_cmd.KnownKey(0, "", sources.name, exc.expected_key.get_name(), exc.expected_key.asbytes(), sources.record_to)
    return ChangedHostKey(sources.name, exc.key, [k for k in match.keys if k.blob != exc.key.asbytes()] or [expected])


def changed_error(exc: ChangedHostKey) -> DeployError:
    known = "; ".join(f"{k.keytype} {kh_cmd.fingerprint_blob(k.blob)}" + (f" ({k.source} line {k.line})" if k.line else "")
                      for k in exc.known)
    removals = " and ".join(ssh_cmd.remove_host_key(exc.hostname, src) for src in dict.fromkeys(k.source for k in exc.known))
    return DeployError(
        f"the host key of {exc.hostname} has CHANGED: offered {exc.key.get_name()} {fingerprint(exc.key)}, "
        f"known_hosts has {known}",
        state=NOT_CONNECTED,
        next_step=(f"do not connect until the change is explained (server rebuilt? man in the middle?). "
                   f"If the new key is verified out of band: {removals}, and add the new key"),
        kind="security", code=ExitCode.CONNECTION)


def revoked_error(exc: RevokedHostKey) -> DeployError:
    return DeployError(
        f"the host key of {exc.hostname} is REVOKED: offered {exc.key.get_name()} {fingerprint(exc.key)}, "
        f"listed as @revoked in {exc.known_hosts} line {exc.line}",
        state=NOT_CONNECTED,
        next_step="do not connect: a revoked key was retired or compromised. Report it, and get the server's current key from its admin",
        kind="security", code=ExitCode.CONNECTION)


def not_recorded_error(exc: HostKeyNotRecorded) -> DeployError:
    return DeployError(
        f"--accept-new-host-key: the new host key of {exc.hostname} ({exc.key.get_name()} {fingerprint(exc.key)}) "
        f"could not be recorded in {exc.path}: {exc.reason}",
        state=NOT_CONNECTED,
        next_step=("verify that fingerprint with the server's admin, then add it yourself to a known_hosts file "
                   "(KNOWN_HOSTS, or UserKnownHostsFile in your ssh config), and re-run"),
        kind=SETUP, code=ExitCode.CONNECTION)


def unknown_key_error(exc: UnknownHostKey, hop: Connection | None = None) -> DeployError:
    kind = exc.key.get_name().replace("ssh-", "")
    host, port = (exc.sources.host, exc.sources.port) if exc.sources and exc.sources.host else (hop.host, hop.port)
    return DeployError(
        f"the host key of {exc.hostname} is not known: offered {exc.key.get_name()} {fingerprint(exc.key)}"
        + (f". {exc.note}" if exc.note else ""),
        state=NOT_CONNECTED,
        next_step=(f"verify that fingerprint with the server's admin (on the server: ssh-keygen -lf /etc/ssh/ssh_host_{kind}_key.pub), "
                   f"then add it to {exc.known_hosts} ({ssh_cmd.scan_host_key(host, port, exc.known_hosts)}) "
                   f"or re-run with --accept-new-host-key"),
        kind=SETUP, code=ExitCode.CONNECTION)


def tune(cxn: Connection, settings: Settings) -> None:
    """TCP_NODELAY (Nagle costs ~40 ms per command on paramiko) and the SSH keepalive."""
    sock = getattr(cxn.transport, "sock", None)
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
