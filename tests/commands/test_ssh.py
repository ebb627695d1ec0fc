"""commands/ssh.py and commands/known_hosts.py: host strings, ssh_config values and known_hosts, parsed purely.

tests/fixtures/known_hosts-mixed is a real-format file: keys made with ssh-keygen (OpenSSH 9.2), two
lines hashed by ``ssh-keygen -H``, markers, a comment, a blank line, bad base64, a key of the wrong
type, a Latin-1 host name and comment, an unknown marker, and no final newline. The expected
matches below are what ``ssh-keygen -F NAME -f known_hosts-mixed`` reported for each name (minus
the lines this parser skips as unusable)."""
import base64
import os

import pytest

from commands import known_hosts, ssh

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "known_hosts-mixed")
KEY_A = base64.b64decode("AAAAC3NzaC1lZDI1NTE5AAAAIESLtSCHr5KdvmNGHIzlk8GRk7RhgPd/VmDiBZOwCSwO")
KEY_C = base64.b64decode("AAAAC3NzaC1lZDI1NTE5AAAAIKSgyF9Qwlbg8Mp7ieP2IUh+t+GVTZY6xGEfLeJoitbF")
KEY_E = base64.b64decode("AAAAC3NzaC1lZDI1NTE5AAAAIFI14iLe9LgxmqLrStk5trBYfaue6o1C2WxSZK0+0zhz")


@pytest.fixture(scope="module")
def known():
    with open(FIXTURE, "rb") as fh:
        return known_hosts.parse_known_hosts(fh.read())


def lines(entries):
    return [e.line for e in entries]


def test_known_hosts_with_markers_and_non_utf8_bytes_parses_line_by_line(known):
    """Issue 7 #13: paramiko's loader crashed on this file (markers, Latin-1 bytes); every usable
    line is kept and every other one is skipped with a note naming its line."""
    assert lines(known.keys) == [4, 5, 6, 7, 8, 9, 10, 11, 15, 18]
    assert known.skipped == [
        "line 12: the key is not valid base64",
        "line 13: the key does not hold a ecdsa-sha2-nistp256 key",
        "line 14: not UTF-8 text",
        "line 17: unknown marker @unknown-marker",
    ]
    assert [k.marker for k in known.keys if k.marker] == ["cert-authority", "revoked"]


@pytest.mark.parametrize("name, keys, revoked, authorities", [
    ("hashed.example.com", [4], [10], [9]),                 # |1|salt|hash entry
    ("[hashed.example.com]:2200", [5], [10], []),           # hashed [host]:port; *.example.com does not match it
    ("web1.example.com", [6], [10], [9]),                   # comma-separated list
    ("WEB1.EXAMPLE.COM", [6], [10], [9]),                   # ssh lowercases the name
    ("10.0.0.5", [6], [10], []),
    ("db.internal", [8], [10], []),                         # wildcard
    ("bad.internal", [], [10], []),                         # negation wins over the wildcard
    ("[127.0.0.1]:2222", [7], [10], []),
    ("127.0.0.1", [], [10], []),                            # port 22 is another name
    ("comment.example.com", [15], [10], [9]),               # Latin-1 comment after a good key
    ("last.example.com", [18], [10], [9]),                  # the line with no final newline
    ("revoked.example.com", [], [10], [9]),                 # listed, but the key is also @revoked
])
def test_lookup_matches_what_ssh_keygen_F_reports(known, name, keys, revoked, authorities):
    m = known_hosts.lookup(known, name)
    assert (lines(m.keys), lines(m.revoked), lines(m.authorities)) == (keys, revoked, authorities)


def test_revoked_key_is_found_by_its_blob(known):
    m = known_hosts.lookup(known, "revoked.example.com")
    assert m.is_revoked(KEY_E).line == 10 and m.is_revoked(KEY_C) is None
    assert known_hosts.lookup(known, "web1.example.com").keys[0].blob == KEY_C


def test_empty_and_garbage_files():
    assert known_hosts.parse_known_hosts(b"").keys == []
    junk = known_hosts.parse_known_hosts(b"\xff\xfe\x00garbage\n@revoked\nonly-two fields\n")
    assert junk.keys == [] and len(junk.skipped) == 3


def test_known_hosts_name_and_appended_line():
    assert known_hosts.known_hosts_name("prod", 22) == "prod"
    assert known_hosts.known_hosts_name("prod", None) == "prod"
    assert known_hosts.known_hosts_name("127.0.0.1", 2222) == "[127.0.0.1]:2222"
    assert known_hosts.known_hosts_name("::1", 1) == "[::1]:1"
    line = known_hosts.known_hosts_line("[h]:2222", "ssh-ed25519", "AAAA")
    assert line == "[h]:2222 ssh-ed25519 AAAA"


def test_accept_new_append_never_joins_a_last_line_without_newline():
    """Issue 7 #13: appending to a file without a final newline corrupted both entries."""
    assert known_hosts.appended(b"a ssh-ed25519 AAAA", "b ssh-ed25519 BBBB") == b"a ssh-ed25519 AAAA\nb ssh-ed25519 BBBB\n"
    assert known_hosts.appended(b"a ssh-ed25519 AAAA\n", "b ssh-ed25519 BBBB") == b"a ssh-ed25519 AAAA\nb ssh-ed25519 BBBB\n"
    assert known_hosts.appended(b"", "b ssh-ed25519 BBBB") == b"b ssh-ed25519 BBBB\n"


def test_changed_key_on_another_port_suggests_removing_the_bracketed_name():
    """Issue 7 #13: `ssh-keygen -R host` does not remove `[host]:2222`; the name is quoted (a glob)."""
    assert ssh.remove_host_key("[127.0.0.1]:2222", "/k h/known_hosts") == "ssh-keygen -R '[127.0.0.1]:2222' -f '/k h/known_hosts'"
    assert ssh.remove_host_key("prod.example.com", "/root/.ssh/known_hosts") == "ssh-keygen -R prod.example.com -f /root/.ssh/known_hosts"
    assert ssh.scan_host_key("::1", 1, "/kh") == "ssh-keyscan -p 1 ::1 >> /kh"
    assert ssh.list_fingerprints("/kh") == "ssh-keygen -lf /kh"


@pytest.mark.parametrize("text, spec", [
    ("prod", ssh.HostSpec("prod")),
    ("deploy@prod.example.com", ssh.HostSpec("prod.example.com", "deploy")),
    ("deploy@10.0.0.5:2222", ssh.HostSpec("10.0.0.5", "deploy", 2222)),
    ("[::1]:1", ssh.HostSpec("::1", None, 1)),                          # issue 7 #16: not host "[::1]:1"
    ("deploy@[2001:db8::5]:2222", ssh.HostSpec("2001:db8::5", "deploy", 2222)),
    ("[::1]", ssh.HostSpec("::1")),
    ("::1", ssh.HostSpec("::1")),
    ("[bastion.example.com]:2200", ssh.HostSpec("bastion.example.com", None, 2200)),
])
def test_parse_host_including_bracketed_ipv6(text, spec):
    assert ssh.parse_host(text) == spec
    assert ssh.parse_host(str(spec)) == spec            # format_host round-trips


@pytest.mark.parametrize("text, message", [
    ("user@host:notaport", "port 'notaport' is not a port number"),      # issue 7 #16
    ("host:0", "port '0' is not a port number"),
    ("host:70000", "port '70000' is not a port number"),
    ("host:", "port '' is not a port number"),
    ("[::1]:x", "port 'x' is not a port number"),
    ("[::1", "without a closing ']'"),
    ("[::1]2", "expected ':port' after ']'"),
    ("1:2:3:4:5:6:7:8:9", "not a valid IPv6 address"),
    ("@host", "user '' is not a valid user name"),
    ("a b", "without spaces"),
    ("", "without spaces"),
    ("-oProxyCommand=x", "is not a valid host name"),
])
def test_parse_host_refuses_malformed_hosts_with_a_reason(text, message):
    with pytest.raises(ssh.BadHostString, match=message.replace("[", r"\[").replace("]", r"\]")):
        ssh.parse_host(text)


def test_ssh_config_problems():
    """Issue 7 #16: fabric int()s these with a traceback."""
    assert ssh.ssh_config_problems({"hostname": "x", "port": "2222"}) == []
    assert ssh.ssh_config_problems({"port": "abc"}) == ["Port 'abc' is not a port number (1-65535)"]
    assert ssh.ssh_config_problems({"connecttimeout": "soon", "forwardagent": "maybe", "proxyjump": "u@j:x"}) == [
        "ConnectTimeout 'soon' is not a whole number of seconds",
        "ForwardAgent 'maybe' must be yes or no",
        "ProxyJump: host 'u@j:x': port 'x' is not a port number (1-65535)",
    ]


# ---- known_hosts read as ssh reads it (several files, several keys, key type order, tokens) ----

def test_a_host_with_two_keys_of_one_type_accepts_either_and_revoked_wins():
    """ssh accepts a key if ANY line of the host holds it; paramiko compared one key per type."""
    two = known_hosts.parse_known_hosts(
        b"web ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIESLtSCHr5KdvmNGHIzlk8GRk7RhgPd/VmDiBZOwCSwO\n"
        b"web ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKSgyF9Qwlbg8Mp7ieP2IUh+t+GVTZY6xGEfLeJoitbF\n", "/kh")
    m = known_hosts.lookup(two, "web")
    assert known_hosts.judge(m, KEY_A)[0] == known_hosts.judge(m, KEY_C)[0] == known_hosts.OK
    verdict, entries = known_hosts.judge(m, KEY_E)
    assert verdict == known_hosts.CHANGED and [(e.source, e.line) for e in entries] == [("/kh", 1), ("/kh", 2)]
    assert known_hosts.judge(known_hosts.lookup(two, "other"), KEY_E) == (known_hosts.UNKNOWN, [])
    revoking = known_hosts.parse_known_hosts(
        b"@revoked * ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIESLtSCHr5KdvmNGHIzlk8GRk7RhgPd/VmDiBZOwCSwO\n", "/etc/ssh/ssh_known_hosts")
    verdict, entries = known_hosts.judge(known_hosts.lookup(known_hosts.merged([two, revoking]), "web"), KEY_A)
    assert verdict == known_hosts.REVOKED_KEY and (entries[0].source, entries[0].line) == ("/etc/ssh/ssh_known_hosts", 1)


def test_known_key_types_go_first_in_the_host_key_algorithms_like_openssh():
    offered = ["ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
    assert known_hosts.preferred_key_types(["ssh-rsa", "ssh-ed25519"], offered) == [                # known ones in default order
        "ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa", "ecdsa-sha2-nistp256"]
    assert known_hosts.preferred_key_types(["ssh-rsa"], offered) == [
        "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa", "ssh-ed25519", "ecdsa-sha2-nistp256"]
    assert known_hosts.preferred_key_types([], offered) == offered


@pytest.mark.parametrize("value, files", [
    (None, ["~/.ssh/known_hosts", "~/.ssh/known_hosts2"]),
    ("/a /b", ["/a", "/b"]),
    ('"/with space/kh" /b', ["/with space/kh", "/b"]),
    ("none", []),
])
def test_known_hosts_file_lists(value, files):
    assert ssh.file_list(value, ssh.USER_KNOWN_HOSTS) == files


def test_known_hosts_paths_expand_ssh_config_tokens():
    tokens = {"%": "%", "d": "/home/op", "h": "10.0.0.5", "p": "2222", "u": "op"}
    assert ssh.expand_tokens("%d/.ssh/kh_%h_%p", tokens) == "/home/op/.ssh/kh_10.0.0.5_2222"
    assert ssh.expand_tokens("~/.ssh/known_hosts", tokens) == "/home/op/.ssh/known_hosts"
    assert ssh.expand_tokens("/x/100%%", tokens) == "/x/100%"
    for bad in ("/x/%Z", "/x/%"):
        with pytest.raises(ssh.BadConfigValue, match="unknown token"):
            ssh.expand_tokens(bad, tokens)


# ---- ssh_config Include (paramiko ignores it: every option in an included file was lost) ----

def test_include_is_replaced_by_the_files_it_names_and_the_including_block_resumes():
    files = {"conf.d/*.conf": ["Host prod\n  HostName 10.0.0.5\n  ProxyJump bastion\n", "Host *\n  User deploy\n"],
             "inner": ["Port 2222\n"]}
    text = ("Include conf.d/*.conf\nServerAliveInterval 30\n"
            "Host staging\n  Include inner\n  HostName 10.0.0.6\n")
    assert ssh.expand_includes(text, lambda pattern: files.get(pattern, [])).splitlines() == [
        "Host prod", "  HostName 10.0.0.5", "  ProxyJump bastion",
        "Host *", "  User deploy",
        "Host *",                       # back in the including file's global block
        "ServerAliveInterval 30",
        "Host staging",
        "Port 2222",                    # included inside Host staging: applies to it
        "Host staging",
        "  HostName 10.0.0.6",
    ]


def test_include_that_includes_itself_is_refused():
    with pytest.raises(ssh.BadConfigValue, match="Include nested more than 16 deep"):
        ssh.expand_includes("Include self\n", lambda pattern: ["Include self\n"])
