"""Reads and the pull begun early (issue 9, target 1): Session.prefetch starts a read a later step
needs in its own thread; the step asks for it with Session.fetched and reads again, in place, if it
failed. A deploy begins the checklist's database revision read with the run and its pull as soon as the
checklist has fetched the incoming release, unless a compose file changes there; a checklist that
blocks leaves no pull running on the host. Nothing is timed: "at once" is a barrier."""
import itertools
import os
import re
import threading

from invoke import Result

from commands import compose as compose_cmd
from config import load_settings
from tasks.deploy import deploy
from tasks.session import Session
from tests.tasks.scripted import run_task
from tests.tasks.scripted_host import NEW, ScriptedHost


def session(settings, mocker, answer):
    cxn = mocker.Mock()
    cxn.run.side_effect = answer
    return Session(settings, "h", cxn)


def test_a_prefetched_read_runs_beside_the_caller_and_its_result_is_fetched(settings, mocker):
    barrier = threading.Barrier(2, timeout=30)       # the read waits for the main thread's own command

    def answer(command, **kw):
        barrier.wait()
        return Result(stdout=command.split("'")[1] + "\n", exited=0)
    s = session(settings, mocker, answer)
    s.prefetch("k", lambda: s.run("echo early").stdout.split()[-1])
    assert s.run("echo main").stdout.split()[-1] == "main"
    assert s.fetched("k", lambda: "read again") == "early"
    assert s.fetched("k", lambda: "read again") == "read again"      # fetched once


def test_a_failed_prefetch_is_read_again_in_place(settings, mocker):
    calls = []

    def answer(command, **kw):
        calls.append(command)
        return Result(stdout="", stderr="no", exited=1)
    s = session(settings, mocker, answer)
    s.prefetch("k", lambda: s.run("early read"))
    assert s.fetched("k", lambda: "again") == "again"
    assert len(calls) == 1


def test_without_a_background_executor_a_prefetch_runs_at_once_in_this_thread(settings, mocker):
    seen = []
    s = session(settings, mocker, lambda c, **kw: Result(stdout="", exited=0))
    s.executor.background = False           # fab plan: in order, where it starts
    s.prefetch("k", lambda: seen.append(threading.current_thread()) or "done")
    assert seen == [threading.main_thread()] and s.fetched("k", lambda: "again") == "done"


def test_a_bug_in_a_prefetch_is_not_hidden(settings, mocker):
    s = session(settings, mocker, lambda c, **kw: Result(stdout="", exited=0))
    s.prefetch("k", lambda: 1 / 0)
    try:
        s.fetched("k", lambda: "again")
    except ZeroDivisionError:
        return
    raise AssertionError("a ZeroDivisionError in a prefetch must reach the step")


# ---- the deploy's early pull, on the scripted staging-like host --------------------------------

def deploy_on(mocker, capsys, host, extra=()):
    """A production deploy without the test-stage question (that host is not scripted here)."""
    mocker.patch.dict(os.environ, {"DEPLOY_TESTED_ON_STAGE": ""})
    code, out, err, remote = run_task(mocker, capsys, deploy, [*extra, *host.script()])
    return code, out, err, remote.commands


def pulls_and_merge(commands):
    return [i for i, c in enumerate(commands) if c.startswith("cd ") and " pull --quiet " in c], \
        next(i for i, c in enumerate(commands) if " merge --ff-only " in c)


def test_the_pull_begins_during_the_checklist_when_no_compose_file_changes(mocker, capsys):
    st = load_settings("production", {})
    code, out, err, commands = deploy_on(mocker, capsys, ScriptedHost(st.services, st.dependency_services),
                                         [(r" diff --quiet ", Result(stdout=NEW + "\n", exited=0))])
    assert code == 0, err
    pulls, merge = pulls_and_merge(commands)
    assert len(pulls) == 1 and pulls[0] < merge                      # once, before `git pull`
    assert [c for c in commands if " diff --quiet " in c] == [
        "c=$(git -C /app/ai-doc-qa rev-parse --verify --quiet 'origin/main^{commit}') && echo \"$c\" && "
        "git -C /app/ai-doc-qa diff --quiet HEAD \"$c\" -- '*.yml' '*.yaml' .env"]


def test_a_changed_compose_file_waits_for_the_pull_step(mocker, capsys):
    st = load_settings("production", {})
    code, out, err, commands = deploy_on(mocker, capsys, ScriptedHost(st.services, st.dependency_services),
                                         [(r" diff --quiet ", Result(stdout=NEW + "\n", exited=1))])
    assert code == 0, err
    pulls, merge = pulls_and_merge(commands)
    assert len(pulls) == 1 and pulls[0] > merge                      # after `git pull`: the new compose file's images


def test_an_early_pull_that_fails_is_pulled_again_and_reported_by_the_pull_step(mocker, capsys):
    st = load_settings("production", {})
    failing = itertools.repeat(Result(stdout="", stderr="toomanyrequests: rate limit\n", exited=1))
    code, out, err, commands = deploy_on(mocker, capsys, ScriptedHost(st.services, st.dependency_services), [
        (r" diff --quiet ", Result(stdout=NEW + "\n", exited=0)), (r" pull --quiet ", lambda c: next(failing))])
    pulls, merge = pulls_and_merge(commands)
    assert len(pulls) == 2 and pulls[0] < merge and pulls[1] > merge
    assert code != 0 and "FAILED at pull" in err and "toomanyrequests" in err
    assert not [c for c in commands if " up -d" in c and "postgres" not in c]


def test_a_blocking_checklist_stops_a_pull_still_running_and_says_images_may_be_pulled(mocker, capsys, monkeypatch):
    monkeypatch.setenv("DEPLOY_CHECKLIST_BLOCKING", "monitoring")
    monkeypatch.setenv("DEPLOY_MONITORING_URL", "")
    st = load_settings("production", {})
    release = threading.Event()
    killed = []

    def slow_pull(command):
        release.wait(30)                                            # until the run stops it
        return Result(stdout="", stderr="", exited=143)

    def pkill(command):
        killed.append(command)
        release.set()
        return Result(exited=0)
    code, out, err, commands = deploy_on(mocker, capsys, ScriptedHost(st.services, st.dependency_services), [
        (r" diff --quiet ", Result(stdout=NEW + "\n", exited=0)), (r" pull --quiet ", slow_pull), (r"^pkill ", pkill)])
    assert code == 9, err
    assert killed and release.is_set()
    assert "the new images may have been pulled (nothing that runs uses them)" in " ".join(err.split())
    released = [i for i, c in enumerate(commands) if "echo released" in c]
    assert released and released[-1] > commands.index(next(c for c in commands if c.startswith("pkill ")))


def test_the_images_a_deploy_leaves_are_read_beside_the_log_scan_not_again_at_the_end(mocker, capsys):
    st = load_settings("production", {})
    code, out, err, commands = deploy_on(mocker, capsys, ScriptedHost(st.services, st.dependency_services))
    assert code == 0, err
    image_reads = [i for i, c in enumerate(commands) if c.startswith("docker image inspect ")]
    proofs = [i for i, c in enumerate(commands) if c.endswith("touch -- /app/ai-doc-qa/.deploy/lock/heartbeat )")]
    assert image_reads[-1] < proofs[-1]          # the last proof of the lock is before the end's record
    assert '"event":"images_after"' in next(c for c in reversed(commands) if "images_after" in c)


def test_a_deploy_fetches_once_and_merges_what_its_checklist_checked(mocker, capsys):
    """A second fetch in prepare could bring commits (migrations) the checklist never saw."""
    st = load_settings("production", {})
    code, out, err, commands = deploy_on(mocker, capsys, ScriptedHost(st.services, st.dependency_services))
    assert code == 0, err
    assert len([c for c in commands if " fetch --quiet " in c]) == 1
    assert "git: merging origin/main as this run's checklist fetched and checked it" in out


def test_early_pull_also_asks_about_the_configured_compose_file_and_the_env_beside_it(mocker, capsys, monkeypatch):
    """COMPOSE_FILE may have any name and live in a subdirectory; Compose then reads the .env of
    that directory (its project directory). A change to either at the incoming release names other
    images: the pull must wait for `git pull`, so the diff must cover both."""
    monkeypatch.setenv("DEPLOY_COMPOSE_FILE", "deploy/stack.compose")
    st = load_settings("production", {})
    code, out, err, commands = deploy_on(mocker, capsys, ScriptedHost(st.services, st.dependency_services),
                                         [(r" diff --quiet ", Result(stdout=NEW + "\n", exited=0))])
    [diff] = [c for c in commands if " diff --quiet " in c]
    assert diff.endswith(" -- '*.yml' '*.yaml' .env deploy/stack.compose deploy/.env"), diff


def test_a_release_pushed_between_the_checklist_and_prepare_is_pulled_again(mocker, capsys):
    """The early pull compared HEAD with the commit the checklist fetched; prepare fetches again
    and may fast-forward to a newer one (pushed meanwhile) whose compose file names other images.
    The pull step must then pull for the commit it deployed, before migrate: otherwise `up` pulls
    them (after the database changed) or runs images the new compose file does not name."""
    from tests.tasks.scripted_host import OLD
    st = load_settings("production", {})
    checked = OLD[:7] + "3" * 33                    # what origin/main was when the checklist fetched
    code, out, err, commands = deploy_on(mocker, capsys, ScriptedHost(st.services, st.dependency_services), [
        (r" diff --quiet ", Result(stdout=checked + "\n", exited=0))])
    assert code == 0, err
    pulls, merge = pulls_and_merge(commands)
    assert len(pulls) == 2 and pulls[0] < merge < pulls[1], (pulls, merge)
    assert NEW != checked


def test_the_health_answer_that_made_the_backend_ready_is_not_asked_again(mocker, capsys):
    """Docker still says `starting` while the new backend's health URL answers: that answer (and
    the version it reports) ends the wait; the switch neither asks the URL again nor inspects the
    images (verify records them, digests and all, beside the log scan)."""
    st = load_settings("production", {})
    code, out, err, commands = deploy_on(mocker, capsys, ScriptedHost(st.services, st.dependency_services, starting_after_up=True))
    assert code == 0, err
    up = next(i for i, c in enumerate(commands) if c.endswith(" up -d"))
    switched = next(i for i, c in enumerate(commands) if i > up and re.match(r"^touch /tmp/\S+-probe$", c))   # the switch ends
    between = commands[up:switched]
    assert sum(c.startswith("out=$(curl ") and st.health_url in c for c in between) == 1
    assert not any(c.startswith("docker image inspect ") for c in between)
    assert "reports version v2" in out


def test_the_migration_asks_docker_nothing_more_whether_the_backend_runs_and_where_to_exec(mocker, capsys):
    """The database-ready poll's inspect, just before, read the backend too: one inspect from the
    dependencies' `up` to the migration."""
    st = load_settings("production", {})
    code, out, err, commands = deploy_on(mocker, capsys, ScriptedHost(st.services, st.dependency_services))
    assert code == 0, err
    deps_up = next(i for i, c in enumerate(commands) if c.endswith(" up -d -- postgres redis"))
    ready = next(i for i, c in enumerate(commands) if "pg_isready" in c)
    migrate = next(i for i, c in enumerate(commands) if "py=$(command -v python3" in c and "@@upgrade" in c)
    assert re.search(r"^d=\S+; if .*?; then rm -rf \"\$d\"; fi; docker exec [0-9a-f]{64} sh -c 'py=", commands[migrate])   # (fallback)
    inspects = [c for c in commands[deps_up:migrate] if c.startswith(("docker inspect -- ", "ids=$(docker ps "))]
    assert len(inspects) == 1 and inspects[0].startswith("ids=$(docker ps ")    # listed and inspected at once
    assert not any(c.startswith(("docker inspect -- ", "ids=$(docker ps ")) for c in commands[ready:migrate])


def test_the_last_inspect_stands_for_a_new_one_only_while_recent_and_nothing_changed(settings, make_session, mocker):
    """Under RECENT seconds old and no change since: the migration takes it; otherwise it inspects."""
    from tasks import hoststate
    from tests.tasks.scripted import COMPOSE_V2, Containers, all_of
    hosts = Containers(*all_of())
    s, remote = make_session([COMPOSE_V2, *hosts.script()], settings=settings)
    s.state.compose_project = "ai-doc-qa"
    hoststate.inspect_ids(s, ["postgres"])
    assert [c.service for c in hoststate.last_inspected(s, ["backend"])] == ["backend"]
    at, seen = s.state.inspected
    s.state.inspected = (at - hoststate.RECENT - 0.1, seen)
    assert hoststate.last_inspected(s, ["backend"]) is None
    s.state.inspected = (at, seen)
    s.state.changed()                       # what Session.run does before a command that changes the host
    assert hoststate.last_inspected(s, ["backend"]) is None


def test_a_deploy_reads_the_checkout_and_its_distance_at_once_and_still_refuses_local_edits(mocker, capsys):
    """After the checklist's fetch, prepare reads the checkout (HEAD, branch, edits) beside
    `rev-list --count`; a dirty tree still stops the deploy before the merge (exit 3, step failed)."""
    from tests.tasks.scripted_host import OLD  # the scripted host's commit before the merge
    st = load_settings("production", {})
    dirty = (r"rev-parse HEAD && .* status --porcelain", Result(stdout=f"{OLD}\nmain\n M app/main.py\n", exited=0))
    code, out, err, commands = deploy_on(mocker, capsys, ScriptedHost(st.services, st.dependency_services), [dirty])
    assert code == 3, err
    assert "has local changes to tracked files" in out + err
    assert not any(" merge --ff-only " in c for c in commands)


TABLE_READ = r"^docker exec [0-9a-f]{64} sh -c .*alembic_version"


def test_the_early_database_revision_is_a_docker_exec_that_does_not_wait_for_the_compose_probe(mocker, capsys):
    """The revision read begins with the run: the backend found by the start's `docker ps` (the
    project Compose names by default), then `docker exec` into it, no Compose start (~0.1 s of CPU
    on 2 shared cores). The probe answers only once that read has started: it did not wait."""
    st = load_settings("production", {})
    host = ScriptedHost(st.services, st.dependency_services)
    read_started = threading.Event()

    def probe(command):
        assert read_started.wait(10), "the revision read waited for the Compose probe"
        return Result(stdout="v2 2.26.1\n", exited=0)

    def table(command):
        read_started.set()
        return host.table(command)
    code, out, err, commands = deploy_on(mocker, capsys, host, [
        (re.escape(compose_cmd.PROBE_COMPOSE), probe), (TABLE_READ, table)])
    assert code == 0, err
    reads = [c for c in commands if "alembic_version" in c and "@@before" not in c]
    assert len(reads) == 1 and re.match(TABLE_READ, reads[0])
    assert not any(" exec -T backend " in c for c in commands)


def test_a_failed_revision_read_is_made_once_more_then_reported_by_the_checklist(mocker, capsys):
    """Through the container the start observed, then on a fresh inspect (it may have been
    replaced by hand); a read that fails both times is the checklist's warning."""
    st = load_settings("production", {})
    host = ScriptedHost(st.services, st.dependency_services)
    code, out, err, commands = deploy_on(mocker, capsys, host, [
        (TABLE_READ, Result(stdout="", stderr="boom: no database\n", exited=1))])
    assert "alembic current failed: boom: no database" in out
    reads = [i for i, c in enumerate(commands) if re.match(TABLE_READ, c)]
    assert len(reads) == 2 and any(c.startswith("docker inspect ") for c in commands[reads[0]:reads[1]])


def test_the_log_scan_reads_begin_with_the_smoke_checks(mocker, capsys):
    """verify: the deployed services' log tails (and what serves now) are read beside the smoke
    checks: the smoke's first URL answers only once the log read has started."""
    st = load_settings("production", {})
    host = ScriptedHost(st.services, st.dependency_services)
    logs_started = threading.Event()

    def logs(command):
        logs_started.set()
        return host.docker_logs(command)

    def smoke(command):
        assert logs_started.wait(10), "the log read did not start beside the smoke check"
        return host.curl(command)
    code, out, err, commands = deploy_on(mocker, capsys, host, [
        (r"^echo @@logs-\S+ [0-9a-f]+; docker logs ", logs),
        (r"^out=\$\(curl .*" + re.escape(st.smoke_urls[0]), smoke)])
    assert code == 0, err
    assert "logs: no line matches the error pattern" in out


def test_a_failed_smoke_check_waits_for_the_log_read_before_the_rollback_changes_anything(mocker, capsys):
    """The log tails and the image read begun with the smoke checks end before a failed smoke
    check is handled: the automatic rollback then changes what they read (a late read would
    leave a stale 'what serves' behind)."""
    import time  # the log read is made slow on purpose
    st = load_settings("production", {})
    host = ScriptedHost(st.services, st.dependency_services)
    order = []

    def logs(command):
        time.sleep(0.3)
        order.append("logs read")
        return host.docker_logs(command)

    def tag(command):
        order.append("rollback")
        return host.tag(command)

    def smoke(command):
        return Result(stdout="oops\n@@status 500 0.004", exited=0)
    code, out, err, commands = deploy_on(mocker, capsys, host, [
        (r"^echo @@logs-\S+ [0-9a-f]+; docker logs ", logs), (r"^docker tag ", tag),
        (r"^out=\$\(curl .*" + re.escape(st.smoke_urls[0]), smoke)])
    assert code == 7, err
    assert order and order[0] == "logs read" and "rollback" in order


def first_ps_on(settings, mocker, compose: str):
    """The run's first container-ID read on a host with ``compose``: the probe answers only once
    the `docker compose ps` asked beside it has started (so the read does not wait for it)."""
    from tasks.hoststate import container_ids  # the reader under test
    ps_started = threading.Event()
    seen = []

    def answer(command, **kw):
        seen.append(command)
        if "docker compose version" in command:
            assert ps_started.wait(10), "the first compose ps waited for the probe"
            return Result(stdout="v2 2.26.1\n" if compose == "v2" else "v1 1.29.2\n", exited=0)
        if "docker compose -f" in command and " ps -a -q " in command:
            ps_started.set()
            if compose == "v1":
                return Result(stderr="docker: 'compose' is not a docker command.\n", exited=1)
            return Result(stdout="a" * 64 + "\n" + "b" * 64 + "\n", exited=0)
        if "docker-compose -f" in command and " ps " in command:
            return Result(stdout="c" * 64 + "\n", exited=0)
        raise AssertionError(command)
    s = session(settings, mocker, answer)
    return container_ids(s, ["backend"]), seen, s


def test_the_first_compose_ps_does_not_wait_for_the_compose_probe(settings, mocker):
    ids, seen, s = first_ps_on(settings, mocker, "v2")
    assert ids == ["a" * 64, "b" * 64] and s.compose.command == "docker compose"
    assert sum(" ps -a -q " in c for c in seen) == 1


def test_on_a_compose_v1_host_the_first_compose_ps_is_asked_again_with_docker_compose(settings, mocker):
    ids, seen, s = first_ps_on(settings, mocker, "v1")
    assert ids == ["c" * 64] and s.compose.command == "docker-compose"


def test_after_the_merge_only_the_new_head_is_read_not_the_whole_checkout_state(mocker, capsys):
    """`git status` after a merge refreshes the index (~0.05 s): the new commit is all prepare needs."""
    st = load_settings("production", {})
    code, out, err, commands = deploy_on(mocker, capsys, ScriptedHost(st.services, st.dependency_services))
    assert code == 0, err
    merge = next(i for i, c in enumerate(commands) if " merge --ff-only " in c)
    after = next(c for c in commands[merge + 1:] if c.startswith("git -C "))
    assert after == "git -C /app/ai-doc-qa rev-parse HEAD"
    assert "git: 7ef2620111 -> " in out


def test_no_commit_read_after_the_merge_is_a_clear_error(mocker, capsys):
    st = load_settings("production", {})
    garbage = (r"^git -C \S+ rev-parse HEAD$", Result(stdout="fatal: not a commit\n", exited=0))
    code, out, err, commands = deploy_on(mocker, capsys, ScriptedHost(st.services, st.dependency_services), [garbage])
    assert code == 3, err
    assert "printed no commit after the merge" in out + err and "Traceback" not in out + err


def test_the_log_tails_right_after_the_health_wait_read_the_logs_and_inspect_nothing(settings, make_session):
    """The health wait's last inspect named the containers just now: verify's log scan reads their
    logs in one command, with no inspect of its own."""
    from tasks import hoststate
    from tasks.verify import log_tails
    from tests.tasks.scripted import COMPOSE_V2, Containers, all_of
    hosts = Containers(*all_of())
    s, remote = make_session([COMPOSE_V2, (r"^echo @@logs-", Result(stdout="", exited=0)), *hosts.script()], settings=settings)
    s.state.compose_project = "ai-doc-qa"
    hoststate.inspect_ids(s, ["backend"])                  # the health wait's last poll
    before = len(remote.commands)
    log_tails(s, ["backend", "proxy"], 50)
    new = remote.commands[before:]
    assert len(new) == 1 and new[0].startswith(f"echo @@logs-{s.run_tag} {hosts.by_service['backend']['Id']}; docker logs ")


def test_what_a_deploy_leaves_serving_is_read_from_the_health_waits_last_inspect(mocker, capsys):
    """Verify's read of what serves (the end's record) comes right after the health wait: its
    inspect, under RECENT seconds old with nothing changed since, names the containers and their
    images; the read asks Docker only for the image digests (and the health URL)."""
    st = load_settings("production", {})
    code, out, err, commands = deploy_on(mocker, capsys, ScriptedHost(st.services, st.dependency_services))
    assert code == 0, err
    stop = max(i for i, c in enumerate(commands) if re.match(r"^touch /tmp/ai-doc-qa-\w+-probe$", c))
    assert any(c.startswith("docker inspect -- ") for c in commands[:stop])
    assert not any(c.startswith("docker inspect -- ") for c in commands[stop:])
    assert any(c.startswith("docker image inspect ") for c in commands[stop:])
    assert '"event":"images_after"' in next(c for c in reversed(commands) if "images_after" in c)
