"""known_hosts files, parsed and matched purely (no paramiko here): which keys a host has, and
what an offered key is (known, changed, revoked, unknown), as ssh decides it.

Why our own parser: paramiko's ``HostKeys.load`` raises on a non-UTF-8 file and on
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
import re
import struct
from dataclasses import dataclass, field

from commands.ssh import SSH_PORT

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


def known_hosts_line(name: str, keytype: str, key_base64: str) -> str:
    return f"{name} {keytype} {key_base64}"


def appended(old: bytes, line: str) -> bytes:
    """The file's content with one line added: a missing final newline is supplied first, so the
    new entry never joins the last line (which made the next run fail)."""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    return old + line.encode("ascii") + b"\n"
