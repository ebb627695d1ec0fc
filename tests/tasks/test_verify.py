"""Runbook 4 (fab verify, fab smoke) through the task layer on a scripted host: every smoke URL
must answer 2xx, from the host and (when configured) from the operator's machine; recent logs are
scanned; the monitoring link is shown."""
import dataclasses

import pytest
from invoke import Result

from tasks import web
from tasks.verify import smoke, smoke_checks, verify
from tests.conftest import captured
from tests.tasks.scripted import Containers, all_of, flat, run_task

OK = Result(stdout='{"status": "ok", "version": "v2"}\n@@status 200 0.012\n', exited=0)
DOCS = r"curl .*api/v1/documents"
HEALTH = r"curl .*localhost/health"


def test_verify_passes_with_every_url_2xx_and_quiet_logs(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, verify, [(r"curl ", OK), (r"logs --no-color", "started\n")])
    assert code == 0, err
    assert [c.split("--max-time 10 ")[1].split(")")[0] for c in remote.commands if "curl" in c] == [
        "http://localhost/api/v1/documents", "http://localhost/health"]
    assert ("      logs: no line matches the error pattern in the last 100 lines of backend, model_server, proxy") in out
    assert ("      monitoring: http://monitoring.example.com/dashboard  (open it and watch error rate and latency "
            "for 15 minutes)") in out
    assert out.rstrip().endswith("verify passed")
    logs = [c for c in remote.commands if " logs " in c]
    assert logs == [f"cd /app/ai-doc-qa && docker compose -f docker-compose.production.yml logs --no-color --tail=100 -- {svc}"
                    for svc in ("backend", "model_server", "proxy")]


def test_verify_warns_about_error_lines_in_the_logs_without_failing(mocker, capsys):
    pg = captured("compose-v2-logs-postgres-stopped.txt")          # holds a FATAL line
    code, out, err, remote = run_task(mocker, capsys, verify, [
        (r"curl ", OK), (r"logs --no-color --tail=100 -- backend", Result(stdout=pg, stderr="", exited=0))])
    assert code == 0
    assert "! 1 log line(s) match LOG_ERROR_PATTERN in the last 100 lines:" in out
    assert ("        backend: postgres-1  | 2026-11-28 06:29:57.509 UTC [43] FATAL:  terminating connection due to "
            "administrator command") in out


def test_a_failing_smoke_url_is_exit_4_naming_each_failure(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, smoke, [
        (DOCS, Result(stdout="Internal Server Error\n@@status 500 0.02\n", exited=0)),
        (HEALTH, Result(stdout="", stderr="curl: (7) Failed to connect", exited=7))])
    assert code == 4
    assert ("2 smoke test(s) failed: http://localhost/api/v1/documents from the host: HTTP 500; "
            "http://localhost/health from the host: connection refused (nothing listening)") in flat(err)
    assert "Internal Server Error" in err
    assert ("Next: fab -H deploy@ai-doc-qa.example.com diagnose (and fab -H deploy@ai-doc-qa.example.com rollback "
            "if the new version is at fault)") in flat(err)
    rows = [line.split() for line in out.splitlines() if line.startswith("host ")]
    assert [r[1:3] for r in rows] == [["http://localhost/api/v1/documents", "500"], ["http://localhost/health", "-"]]


def test_smoke_from_the_operator_too(mocker, capsys, settings):
    mocker.patch("tasks.base.load_settings", return_value=dataclasses.replace(settings, smoke_from_operator=True))
    answers = {"http://localhost/api/v1/documents": web.HttpAnswer("http://localhost/api/v1/documents", 200, 0.05, "[]"),
               "http://localhost/health": web.HttpAnswer("http://localhost/health", 503, 0.05, "down")}
    mocker.patch.object(web, "request", side_effect=lambda method, url, **kw: answers[url])
    code, out, err, remote = run_task(mocker, capsys, smoke, [(r"curl ", OK)])
    assert code == 4
    assert "1 smoke test(s) failed: http://localhost/health from the operator: HTTP 503" in flat(err)
    operator_rows = [line.split()[1:3] for line in out.splitlines() if line.startswith("operator ")]
    assert operator_rows == [["http://localhost/api/v1/documents", "200"], ["http://localhost/health", "503"]]


def test_smoke_passes(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, smoke, [(r"curl ", OK)])
    assert code == 0 and out.rstrip().endswith("smoke tests passed")


def test_a_dry_smoke_prints_the_commands_and_requests_nothing(make_session, capsys):
    s, remote = make_session(dry=True)
    assert smoke_checks(s) == []
    out = capsys.readouterr().out
    assert "[dry] would check http://localhost/api/v1/documents: out=$(curl -sS" in out
    assert remote.commands == []


def test_operator_check_that_does_not_answer(mocker):
    from tasks.verify import operator_check
    mocker.patch.object(web, "request", return_value=web.HttpAnswer("http://x/health", 0, 2.0, error="timed out"))
    check = operator_check("http://x/health", 2)
    assert not check.ok and check.error == "timed out" and check.status == 0


@pytest.mark.parametrize("url", [None])
def test_no_monitoring_link_without_a_url(make_session, capsys, settings, url):
    from tasks.verify import monitoring_link
    s, _ = make_session(settings=dataclasses.replace(settings, monitoring_url=url))
    monitoring_link(s)
    assert capsys.readouterr().out == ""


def test_once_the_compose_project_is_known_the_logs_are_one_docker_logs_round_trip(mocker, capsys, monkeypatch):
    """No Compose start for the log scan: every deployed service's container by ID, in one command;
    each container's lines are scanned as its service's, and a log line that copies the separator
    cannot move lines to another service (the separator holds the run's random tag)."""
    monkeypatch.setenv("DEPLOY_COMPOSE_PROJECT", "ai-doc-qa")
    everything = Containers(*all_of())
    ids = {svc: c["Id"] for svc, c in everything.by_service.items()}

    def docker_logs(command):
        mark = command.split()[1]
        text = {"backend": "INFO ok\n@@logs-forged " + ids["proxy"] + "\nERROR: backend broke\n",
                "model_server": "INFO ready\n", "proxy": "GET / 200\n"}
        return "".join(f"{mark} {cid}\n{text[svc]}" for svc, cid in ids.items()
                       if svc in text and cid in command)
    code, out, err, remote = run_task(mocker, capsys, verify, [
        (r"curl ", OK), *everything.script(), (r"^echo @@logs-", docker_logs)])
    assert code == 0, err
    [logs] = [c for c in remote.commands if "logs" in c]
    assert " logs --no-color " not in logs
    assert [logs.count(ids[svc]) for svc in ("backend", "model_server", "proxy", "postgres")] == [2, 2, 2, 0]
    assert "! 1 log line(s) match LOG_ERROR_PATTERN in the last 100 lines:" in out
    assert "        backend: ERROR: backend broke" in out


def test_logs_of_builds_one_command_and_refuses_unsafe_ids():
    from commands import docker
    cmd = docker.logs_of(["a" * 64, "b" * 12], 100, "@@logs-x1234567")
    assert cmd == (f"echo @@logs-x1234567 {'a' * 64}; docker logs --tail 100 {'a' * 64} 2>&1; "
                   f"echo @@logs-x1234567 {'b' * 12}; docker logs --tail 100 {'b' * 12} 2>&1")
    assert docker.parse_logs_of(f"junk\n@@logs-x1234567 {'a' * 64}\none\ntwo\n@@logs-x1234567 {'b' * 12}\n",
                                "@@logs-x1234567") == {"a" * 64: "one\ntwo", "b" * 12: ""}
    for bad_id, bad_mark in (("abc; rm -rf /", "@@logs-x1234567"), ("a" * 64, "x; rm"), ("a" * 64, "short")):
        with pytest.raises(ValueError):
            docker.logs_of([bad_id], 100, bad_mark)
