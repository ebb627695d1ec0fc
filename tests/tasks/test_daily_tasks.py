"""Issue 11 through the task layer on a scripted host: exec's `-- COMMAND` and exit code, the
maintenance lock's release rules, --json without the lock's token, and the log follower's
de-duplication."""
import json
import shlex

from fabric.main import Fab
from invoke import Result

import fabfile
from commands.secrets import Redactor
from tasks import base, program, ui
from tasks.daily import Deduplicated, check_exec_options, exec_task, logs, restart, stamp
from tasks.errors import ExitCode
from tasks.locktasks import check_lock_options, lock
from tasks.maintenance import NEVER_STALE
from tasks.messages import operator
from tasks.stream import LineSink
from tests.tasks.scripted import COMPOSE_V2, flat, run_task
from tests.tasks.test_lock_tasks import HOLDER, STATUS, held


def run_fab(mocker, capsys, argv, answer):
    """The real command line in-process, on a scripted connection whose streamed commands answer ``answer``."""
    mocker.patch.object(Fab, "load_collection", lambda self: setattr(self, "collection", fabfile.ns))
    seen = []

    def remote(command, **kw):
        seen.append(command)
        if "compose version --short" in command:
            return Result(stdout=COMPOSE_V2[1], exited=0)
        if kw.get("out_stream") is not None:
            text, code = answer
            kw["out_stream"].write(text)
            return Result(stdout=text, exited=code)
        return Result(stdout="", exited=0)

    cxn = mocker.Mock()
    cxn.run.side_effect = remote
    mocker.patch.object(base, "connect", return_value=cxn)
    mocker.patch("tasks.base.learn_secrets")
    try:
        program.make_program().run(["fab", *argv])
        code = 0
    except SystemExit as exc:
        code = exc.code
    finally:
        ui.set_level(0)
        ui.set_json_mode(False)
    out, err = capsys.readouterr()
    return code, out, err, seen


def test_exec_runs_the_remainder_in_the_service_and_passes_its_exit_code_through(mocker, capsys):
    code, out, err, seen = run_fab(mocker, capsys, ["exec", "backend", "--stage", "production", "--", "alembic", "current"],
                                   ("0001 (head)\n", 7))
    assert code == 7, err
    assert "0001 (head)" in out
    [streamed] = [c for c in seen if "exec -T" in c]
    assert shlex.split(streamed)[6] == ("cd /app/ai-doc-qa && docker compose -f docker-compose.production.yml "
                                        "exec -T backend sh -c 'alembic current'")
    assert program.REMAINDER == "alembic current"


def test_the_remainder_is_still_refused_for_every_other_task(mocker, capsys):
    code, out, err, seen = run_fab(mocker, capsys, ["status", "--stage", "production", "--", "id"], ("", 0))
    assert code == 2 and "REFUSED: fab -H HOST -- COMMAND" in err and not seen


def test_exec_options_are_usage_errors_before_any_connection():
    program.REMAINDER = ""
    assert check_exec_options(service="backend") == ["give the command after --: fab exec SERVICE -- COMMAND"]
    [interactive] = check_exec_options(service="backend", interactive=True)
    assert "--interactive is not offered" in interactive and "ssh -t HOST" in interactive


def test_lock_options():
    assert check_lock_options(acquire=True) == ["--acquire needs -m MESSAGE: whoever is refused must learn why"]
    assert check_lock_options(acquire=True, release=True, message="x")[0].startswith("--acquire and --release")
    assert check_lock_options(force=True)[0].startswith("--force goes with --release")


MAINTENANCE = {**HOLDER, "task": "maintenance", "lock_stale_after": NEVER_STALE, "who": "bob@ops"}
RELEASE = (r"then rm -rf", "released\n")


def test_release_refuses_a_deploys_lock(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, lock, [held(5), RELEASE], release=True, force=True)
    assert code == 6 and "the lock is a deploy lock, not a maintenance lock" in flat(err)
    assert not [c for c in remote.commands if "rm -rf" in c]


def test_release_of_another_operators_maintenance_lock_needs_force(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, lock, [held(5, MAINTENANCE), RELEASE], release=True)
    assert code == 6 and "the maintenance lock is bob@ops's, not yours" in flat(err)
    assert "lock --release --force" in flat(err)
    code, out, err, remote = run_task(mocker, capsys, lock, [held(5, MAINTENANCE), RELEASE], release=True, force=True)
    assert code == 0 and "maintenance lock of bob@ops released (--force)" in out
    [rm] = [c for c in remote.commands if "rm -rf" in c]
    assert HOLDER["token"] in rm


def test_own_maintenance_lock_is_released_without_force(mocker, capsys):
    mine = {**MAINTENANCE, "who": operator()}
    code, out, err, remote = run_task(mocker, capsys, lock, [held(5000, mine), RELEASE], release=True)
    assert code == 0, err


def test_acquire_writes_a_never_stale_maintenance_holder(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, lock, [(r"echo acquired", "acquired\n")], acquire=True, message="disk swap")
    assert code == 0 and "maintenance lock taken" in out
    [take] = [c for c in remote.commands if "echo acquired" in c]
    assert '"task": "maintenance"' in take and f'"lock_stale_after": {NEVER_STALE}' in take and "disk swap" in take


def test_lock_json_never_shows_the_token(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, lock, [held(5, MAINTENANCE)], json=True)
    d = json.loads(out)
    assert code == 0 and d["held"] and d["maintenance"] and not d["stale"]
    assert "token" not in d["holder"] and HOLDER["token"] not in out


def test_followed_lines_are_printed_once_across_a_refollow(capsys):
    ui.set_redactor(Redactor())
    ui.set_json_mode(False)
    printer = Deduplicated()
    first = ["backend-1  | 2026-11-28T08:12:36.9Z a", "backend-1  | 2026-11-28T08:12:37.123456789Z b"]
    again = ["backend-1  | 2026-11-28T08:12:37.123456789Z b", "backend-1  | 2026-11-28T08:12:40Z c"]
    for line in first + again:
        printer(line)
    assert capsys.readouterr().out.splitlines() == [*first, again[1]]
    assert stamp("no stamp here") == ""


def test_line_sink_prints_whole_lines_redacted(capsys):
    ui.set_redactor(Redactor(secrets=["sentinel-abcdefgh123"]))
    ui.set_json_mode(False)
    sink = LineSink()
    sink.write("one\ntw")
    sink.write("o sentinel-abcdefgh123\nthr")
    sink.close()
    assert capsys.readouterr().out.splitlines() == ["one", "two [REDACTED]", "thr"]
    ui.set_redactor(Redactor())


def test_quiet_prints_nothing_on_stdout_but_errors_still_show(mocker, capsys):
    code, out, err, seen = run_fab(mocker, capsys, ["-q", "lock", "--stage", "production"], ("", 0))
    assert code == 0 and out == "" and seen                       # it ran: the lock was read, quietly
    code, out, err, seen = run_fab(mocker, capsys, ["-q", "exec", "backend", "--stage", "production", "--", "false"],
                                   ("boom\n", 1))
    assert code == 1 and out == "boom\n"                            # the command's output is the result: shown


def test_verbose_echoes_every_remote_command(mocker, capsys):
    code, out, err, seen = run_fab(mocker, capsys, ["-v", "lock", "--stage", "production"], ("", 0))
    assert code == 0
    assert "$ ( [ -d /app/ai-doc-qa/.deploy/lock ]" in out and "deploy lock: free" in out


def test_a_secret_in_the_maintenance_message_is_not_written_to_the_host(mocker, capsys):
    """Seen on staging: `fab lock --acquire -m "... staging-secret-key"` stored the secret as is in
    the lock's holder.json (mode 0644 on the host), from where a takeover record copies it."""
    secret = "sentinel-maint-5e6f7a8b9c"
    mocker.patch("tasks.base.learn_secrets", lambda s: s.redactor.add_env({"SECRET_KEY": secret}))
    code, out, err, remote = run_task(mocker, capsys, lock, [(r"echo acquired", "acquired\n")], acquire=True,
                                      message=f"rotating {secret}")
    assert code == 0, err
    [take] = [c for c in remote.commands if "echo acquired" in c]
    assert secret not in take and "rotating [REDACTED]" in take


def test_lock_acquire_and_release_with_json_print_the_lock_state_as_json(mocker, capsys):
    """Seen on staging: `fab lock --acquire -m M --json` printed nothing on stdout (its progress
    went to stderr, as --json asks), so a script parsing stdout failed."""
    code, out, err, remote = run_task(mocker, capsys, lock, [(r"echo acquired", "acquired\n"), held(0, MAINTENANCE)],
                                      acquire=True, message="disk swap", json=True)
    assert code == 0, err
    d = json.loads(out)
    assert d["held"] and d["maintenance"] and "token" not in d["holder"]
    assert "maintenance lock taken" in err
    mine = {**MAINTENANCE, "who": operator()}
    answers = iter([held(5, mine)[1], "free\n"])          # read before the release, then after it
    code, out, err, remote = run_task(mocker, capsys, lock, [RELEASE, (STATUS, lambda c: next(answers))],
                                      release=True, json=True)
    assert code == 0, err
    assert json.loads(out)["held"] is False


def blue_green_host(monkeypatch):
    """STRATEGY=blue-green after a deploy: backend_green serves, the old slot `backend` is stopped."""
    from tests.tasks.scripted import Containers, container
    monkeypatch.setenv("DEPLOY_STRATEGY", "blue-green")
    blue = container("docker-inspect-backend-healthy.json", "backend", Status="exited", Running=False)
    green = container("docker-inspect-backend-healthy.json", "backend", image="sha256:" + "9" * 64)
    green["Id"] = "b" * 64
    green["Config"]["Labels"]["com.docker.compose.service"] = "backend_green"
    return Containers(blue, green)


def test_restart_backend_under_blue_green_restarts_the_serving_slot_not_the_stopped_one(mocker, capsys, monkeypatch):
    """Seen on staging: after a blue-green deploy (v2 in backend_green), `fab restart backend`
    started the stopped old slot on v1, and the proxy answered v1 and v2 in turn."""
    from tests.tasks.scripted import LOCK
    host = blue_green_host(monkeypatch)
    code, out, err, remote = run_task(mocker, capsys, restart, [*LOCK, *host.script()], service="backend")
    assert code == 0, err
    [restarted] = [c for c in remote.commands if " restart " in c]
    assert restarted.endswith("restart -- backend_green")
    assert "backend is served by slot backend_green (STRATEGY=blue-green)" in out
    assert "backend_green: running, healthy" in out


def test_exec_and_logs_of_backend_under_blue_green_reach_the_serving_slot(mocker, capsys, monkeypatch):
    host = blue_green_host(monkeypatch)
    mocker.patch("tasks.base.learn_secrets")
    streamed = []

    def fake_stream(s, command, timeout=0, emit=None):
        streamed.append(command)
        return 0
    mocker.patch("tasks.daily.stream", fake_stream)
    program.REMAINDER = "alembic current"
    code, out, err, remote = run_task(mocker, capsys, exec_task, host.script(), service="backend")
    assert code == 0, err
    assert streamed[-1].endswith("exec -T backend_green sh -c 'alembic current'")
    code, out, err, remote = run_task(mocker, capsys, logs, host.script(), service="backend,proxy")
    assert code == 0, err
    assert streamed[-1].endswith("--tail=100 -- proxy backend backend_green")


def test_a_failed_restart_names_a_logs_command_that_runs(mocker, capsys):
    """The block said `fab -H HOST logs backend`, which fab refuses (logs takes --service)."""
    from tests.tasks.scripted import LOCK, Containers, container
    host = Containers(container("docker-inspect-backend-healthy.json", "backend", Status="exited", Running=False))
    code, out, err, remote = run_task(mocker, capsys, restart, [*LOCK, *host.script()], service="backend")
    assert code == ExitCode.UNHEALTHY
    assert "Next: fab -H deploy@ai-doc-qa.example.com logs --service backend, then" in flat(err)


def test_exec_of_a_command_that_exits_124_by_itself_is_not_called_a_timeout(mocker, capsys):
    """Seen on staging: `fab exec backend -- 'exit 124'` warned "the command was stopped after
    60 s (--timeout)" at once (coreutils timeout also exits 124)."""
    mocker.patch("tasks.base.learn_secrets")
    mocker.patch("tasks.daily.stream", return_value=124)
    program.REMAINDER = "exit 124"
    code, out, err, remote = run_task(mocker, capsys, exec_task, [], service="backend")
    assert code == 124
    assert "--timeout" not in out + err
