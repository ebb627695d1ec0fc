"""SSH host strings and ssh_config values, parsed purely (no paramiko here), and the commands an
operator runs to fix host keys. known_hosts files themselves: commands/known_hosts.py.
"""
from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass

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


# ---------------------------------------------------------------------------------------------
# Commands an operator runs to fix host keys (quoted: a name like [host]:2222 is a shell glob)

def remove_host_key(name: str, known_hosts: str) -> str:
    return f"ssh-keygen -R {q(name)} -f {q(known_hosts)}"


def scan_host_key(host: str, port: int, known_hosts: str) -> str:
    return f"ssh-keyscan -p {int(port)} {q(host)} >> {q(known_hosts)}"


def list_fingerprints(known_hosts: str) -> str:
    return f"ssh-keygen -lf {q(known_hosts)}"
