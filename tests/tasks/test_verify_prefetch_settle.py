"""verify begins a deploy's reads of what serves with its smoke checks; a failed smoke check
stops the ones still running (Session.settle_prefetches kills this run's commands on the host).
A read stopped that way says nothing about the host: the end must read again, not record it."""
import os
import re
import signal
import threading

from invoke import Result

from config import load_settings
from tasks.deploy import deploy
from tasks.session import Session
from tests.tasks.scripted import records, run_task
from tests.tasks.scripted_host import ScriptedHost


def test_a_read_of_what_serves_killed_by_a_failed_smoke_check_is_not_what_the_end_records(mocker, capsys):
    """AUTO_ROLLBACK=false: the new images stay. The health URL answers (slowly); a smoke URL
    answers 500 at once. The read of what serves, killed when the smoke failure settles it, must
    not be recorded as 'the new images, NOT healthy, no version'."""
    mocker.patch.dict(os.environ, {"DEPLOY_TESTED_ON_STAGE": "", "DEPLOY_AUTO_ROLLBACK": "false"})
    st = load_settings("production", {"DEPLOY_AUTO_ROLLBACK": "false"})
    host = ScriptedHost(st.services, st.dependency_services)
    switched, killed = threading.Event(), threading.Event()

    def probe_stop(command):
        switched.set()               # the switch has ended: verify comes next
        return Result(stdout="", exited=0)

    def health(command):
        if switched.is_set() and not killed.is_set():
            killed.wait(10)          # slow: still running when the smoke check fails, then killed
            return Result(stdout="", stderr="", exited=143)
        return host.curl(command)

    def pkill(command):
        killed.set()
        return Result(exited=0)

    smoke_fails = (r"^out=\$\(curl .*" + re.escape(st.smoke_urls[0]), lambda c: Result(stdout="oops\n@@status 500 0.004", exited=0))
    code, out, err, remote = run_task(mocker, capsys, deploy, [
        (r"^touch /tmp/\S+-probe$", probe_stop), (r"^pkill ", pkill), smoke_fails,
        (r"^out=\$\(curl .*" + re.escape(st.health_url), health), *host.script()])
    assert code != 0 and killed.is_set(), err
    after = [r for r in records(remote) if r.get("event") == "images_after"]
    assert after, records(remote)
    assert after[-1]["healthy"] is True and after[-1]["version"] == "v2", after[-1]


def test_ctrl_c_during_the_log_scan_settles_the_read_of_what_serves_before_the_restore(mocker, capsys):
    """Ctrl-C while verify waits for the log tails (the smoke checks passed): the read of what
    serves, begun with them, must end before the abort's restore puts the previous images back;
    a late answer must not leave 'the new images' as what the aborted run leaves."""
    mocker.patch.dict(os.environ, {"DEPLOY_TESTED_ON_STAGE": ""})
    st = load_settings("production", {})
    host = ScriptedHost(st.services, st.dependency_services)
    switched, killed, waiting, restore_asked = (threading.Event() for _ in range(4))
    original, late = Session.fetched, []

    def fetched(self, key, fn):
        if key == "verify: log tails":
            waiting.set()
        return original(self, key, fn)
    mocker.patch.object(Session, "fetched", fetched)

    def probe_stop(command):
        switched.set()
        return Result(stdout="", exited=0)

    def logs(command):
        if waiting.wait(10):
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)      # Ctrl-C while verify waits
            killed.wait(10)
        return host.docker_logs(command)

    def health(command):
        if not switched.is_set():
            return host.curl(command)
        if late:
            restore_asked.set()      # after the verify's read: the restore's health wait
            return host.curl(command)
        late.append(command)         # verify's read of what serves
        killed.wait(10)
        restore_asked.wait(1)        # a late answer of the killed read (in flight while the restore runs)
        return Result(stdout="", stderr="", exited=143)

    def pkill(command):
        killed.set()
        return Result(exited=0)
    code, out, err, remote = run_task(mocker, capsys, deploy, [
        (r"^touch /tmp/\S+-probe$", probe_stop), (r"^pkill ", pkill),
        (r"^echo @@logs-\S+ [0-9a-f]+; docker logs ", logs),
        (r"^out=\$\(curl .*" + re.escape(st.health_url), health), *host.script()])
    assert killed.is_set() and "aborted after the services were switched: restoring" in out, out + err
    after = [r for r in records(remote) if r.get("event") == "images_after"]
    assert after, records(remote)
    assert after[-1]["images"]["backend"]["id"] == host.tags[host.ref["backend"]] != host.v2, after[-1]
    assert after[-1]["healthy"] is True and after[-1]["version"] == "v1", after[-1]
