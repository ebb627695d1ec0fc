"""The ssh config as the task layer reads it (tasks/sshconfig.py), without a server."""
import dataclasses

import paramiko

from tasks.conftest import hermetic_config
from tasks.ssh import hops
from tasks.sshconfig import new_connection, parse_host, ssh_target, stage_config


class Ctx:
    config = hermetic_config()


def connection_for(tmp_path, settings, text: str, host: str):
    path = tmp_path / "ssh_config"
    path.write_text(text)
    st = dataclasses.replace(settings, ssh_config=str(path))
    return new_connection(parse_host(host), stage_config(Ctx(), st), st)


def test_proxyjump_with_two_hops_is_chained_in_ssh_order_first_hop_outermost(tmp_path, settings):
    """``ProxyJump j1,j2``: ssh connects to j1, from j1 to j2, from j2 to the target. Fabric chained
    it backwards (fabric#2203): the target's gateway was j1, reached through j2, so the bastion j1
    was bypassed. Here the target's gateway is j2, and j2's is j1."""
    cxn = connection_for(tmp_path, settings, "Host target\n  HostName 10.0.0.9\n  ProxyJump j1,j2\n", "target")
    assert [(h.original_host, h.host) for h in hops(cxn)] == [("target", "10.0.0.9"), ("j2", "j2"), ("j1", "j1")]
    assert hops(cxn)[-1].gateway is None            # j1 is reached directly


def test_proxyjump_with_one_hop_is_fabrics_own_chain(tmp_path, settings):
    cxn = connection_for(tmp_path, settings, "Host target\n  ProxyJump bastion\n", "target")
    assert [h.host for h in hops(cxn)] == ["target", "bastion"]


def test_where_a_host_connects_is_read_through_the_ssh_config():
    cfg = paramiko.SSHConfig.from_text("Host prod\n  HostName Prod.Example.COM.\n  Port 2200\n")
    assert ssh_target(cfg, "prod") == ("prod.example.com", 2200)            # lowercase, no final dot
    assert ssh_target(cfg, "deploy@prod:2222") == ("prod.example.com", 2222)   # the host string's port wins
    assert ssh_target(cfg, "other") == ("other", 22)
    assert ssh_target(cfg, "bad host") is None                               # not a host string: unresolvable
