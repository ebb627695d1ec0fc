"""SSH for the task layer: host keys and connecting (one hardened fabric Connection per host).

Fabric facts this module exists for (see ../shared/research/fabric-conventions.md):
- Fabric never loads known_hosts and accepts any key (fabric#1804, #2071). We read the known_hosts
  files ourselves, the ones ssh reads (KNOWN_HOSTS or UserKnownHostsFile, then
  GlobalKnownHostsFile; HostKeyAlias names the host), with our own parser (commands/ssh.py:
  paramiko's loader crashes on @cert-authority, @revoked and non-UTF-8 files). Nothing is pinned in
  paramiko, which would compare one key per key type by itself: our policy, on the target and
  every ProxyJump hop, decides every key when the server shows it. @revoked in any file wins.
- Paramiko leaves Nagle on: ~40 ms extra per command. We set TCP_NODELAY on the socket.
- Name resolution (``getaddrinfo`` inside paramiko) has no deadline: we resolve in a worker
  thread bounded by CONNECT_TIMEOUT and hand paramiko the connected socket.
- Fabric int()s the connect timeout (0.5 s became "no timeout") and the ssh_config port (``Port
  abc`` was a traceback): both are checked or rounded here first.
"""
from __future__ import annotations

import contextlib
import fcntl
import getpass
import glob
import os
import socket
import stat
import tempfile
import threading
from dataclasses import dataclass

import paramiko
from fabric import Connection

from commands import ssh as ssh_cmd
from commands.shell import q, whole_seconds
from config import Settings, lists_host, stage_host_lists
from tasks import ui
from tasks.errors import SETUP, DeployError, ExitCode

NOT_CONNECTED = "nothing was run: the connection was refused before authentication"


# ---------------------------------------------------------------------------------------------
# Host keys

def fingerprint(key: paramiko.PKey) -> str:
    return ssh_cmd.fingerprint_blob(key.asbytes())


known_hosts_name = ssh_cmd.known_hosts_name

# Read after UserKnownHostsFile (or KNOWN_HOSTS) unless the ssh config names GlobalKnownHostsFile.
GLOBAL_KNOWN_HOSTS = ssh_cmd.GLOBAL_KNOWN_HOSTS


@dataclass(frozen=True)
class KeySources:
    """Where one hop's host key is looked up, the way ssh looks it up."""
    name: str                          # as known_hosts names it: HostKeyAlias, else host or [host]:port
    host: str                          # the address connected to (for the ssh-keyscan hint)
    port: int
    user_files: tuple[str, ...]        # KNOWN_HOSTS, else UserKnownHostsFile; a new key goes to the first
    global_files: tuple[str, ...] = ()

    @property
    def files(self) -> tuple[str, ...]:
        return self.user_files + self.global_files

    @property
    def record_to(self) -> str:
        return self.user_files[0] if self.user_files else ""


class UnknownHostKey(paramiko.SSHException):
    def __init__(self, hostname: str, key: paramiko.PKey, known_hosts: str, note: str = "",
                 sources: KeySources | None = None):
        self.hostname, self.key, self.known_hosts, self.note, self.sources = hostname, key, known_hosts, note, sources
        super().__init__(f"host key for {hostname} not in {known_hosts}")


class RevokedHostKey(paramiko.SSHException):
    def __init__(self, hostname: str, key: paramiko.PKey, known_hosts: str, line: int):
        self.hostname, self.key, self.known_hosts, self.line = hostname, key, known_hosts, line
        super().__init__(f"host key for {hostname} is @revoked in {known_hosts} line {line}")


class ChangedHostKey(paramiko.SSHException):
    def __init__(self, hostname: str, key: paramiko.PKey, known: list[ssh_cmd.KnownKey]):
        self.hostname, self.key, self.known = hostname, key, known
        super().__init__(f"host key for {hostname} has changed")


class HostKeyNotRecorded(paramiko.SSHException):
    def __init__(self, hostname: str, key: paramiko.PKey, path: str, reason: str):
        self.hostname, self.key, self.path, self.reason = hostname, key, path, reason
        super().__init__(f"the new host key of {hostname} could not be recorded in {path}: {reason}")


class StrictPolicy(paramiko.MissingHostKeyPolicy):
    """Every host key decision, taken when the server has shown its key. Nothing is pinned in
    paramiko (it compares one key per key type, so a host with two keys of one type failed as
    CHANGED), so paramiko always asks here; the known_hosts files are read again at that moment."""

    def __init__(self, sources: KeySources | str):
        if isinstance(sources, str):          # one file; the host named as paramiko names it
            sources = KeySources("", "", 0, (sources,))
        self.sources = sources

    @property
    def known_hosts(self) -> str:
        return self.sources.record_to

    def missing_host_key(self, client, hostname, key):
        name = self.sources.name or hostname
        match = ssh_cmd.lookup(load_keys(self.sources), name)
        verdict, entries = ssh_cmd.judge(match, key.asbytes())
        if verdict == ssh_cmd.REVOKED_KEY:
            raise RevokedHostKey(name, key, entries[0].source or self.known_hosts, entries[0].line)
        if verdict == ssh_cmd.CHANGED:
            raise ChangedHostKey(name, key, entries)
        if verdict == ssh_cmd.UNKNOWN:
            self.unknown(name, key, match)

    def unknown(self, name: str, key: paramiko.PKey, match: ssh_cmd.HostMatch) -> None:
        note = ""
        if match.authorities:
            lines = ", ".join(f"{a.source or self.known_hosts} line {a.line}" for a in match.authorities)
            note = (f"known_hosts has only a @cert-authority entry for this host ({lines}); "
                    f"host certificates are not supported by this tool, so add the host's own key")
        raise UnknownHostKey(name, key, self.known_hosts, note, self.sources)


class AcceptNewPolicy(StrictPolicy):
    """OpenSSH's ``StrictHostKeyChecking=accept-new``: record a key that NO known_hosts file knows
    for this host. A changed key (another key is known, in any file) and a revoked one are still
    refused."""

    def unknown(self, name: str, key: paramiko.PKey, match: ssh_cmd.HostMatch) -> None:
        if record_new_key(self.sources, name, key):
            ui.warn(f"accepted NEW host key for {name}: {key.get_name()} {fingerprint(key)} "
                    f"(recorded in {self.known_hosts}; --accept-new-host-key)")


def record_new_key(sources: KeySources, name: str, key: paramiko.PKey) -> bool:
    """Append the key to the first user file, under a lock on its directory. Judged again under the
    lock: a second run that recorded a key for this host meanwhile is not overwritten (a different
    key from it is a changed key). False if the key was recorded meanwhile."""
    path = sources.record_to
    if not path:
        raise HostKeyNotRecorded(name, key, "(no file)", "UserKnownHostsFile is none, so there is no file to record it in")
    target = os.path.realpath(path)
    try:
        if os.path.exists(target) and not stat.S_ISREG(os.stat(target).st_mode):
            raise HostKeyNotRecorded(name, key, path, "it is not a regular file (a device such as /dev/null "
                                     "or a directory); it is never replaced")
        if os.path.exists(target) and (not os.access(target, os.W_OK) or not os.stat(target).st_mode & 0o222):
            raise HostKeyNotRecorded(name, key, path, "the file is read-only; it is left as it is")
        os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
        with _locked_dir(os.path.dirname(target)):
            verdict, entries = ssh_cmd.judge(ssh_cmd.lookup(load_keys(sources), name), key.asbytes())
            if verdict == ssh_cmd.CHANGED:
                raise ChangedHostKey(name, key, entries)
            if verdict == ssh_cmd.REVOKED_KEY:
                raise RevokedHostKey(name, key, entries[0].source, entries[0].line)
            if verdict == ssh_cmd.OK:
                return False
            append_known_host(path, ssh_cmd.known_hosts_line(name, key.get_name(), key.get_base64()))
    except OSError as exc:
        raise HostKeyNotRecorded(name, key, path, exc.strerror or str(exc)) from None
    return True


@contextlib.contextmanager
def _locked_dir(directory: str):
    """flock on the directory: every writer of a file in it (another run of this tool) waits."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


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


def load_known_hosts(path: str) -> ssh_cmd.KnownHosts | None:
    """One file; None if there is none (missing, or not a regular file: ssh reads /dev/null as
    empty, and a FIFO would block)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as fh:
            known = ssh_cmd.parse_known_hosts(fh.read(), path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise DeployError(f"cannot read the known_hosts file {path}: {exc.strerror or exc}",
                          state="nothing was run: the connection was not attempted",
                          next_step=f"check the file's permissions (ls -l {q(path)})",
                          kind=SETUP, code=ExitCode.CONNECTION) from None
    if known.skipped and path not in _warned:
        _warned.add(path)
        ui.warn(f"{path}: ignored {len(known.skipped)} line(s) that are not usable host keys: "
                + "; ".join(known.skipped[:5]) + (" ..." if len(known.skipped) > 5 else ""))
    return known


def load_keys(sources: KeySources) -> ssh_cmd.KnownHosts:
    """All of the hop's known_hosts files, read as one (a file that does not exist is skipped, as
    ssh skips it)."""
    return ssh_cmd.merged([k for k in map(load_known_hosts, sources.files) if k is not None])


def key_sources(hop: Connection, settings: Settings) -> KeySources:
    """The known_hosts name and files of one hop, from KNOWN_HOSTS or its ssh_config options
    (UserKnownHostsFile with several files and %-tokens, GlobalKnownHostsFile, HostKeyAlias)."""
    cfg, port = hop.ssh_config, int(hop.port)
    alias = cfg.get("hostkeyalias")
    home = os.path.expanduser("~")
    tokens = {"%": "%", "d": home, "u": getpass.getuser(), "h": hop.host, "p": str(port), "r": hop.user or "",
              "n": hop.original_host, "k": alias or hop.original_host, "l": socket.gethostname(),
              "L": socket.gethostname().split(".")[0], "i": str(os.getuid())}
    try:
        if settings.known_hosts:
            user = [settings.known_hosts]
        else:
            user = [ssh_cmd.expand_tokens(p, tokens)
                    for p in ssh_cmd.file_list(cfg.get("userknownhostsfile"), ssh_cmd.USER_KNOWN_HOSTS)]
        glob = [ssh_cmd.expand_tokens(p, tokens) for p in ssh_cmd.file_list(cfg.get("globalknownhostsfile"), GLOBAL_KNOWN_HOSTS)]
    except ssh_cmd.BadConfigValue as exc:
        raise config_error(f"the ssh config for {hop.original_host}: UserKnownHostsFile/GlobalKnownHostsFile {exc}",
                           "fix that option in your ssh config (ssh_config(5), TOKENS), then re-run") from None
    return KeySources(alias or known_hosts_name(hop.host, port), hop.host, port, tuple(user), tuple(glob))


def known_hosts_for(cxn: Connection, settings: Settings) -> str:
    """The file a new key of this host is recorded in (and the one named in hints)."""
    return key_sources(cxn, settings).record_to


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
        match = ssh_cmd.lookup(load_keys(sources), sources.name)
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
        opts.key_types = ssh_cmd.preferred_key_types(known_types, list(opts.key_types))
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
# Connection settings

def config_error(what: str, next_step: str) -> DeployError:
    return DeployError(what, state="nothing was run: the connection was not attempted", next_step=next_step,
                       kind=SETUP, code=ExitCode.CONFIG)


def read_ssh_config(path: str, system: bool = False) -> paramiko.SSHConfig:
    """One ssh config file with its Include lines followed (paramiko ignores them). A relative
    name is in ~/.ssh, or /etc/ssh for the system file, as ssh_config(5) says."""
    base = "/etc/ssh" if system else os.path.expanduser("~/.ssh")

    def read(pattern: str) -> list[str]:
        full = os.path.join(base, os.path.expanduser(pattern))        # an absolute name stays as it is
        return [_text_of(p) for p in sorted(glob.glob(full)) if os.path.isfile(p)]

    return paramiko.SSHConfig.from_text(ssh_cmd.expand_includes(_text_of(path), read))


def _text_of(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return fh.read()


def operator_ssh_config(config) -> paramiko.SSHConfig:
    """The operator's ssh config as fab loads it (the -S file, else ~/.ssh/config then
    /etc/ssh/ssh_config), read again with Include followed."""
    runtime = getattr(config, "_runtime_ssh_path", None) or config.ssh_config_path       # -S FILE
    if getattr(config, "_given_explicit_object", False):
        return config.base_ssh_config
    if runtime:
        files = [(runtime, False)]
    elif config.load_ssh_configs:
        files = [(getattr(config, "_user_ssh_path", "~/.ssh/config"), False),
                 (getattr(config, "_system_ssh_path", "/etc/ssh/ssh_config"), True)]
    else:
        return config.base_ssh_config          # given as an object (tests), or no files wanted
    merged = paramiko.SSHConfig()
    for path, system in files:
        path = os.path.expanduser(path)
        if os.path.isfile(path):
            merged._config += read_ssh_config(path, system)._config     # parse() of each file in turn, as fab does
    return merged


def stage_config(c, settings: Settings):
    """The fabric Config for this stage: the task's config (so --dry, -i, -e still apply) with the
    stage's ssh_config file and timeouts."""
    config = c.config.clone()
    # Dry-run and echo are applied by Session.run (reads still run under --dry); invoke's own
    # versions would hand empty output to every parser.
    config.run.dry = False
    config.run.echo = False
    # The stage's file replaces ~/.ssh/config, as `fab -S FILE` would; either is read again here,
    # with its Include lines followed.
    source = (f"the stage's ssh_config {settings.ssh_config} (SSH_CONFIG)" if settings.ssh_config else
              "your ssh config (~/.ssh/config and /etc/ssh/ssh_config, or the file given with -S)")
    try:
        config._set(base_ssh_config=read_ssh_config(settings.ssh_config) if settings.ssh_config else operator_ssh_config(c.config))
    except (paramiko.ConfigParseError, OSError, ValueError) as exc:
        raise config_error(f"{source} cannot be read: {exc}",
                           f"fix that line in {settings.ssh_config or 'it'} (every option needs a value: `HostName 10.0.0.5`), then re-run") from None
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
        cxn = Connection(spec.host, user=spec.user, port=spec.port, config=config)
        _chain_jumps_in_order(cxn, config)
        return cxn
    except (ValueError, KeyError) as exc:          # e.g. a ProxyJump hop's own options
        raise config_error(f"{source}: cannot use the options for {spec.host}: {exc}",
                           f"fix the options for {spec.host} in {source}, then re-run") from None


def _chain_jumps_in_order(cxn: Connection, config) -> None:
    """``ProxyJump j1,j2``: ssh connects to j1, from there to j2, from there to the target. Fabric
    builds the chain backwards (fabric#2203): it connected to j2 directly and reached j1 through
    it, so the bastion j1 was bypassed, or j2 could not be reached at all. Rebuilt in ssh's order."""
    jumps = [h.strip() for h in (cxn.ssh_config.get("proxyjump") or "").split(",") if h.strip()]
    if len(jumps) < 2 or not isinstance(cxn.gateway, Connection):
        return
    gateway = None
    for hop in jumps:
        gateway = Connection(hop, gateway=gateway, config=config.clone())
    cxn._set(gateway=gateway)


def host_strings(c, settings: Settings) -> list[str]:
    """-H hosts as fab gave them (one Connection per call), else the stage's HOSTS."""
    given = getattr(c, "cli_host", None)           # set by tasks/program.py for every -H host
    if isinstance(c, Connection) and given:
        return [given]
    if isinstance(c, Connection):
        user_default = c.ssh_config.get("user", c.config.user)
        port_default = int(c.ssh_config.get("port", c.config.port))
        user = c.user if c.user != user_default else None
        port = int(c.port) if int(c.port) != port_default else None
        return [ssh_cmd.format_host(c.original_host, user, port)]
    return list(settings.hosts)


def ssh_target(ssh_config: paramiko.SSHConfig, host: str) -> tuple[str, int] | None:
    """Where ``host`` (a -H value or a HOSTS entry) connects, as that ssh config resolves it:
    (HostName, port); lowercase, without a final dot. None if it cannot be resolved."""
    try:
        spec = ssh_cmd.parse_host(host)
        found = ssh_config.lookup(spec.host)
        port = spec.port or ssh_cmd.parse_port(str(found.get("port", ssh_cmd.SSH_PORT)))
    except (ssh_cmd.BadHostString, ValueError, paramiko.SSHException, OSError):
        return None
    return found.get("hostname", spec.host).lower().rstrip("."), port


def _stage_ssh_config(path: str | None, operator: paramiko.SSHConfig) -> paramiko.SSHConfig | None:
    if not path:
        return operator
    try:
        return read_ssh_config(path)
    except (paramiko.ConfigParseError, OSError, ValueError):
        return None             # that stage is not set up here: its hosts are compared by name only


def stages_reaching(target: tuple[str, int] | None, operator: paramiko.SSHConfig) -> dict[str, str]:
    """{stage: its HOSTS entry} for every stage with an entry that connects to ``target``, each
    entry resolved through that stage's SSH_CONFIG, else the operator's ssh config."""
    found: dict[str, str] = {}
    if target is None:
        return found
    for stage, (hosts, path) in stage_host_lists().items():
        cfg = _stage_ssh_config(path, operator)
        for entry in hosts:
            if cfg is not None and ssh_target(cfg, entry) == target:
                found.setdefault(stage, entry)
    return found


def stages_of_host(c: Connection, host: str, settings: Settings | None = None) -> tuple[tuple | None, dict[str, str]]:
    """Where a -H host connects, and {stage: HOSTS entry} for every stage that lists it by name or
    by where it connects. It is resolved through the ssh config its connection will use: the
    stage's SSH_CONFIG if that stage lists it, else the operator's."""
    try:
        operator = operator_ssh_config(c.config)
    except (paramiko.ConfigParseError, OSError, ValueError):
        operator = c.config.base_ssh_config
    via = operator
    if settings and settings.ssh_config and lists_host(settings.hosts, host):
        via = _stage_ssh_config(settings.ssh_config, operator) or operator
    target = ssh_target(via, host)
    owners = stages_reaching(target, operator)
    for stage, (hosts, _) in stage_host_lists().items():
        named = [h for h in hosts if lists_host([h], host)]
        if named:
            owners.setdefault(stage, named[0])
    return target, owners


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
    match = ssh_cmd.lookup(load_keys(sources), sources.name)
    verdict, entries = ssh_cmd.judge(match, exc.key.asbytes())
    if verdict == ssh_cmd.REVOKED_KEY:
        return RevokedHostKey(sources.name, exc.key, entries[0].source, entries[0].line)
    expected = ssh_cmd.KnownKey(0, "", sources.name, exc.expected_key.get_name(), exc.expected_key.asbytes(), sources.record_to)
    return ChangedHostKey(sources.name, exc.key, [k for k in match.keys if k.blob != exc.key.asbytes()] or [expected])


def changed_error(exc: ChangedHostKey) -> DeployError:
    known = "; ".join(f"{k.keytype} {ssh_cmd.fingerprint_blob(k.blob)}" + (f" ({k.source} line {k.line})" if k.line else "")
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
    cxn.transport.set_keepalive(settings.keepalive)
