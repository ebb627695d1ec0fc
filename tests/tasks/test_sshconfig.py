"""The ssh config as the task layer reads it (tasks/sshconfig.py), without a server."""
import dataclasses
import threading
import time

import paramiko

from tasks.conftest import hermetic_config
from tasks.ssh import hops
from tasks.sshconfig import QuickRemote, new_connection, parse_host, ssh_target, stage_config


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


class Channel:
    """What QuickRemote.wait reads of a paramiko channel: its exit status event (set by paramiko's
    transport thread when the status arrives), and how often the runner asked."""

    def __init__(self):
        self.status_event = threading.Event()
        self.asked = 0

    def exit_status_ready(self):
        self.asked += 1
        return self.status_event.is_set()


def test_the_remote_runner_on_every_hop_is_woken_by_the_exit_status_not_a_poll(tmp_path, settings):
    """invoke's Runner.wait sleeps input_sleep (10 ms by default) between polls for the exit status:
    ~7 ms of every remote command's 12 ms on the staging host (bench/ssh_commands.py); polling every
    1 ms instead burnt CPU. The runner fabric builds for the stage's connection, and for each
    ProxyJump hop, waits on the channel's status event: a command that runs 0.3 s is asked about a
    handful of times (a 1 ms poll asks ~300 times), and the wait ends when the status comes."""
    cxn = connection_for(tmp_path, settings, "Host target\n  ProxyJump j1\n", "target")
    for hop in hops(cxn):
        assert hop.config.runners.remote is QuickRemote
        runner = hop.config.runners.remote(hop)
        runner.channel = Channel()
        runner.threads = {}
        finisher = threading.Timer(0.3, runner.channel.status_event.set)
        finisher.start()
        runner.wait()
        assert runner.channel.status_event.is_set()
        assert runner.channel.asked <= 0.3 / QuickRemote.DEAD_THREADS_CHECK + 3
        finisher.join()


def test_the_remote_runner_stops_waiting_when_an_io_thread_died(tmp_path, settings):
    """invoke's other reason to stop waiting: an IO thread that died (its error is raised then)."""
    cxn = connection_for(tmp_path, settings, "Host target\n", "target")
    runner = cxn.config.runners.remote(cxn)
    runner.channel = Channel()

    class Dead:
        is_dead = True                              # invoke's ExceptionHandlingThread: a property
    runner.threads = {"stdout": Dead()}
    runner.wait()                                   # returns although no exit status came
    assert not runner.channel.status_event.is_set()


class ClosingChannel(Channel):
    """paramiko's close as the timer's kill meets it: status_event set at once, the close message
    sent after (the timer thread is still alive when the waiting runner wakes)."""

    def close(self):
        self.status_event.set()
        time.sleep(0.2)


def test_a_command_ended_by_invokes_timer_is_a_timeout_although_the_timer_still_runs(tmp_path, settings):
    """invoke's timer kills the command at the timeout (Remote.kill closes the channel); the wait
    ends as soon as paramiko sets the status event, before the timer thread is done. invoke's own
    test (the timer no longer alive) said "no timeout" then: the result was exit -1, reported as
    killed by a signal on the host. The runner remembers that its timer killed it."""
    cxn = connection_for(tmp_path, settings, "Host target\n", "target")
    runner = cxn.config.runners.remote(cxn)
    runner.channel = ClosingChannel()
    runner.threads = {}
    runner._timer = threading.Timer(0.05, runner.kill)
    runner._timer.start()
    runner.wait()
    assert runner._timer.is_alive()                 # the race: the timer is still closing the channel
    assert runner.timed_out
    runner._timer.join()


def test_a_kill_from_elsewhere_is_not_a_timeout(tmp_path, settings):
    cxn = connection_for(tmp_path, settings, "Host target\n", "target")
    runner = cxn.config.runners.remote(cxn)
    runner.channel = Channel()
    runner.channel.close = runner.channel.status_event.set
    runner._timer = threading.Timer(60, runner.kill)
    runner._timer.start()
    runner.kill()
    runner._timer.cancel()
    assert not runner.timed_out
