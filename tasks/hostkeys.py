"""Host keys for the task layer: where one hop's keys are looked up (known_hosts files, the way ssh
finds them), the policies that judge the key a server shows, and recording a new key.

Fabric facts this module exists for (see ../shared/research/fabric-conventions.md):
- Fabric never loads known_hosts and accepts any key (fabric#1804, #2071). We read the known_hosts
  files ourselves, the ones ssh reads (KNOWN_HOSTS or UserKnownHostsFile, then
  GlobalKnownHostsFile; HostKeyAlias names the host), with our own parser (commands/known_hosts.py:
  paramiko's loader crashes on @cert-authority, @revoked and non-UTF-8 files). Nothing is pinned in
  paramiko, which would compare one key per key type by itself: our policy, on the target and
  every ProxyJump hop (tasks/ssh.py installs it), decides every key when the server shows it.
  @revoked in any file wins.
"""
from __future__ import annotations

import contextlib
import fcntl
import getpass
import os
import socket
import stat
import tempfile
from dataclasses import dataclass

import paramiko
from fabric import Connection

from commands import known_hosts as kh_cmd
from commands import ssh as ssh_cmd
from commands.shell import q
from config import Settings
from tasks import ui
from tasks.errors import SETUP, DeployError, ExitCode
from tasks.sshconfig import config_error


def fingerprint(key: paramiko.PKey) -> str:
    return kh_cmd.fingerprint_blob(key.asbytes())


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
    def __init__(self, hostname: str, key: paramiko.PKey, known: list[kh_cmd.KnownKey]):
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
        match = kh_cmd.lookup(load_keys(self.sources), name)
        verdict, entries = kh_cmd.judge(match, key.asbytes())
        if verdict == kh_cmd.REVOKED_KEY:
            raise RevokedHostKey(name, key, entries[0].source or self.known_hosts, entries[0].line)
        if verdict == kh_cmd.CHANGED:
            raise ChangedHostKey(name, key, entries)
        if verdict == kh_cmd.UNKNOWN:
            self.unknown(name, key, match)

    def unknown(self, name: str, key: paramiko.PKey, match: kh_cmd.HostMatch) -> None:
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

    def unknown(self, name: str, key: paramiko.PKey, match: kh_cmd.HostMatch) -> None:
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
            verdict, entries = kh_cmd.judge(kh_cmd.lookup(load_keys(sources), name), key.asbytes())
            if verdict == kh_cmd.CHANGED:
                raise ChangedHostKey(name, key, entries)
            if verdict == kh_cmd.REVOKED_KEY:
                raise RevokedHostKey(name, key, entries[0].source, entries[0].line)
            if verdict == kh_cmd.OK:
                return False
            append_known_host(path, kh_cmd.known_hosts_line(name, key.get_name(), key.get_base64()))
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
            fh.write(kh_cmd.appended(old, line))
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


def load_known_hosts(path: str) -> kh_cmd.KnownHosts | None:
    """One file; None if there is none (missing, or not a regular file: ssh reads /dev/null as
    empty, and a FIFO would block)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as fh:
            known = kh_cmd.parse_known_hosts(fh.read(), path)
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


def load_keys(sources: KeySources) -> kh_cmd.KnownHosts:
    """All of the hop's known_hosts files, read as one (a file that does not exist is skipped, as
    ssh skips it)."""
    return kh_cmd.merged([k for k in map(load_known_hosts, sources.files) if k is not None])


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
    return KeySources(alias or kh_cmd.known_hosts_name(hop.host, port), hop.host, port, tuple(user), tuple(glob))


def known_hosts_for(cxn: Connection, settings: Settings) -> str:
    """The file a new key of this host is recorded in (and the one named in hints)."""
    return key_sources(cxn, settings).record_to
