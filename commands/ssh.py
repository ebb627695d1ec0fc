"""SSH host strings, ssh_config values and known_hosts files, parsed purely (no paramiko here).

Why our own known_hosts parser: paramiko's ``HostKeys.load`` raises on a non-UTF-8 file and on
``@cert-authority``/``@revoked`` lines (a traceback, exit 1), and it would not enforce ``@revoked``
anyway. The format is OpenSSH's (sshd(8), "SSH_KNOWN_HOSTS FILE FORMAT"):

    [@marker] patterns keytype base64-key [comment]

``patterns`` is a comma-separated list of host names, ``[host]:port`` for a port other than 22,
``*``/``?`` wildcards and ``!negations``, or one hashed name ``|1|base64(salt)|base64(HMAC-SHA1)``.
A line this parser cannot use is skipped with a note; it never makes the whole file unreadable.
"""
from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import ipaddress
import re
import shlex
import struct
from dataclasses import dataclass, field

from commands.shell import q

SSH_PORT = 22


# ---------------------------------------------------------------------------------------------
# Host strings: [user@]host[:port], with IPv6 literals as [addr]:port

class BadHostString(ValueError):
    """A -H value or a HOSTS entry that is not [user@]host[:port]."""


@dataclass(frozen=True)
class HostSpec:
    host: str
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        return format_host(self.host, self.user, self.port)


_HOSTNAME = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*)$")
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def parse_port(text: str, what: str = "port") -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise BadHostString(f"{what} {text!r} is not a port number (1-65535)")
    return int(text)


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True


def parse_host(text: str) -> HostSpec:
    """``[user@]host[:port]``; an IPv6 address takes brackets to carry a port: ``[::1]:2222``.

    Fabric's own parser reads ``[::1]:1`` as a host named ``[::1]:1`` on port 22 and raises a bare
    ValueError on ``host:notaport``; this one says what is wrong instead."""
    raw = text
    if not text or text != text.strip() or any(ch.isspace() or ord(ch) < 32 for ch in text):
        raise BadHostString(f"host {raw!r} must be [user@]host[:port] without spaces")
    user = None
    if "@" in text:
        user, text = text.rsplit("@", 1)
        if not _USER.match(user):
            raise BadHostString(f"host {raw!r}: user {user!r} is not a valid user name")
    port = None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise BadHostString(f"host {raw!r}: '[' without a closing ']' (use [address]:port)")
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise BadHostString(f"host {raw!r}: expected ':port' after ']', got {rest!r}")
            port = parse_port(rest[1:], f"host {raw!r}: port")
        if not (_is_ipv6(host) or _HOSTNAME.match(host)):
            raise BadHostString(f"host {raw!r}: {host!r} is neither an IPv6 address nor a host name")
        return HostSpec(host, user, port)
    if text.count(":") > 1:
        if not _is_ipv6(text):
            raise BadHostString(f"host {raw!r} is not a valid IPv6 address; write [address]:port for a port")
        return HostSpec(text, user, None)
    if ":" in text:
        text, port_text = text.split(":", 1)
        port = parse_port(port_text, f"host {raw!r}: port")
    if not text or not _HOSTNAME.match(text):
        raise BadHostString(f"host {raw!r}: {text!r} is not a valid host name")
    return HostSpec(text, user, port)


def format_host(host: str, user: str | None = None, port: int | None = None) -> str:
    """The inverse of :func:`parse_host` (brackets around an IPv6 address that carries a port)."""
    text = f"[{host}]" if port is not None and ":" in host else host
    if port is not None:
        text += f":{port}"
    return f"{user}@{text}" if user else text


# ---------------------------------------------------------------------------------------------
# ssh_config values that fabric would otherwise int() with a traceback

def ssh_config_problems(lookup: dict) -> list[str]:
    """What is wrong with the ssh_config options that apply to one host (paramiko's lookup dict)."""
    problems = []
    port = lookup.get("port")
    if port is not None:
        try:
            parse_port(str(port), "Port")
        except BadHostString as exc:
            problems.append(str(exc))
    timeout = lookup.get("connecttimeout")
    if timeout is not None and not str(timeout).isdigit():
        problems.append(f"ConnectTimeout {timeout!r} is not a whole number of seconds")
    agent = lookup.get("forwardagent")
    if agent is not None and agent not in ("yes", "no"):
        problems.append(f"ForwardAgent {agent!r} must be yes or no")
    for hop in (lookup.get("proxyjump") or "").split(","):
        if hop.strip() and hop.strip() != "none":
            try:
                parse_host(hop.strip())
            except BadHostString as exc:
                problems.append(f"ProxyJump: {exc}")
    return problems


# ---------------------------------------------------------------------------------------------
# known_hosts

REVOKED = "revoked"
CERT_AUTHORITY = "cert-authority"


@dataclass(frozen=True)
class KnownKey:
    line: int                  # 1-based line number, for messages
    marker: str                # "", REVOKED or CERT_AUTHORITY
    patterns: str              # the host field as written (hashed or a pattern list)
    keytype: str
    blob: bytes                # the decoded key
    source: str = ""           # the file it was read from, for messages


@dataclass
class KnownHosts:
    keys: list[KnownKey] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)     # "line 3: bad base64" notes


@dataclass
class HostMatch:
    keys: list[KnownKey] = field(default_factory=list)         # plain entries (revoked ones removed)
    revoked: list[KnownKey] = field(default_factory=list)
    authorities: list[KnownKey] = field(default_factory=list)  # @cert-authority: not supported, ignored

    def is_revoked(self, blob: bytes) -> KnownKey | None:
        return next((k for k in self.revoked if k.blob == blob), None)


def known_hosts_name(host: str, port: int | None) -> str:
    """How OpenSSH (and paramiko) name a host in known_hosts: ``[host]:port`` unless port 22."""
    return host if port in (None, SSH_PORT) else f"[{host}]:{port}"


def _blob_type(blob: bytes) -> str | None:
    """The key type named inside the key blob (an SSH string: 4-byte length, then the name)."""
    if len(blob) < 4:
        return None
    (n,) = struct.unpack(">I", blob[:4])
    if n == 0 or len(blob) < 4 + n:
        return None
    try:
        return blob[4:4 + n].decode("ascii")
    except UnicodeDecodeError:
        return None


def _parse_line(number: int, raw: bytes, source: str = "") -> KnownKey | str | None:
    """One line: a KnownKey, a note (str) saying why it was skipped, or None (blank/comment)."""
    line = raw.strip()
    if not line or line.startswith(b"#"):
        return None
    fields = line.split()
    marker = ""
    if fields[0].startswith(b"@"):
        marker = fields.pop(0)[1:].decode("ascii", "replace")
        if marker not in (REVOKED, CERT_AUTHORITY):
            return f"line {number}: unknown marker @{marker}"
    if len(fields) < 3:
        return f"line {number}: expected 'hosts keytype key'"
    try:
        patterns = fields[0].decode("utf-8")
        keytype = fields[1].decode("ascii")
        b64 = fields[2].decode("ascii")
    except UnicodeDecodeError:
        return f"line {number}: not UTF-8 text"
    try:
        blob = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        return f"line {number}: the key is not valid base64"
    if _blob_type(blob) != keytype:
        return f"line {number}: the key does not hold a {keytype} key"
    return KnownKey(number, marker, patterns, keytype, blob, source)


def parse_known_hosts(data: bytes, source: str = "") -> KnownHosts:
    """Every usable line of a known_hosts file (bytes: the file need not be UTF-8)."""
    out = KnownHosts()
    for number, raw in enumerate(data.split(b"\n"), start=1):
        parsed = _parse_line(number, raw, source)
        if isinstance(parsed, KnownKey):
            out.keys.append(parsed)
        elif parsed:
            out.skipped.append(parsed)
    return out


def _hashed_matches(entry: str, name: str) -> bool:
    parts = entry.split("|")          # "", "1", salt, hash
    if len(parts) != 4 or parts[1] != "1":
        return False
    try:
        salt, digest = base64.b64decode(parts[2], validate=True), base64.b64decode(parts[3], validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), digest)


@functools.lru_cache(maxsize=4096)
def _wildcard(pattern: str) -> re.Pattern:
    # Only * and ? are special (fnmatch would also read the '[' of "[host]:port" as a class).
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern) + r"\Z")


def _pattern_matches(pattern: str, name: str) -> bool:
    # Most patterns are plain names: compiling a regular expression for each line made a lookup in
    # a 200,000-line file take 5 s (ssh: under 1 s).
    if "*" not in pattern and "?" not in pattern:
        return pattern == name
    return _wildcard(pattern).match(name) is not None


def host_matches(patterns: str, name: str) -> bool:
    """OpenSSH's rule: a negated pattern that matches excludes the line; else any pattern matches."""
    name = name.lower()          # ssh lowercases the host name before matching or hashing
    if patterns.startswith("|"):
        return _hashed_matches(patterns, name)
    hit = False
    for pattern in patterns.lower().split(","):
        negated = pattern.startswith("!")
        if _pattern_matches(pattern.lstrip("!"), name):
            if negated:
                return False
            hit = True
    return hit


def lookup(known: KnownHosts, name: str) -> HostMatch:
    """The entries for ``name`` (as :func:`known_hosts_name` spells it). A key that is also
    listed as @revoked is never among ``keys``."""
    match = HostMatch()
    for k in known.keys:
        if not host_matches(k.patterns, name):
            continue
        {"": match.keys, REVOKED: match.revoked, CERT_AUTHORITY: match.authorities}[k.marker].append(k)
    revoked = {k.blob for k in match.revoked}
    match.keys = [k for k in match.keys if k.blob not in revoked]
    return match


def merged(files: list[KnownHosts]) -> KnownHosts:
    """Several known_hosts files read as one, as ssh reads UserKnownHostsFile and
    GlobalKnownHostsFile: a key any of them lists is known, a key any of them revokes is revoked."""
    return KnownHosts([k for f in files for k in f.keys], [n for f in files for n in f.skipped])


# What paramiko's server key reports (``get_name()``) against what the known_hosts line says; an
# RSA key is negotiated under the rsa-sha2-* algorithm names.
_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}


def preferred_key_types(known_types: list[str], offered: list[str]) -> list[str]:
    """``offered`` (the client's host key algorithms, best first) with those of the known keys moved
    to the front, keeping their order: OpenSSH's order_hostkeyalgs(). Paramiko by itself moves only
    the type of the first known_hosts line to the front, so a stale key of another type listed first
    made the server show that key, and a valid host failed as CHANGED."""
    wanted = {alg for t in known_types for alg in _ALGORITHMS.get(t, (t,))}
    return [a for a in offered if a in wanted] + [a for a in offered if a not in wanted]


OK, REVOKED_KEY, CHANGED, UNKNOWN = "ok", "revoked", "changed", "unknown"


def judge(match: HostMatch, blob: bytes) -> tuple[str, list[KnownKey]]:
    """What an offered host key is, as ssh decides it: revoked anywhere wins; then known if ANY
    entry of this host holds it (a host may have several keys, even of one type: paramiko compared
    only one per type); then changed if the host has other keys; else unknown. Returns the verdict
    and the entries that explain it."""
    revoked = match.is_revoked(blob)
    if revoked:
        return REVOKED_KEY, [revoked]
    if any(k.blob == blob for k in match.keys):
        return OK, [k for k in match.keys if k.blob == blob]
    if match.keys:
        return CHANGED, list(match.keys)
    return UNKNOWN, []


def fingerprint_blob(blob: bytes) -> str:
    """``SHA256:...`` as ssh-keygen -l prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


# ---------------------------------------------------------------------------------------------
# Which known_hosts files: ssh_config's UserKnownHostsFile and GlobalKnownHostsFile

USER_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")             # ssh_config(5) defaults
GLOBAL_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")


class BadConfigValue(ValueError):
    """An ssh_config value this tool cannot use as ssh would."""


def file_list(value: str | list | None, default: tuple[str, ...]) -> list[str]:
    """The files of a UserKnownHostsFile/GlobalKnownHostsFile value: several, space-separated,
    quotes allowed; ``none`` means no file."""
    if value is None:
        return list(default)
    text = value if isinstance(value, str) else " ".join(value)
    try:
        files = shlex.split(text)
    except ValueError as exc:
        raise BadConfigValue(f"{text!r}: {exc}") from None
    return [] if files == ["none"] else files


def expand_tokens(path: str, tokens: dict[str, str]) -> str:
    """ssh_config(5) TOKENS in a file name (``%d`` home, ``%u`` local user, ``%h`` host, ``%p``
    port, ``%r`` remote user, ``%n`` host as given, ``%k`` host key alias, ``%l``/``%L`` local host
    name, ``%i`` uid, ``%%``), then a leading ``~``. Paramiko leaves them as they are, so
    ``%d/.ssh/known_hosts_prod`` was read (and written by --accept-new-host-key) as a relative path."""
    def one(m: re.Match) -> str:
        if m.group(1) not in tokens:
            raise BadConfigValue(f"{path!r}: unknown token %{m.group(1)}")
        return tokens[m.group(1)]
    out = re.sub(r"%(.?)", one, path)
    if out == "~" or out.startswith("~/"):
        out = tokens["d"] + out[1:]
    return out


_INCLUDE = re.compile(r"^\s*include(?:\s*=\s*|\s+)(.+?)\s*$", re.IGNORECASE)
_BLOCK = re.compile(r"^\s*(?:host|match)(?:\s*=\s*|\s+)", re.IGNORECASE)
MAX_INCLUDE_DEPTH = 16          # ssh's READCONF_MAX_DEPTH


def expand_includes(text: str, read, depth: int = 0) -> str:
    """ssh_config text with every ``Include`` replaced by the files it names; ``read(pattern)``
    returns their texts (glob order). Paramiko ignores Include, so every option of a host defined
    in an included file (HostName, ProxyJump, UserKnownHostsFile) was lost. As in ssh, an Include
    inside a Host block applies to that host, and the including block resumes after it."""
    out, block = [], "Host *"
    for line in text.splitlines():
        if _BLOCK.match(line):
            block = line.strip()
        m = _INCLUDE.match(line)
        if not m:
            out.append(line)
            continue
        if depth >= MAX_INCLUDE_DEPTH:
            raise BadConfigValue(f"Include nested more than {MAX_INCLUDE_DEPTH} deep (a file that includes itself?)")
        for pattern in shlex.split(m.group(1)):
            out += [expand_includes(t, read, depth + 1) for t in read(pattern)]
        out.append(block)
    return "\n".join(out)


def known_hosts_line(name: str, keytype: str, key_base64: str) -> str:
    return f"{name} {keytype} {key_base64}"


def appended(old: bytes, line: str) -> bytes:
    """The file's content with one line added: a missing final newline is supplied first, so the
    new entry never joins the last line (which made the next run fail)."""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    return old + line.encode("ascii") + b"\n"


# ---------------------------------------------------------------------------------------------
# Commands an operator runs to fix host keys (quoted: a name like [host]:2222 is a shell glob)

def remove_host_key(name: str, known_hosts: str) -> str:
    return f"ssh-keygen -R {q(name)} -f {q(known_hosts)}"


def scan_host_key(host: str, port: int, known_hosts: str) -> str:
    return f"ssh-keyscan -p {int(port)} {q(host)} >> {q(known_hosts)}"


def list_fingerprints(known_hosts: str) -> str:
    return f"ssh-keygen -lf {q(known_hosts)}"
