"""The Pre-Deployment Checklist (fab checklist) through the task layer on a scripted production
host answering with what the sandbox's checklist reads (captured: v1 checked out, origin at v2):
which items pass, warn or block, what staging is asked, and that nothing is changed."""
import dataclasses

import pytest
from invoke import Result

from commands.secrets import Redactor
from config import load_settings
from tasks import checklist as checklist_mod
from tasks import web
from tasks.checklist import checklist
from tasks.conftest import Remote
from tasks.executor import SSHExecutor
from tasks.session import Session
from tests.conftest import captured
from tests.tasks.scripted import COMPOSE_V2, IMAGE_INSPECT, Containers, Images, all_of, flat, run_task

APP = "/app/ai-doc-qa"
LIVE = "".join(f"{k}=value-{i}-long-enough\n" for i, k in enumerate(
    ["APP_ENV", "LOG_LEVEL", "POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD", "DATABASE_URL", "REDIS_URL",
     "REDIS_PASSWORD", "SECRET_KEY", "OPENAI_API_KEY", "MODEL_SERVER_URL", "LEGACY_CACHE_TTL"]))
STAGING_FILE = LIVE.replace("LEGACY_CACHE_TTL", "SUMMARY_MAX_CHARS")


def env_files(command):
    return (f"@@ai-doc-qa-file@@{APP}/.env.production\n{LIVE}\n@@ai-doc-qa-file@@{APP}/.env.staging\n{STAGING_FILE}\n"
            f"@@ai-doc-qa-missing@@{APP}/.env\n\n")


def alembic_current(name):
    return Result(stdout=captured(name), stderr=captured(name + ".stderr"), exited=0)


def production(*first, backend_running=True):
    containers = Containers(*all_of()) if backend_running else Containers(
        *[c for c in all_of() if c["Name"] != "/ai-doc-qa-backend-1"])
    return [*first, (r"@@ai-doc-qa-file@@", env_files), (r" fetch --quiet origin main", ""),
            (r" grep -E ", captured("git-grep-migration-headers-origin-v2.txt")),
            (r"(?:exec -T backend|^docker exec [0-9a-f]{64}) (?:sh -c .*\|\| )?alembic current", alembic_current("alembic-current-v1.txt")),
            (r"\.env\.example.*cat --", captured("env-example-v1.txt")),
            (r" show origin/main:\.env\.example", captured("git-show-env-example-origin-v2.txt")),
            *containers.script(), (IMAGE_INSPECT, Images(captured("docker-image-inspect.txt"))),
            (r"curl .*8000/health", Result(stdout='{"status": "ok", "version": "v1"}\n@@status 200 0.004\n', exited=0))]


@pytest.fixture
def staging(mocker):
    """The staging host the production checklist asks (a second scripted session)."""
    def make(current="alembic-current-v2.txt", fail=None):
        remote = Remote([COMPOSE_V2, (r"@@ai-doc-qa-file@@", ""), *Containers(*all_of()).script(),
                         (r"(?:exec -T backend|^docker exec [0-9a-f]{64}) (?:sh -c .*\|\| )?alembic current", alembic_current(current))])
        opened = []

        def open_session(s, settings, host):
            if fail:
                raise fail
            cxn = mocker.Mock()
            cxn.run.side_effect = remote
            opened.append((settings.stage, host))
            return Session(settings, host, cxn, redactor=Redactor(settings.secret_key_pattern))
        mocker.patch.object(SSHExecutor, "open_session", side_effect=open_session)
        return remote, opened
    return make


@pytest.fixture
def monitoring(mocker):
    return mocker.patch.object(web, "request", return_value=web.HttpAnswer(
        "http://monitoring.example.com/dashboard", 200, 0.12, "<html>"))


def rows(out):
    """{check: (result, detail)} from the printed table."""
    names = ("migrations_pending", "migrations_untested", "env_keys_differ", "env_undocumented",
             "env_missing_for_release", "rollback_target", "monitoring", "oncall_notified")
    found = {}
    for line in out.splitlines():
        for n in names:
            if f"  {n}  " in line:
                result, detail = line.split(f"  {n}  ", 1)[1].strip().split(None, 1)
                found[n] = (result, detail)
    return found


def test_production_checklist_blocks_on_a_missing_release_key_and_reads_staging(mocker, capsys, staging, monitoring):
    staged, opened = staging(current="alembic-current-v2.txt")
    code, out, err, remote = run_task(mocker, capsys, checklist, production())
    assert code == 9
    r = rows(out)
    assert r["migrations_pending"] == ("warn", "current 0001 -> head 0002: 1 pending, review them: 0002 "
                                               "(migrations/versions/0002_add_document_summary.py)")
    assert r["migrations_untested"] == ("ok", "all pending revisions are applied on staging (at 0002)")
    assert r["env_keys_differ"][0] == "warn"
    assert r["env_undocumented"] == ("warn", "in .env.production but not in .env.example: LEGACY_CACHE_TTL")
    assert r["env_missing_for_release"][0] == "BLOCK" and "documents SUMMARY_MAX_CHARS" in r["env_missing_for_release"][1]
    assert r["rollback_target"][0] == "ok" and r["rollback_target"][1].startswith("will be recorded before pull: backend 54108187d377")
    assert r["monitoring"] == ("ok", "http://monitoring.example.com/dashboard answered HTTP 200 in 0.12 s")
    assert r["oncall_notified"] == ("warn", "not configured (WEBHOOK_URL is empty): notify on-call by hand")
    assert opened == [("staging", "ai-doc-qa-staging")]
    assert "1 blocking checklist item(s) failed: env_missing_for_release:" in flat(err)
    assert "Host state: nothing was changed (the checklist runs before any change)" in flat(err)
    assert "Exit code: 9" in flat(err)
    assert not [c for c in remote.commands if " up " in c or "merge" in c or " pull " in c]


def test_a_migration_staging_has_not_applied_blocks_production(mocker, capsys, staging, monitoring):
    staging(current="alembic-current-v1.txt")
    code, out, err, remote = run_task(mocker, capsys, checklist, production())
    assert code == 9
    assert rows(out)["migrations_untested"] == ("BLOCK", "UNTESTED: 0002 not applied on staging (at 0001); deploy there first")
    assert "2 blocking checklist item(s) failed" in flat(err)


def test_staging_that_cannot_be_asked_fails_the_item_with_the_reason(mocker, capsys, staging, monitoring):
    from tasks.errors import DeployError
    staging(fail=DeployError("cannot connect to ai-doc-qa-staging: connection refused"))
    code, out, err, remote = run_task(mocker, capsys, checklist, production())
    result, detail = rows(out)["migrations_untested"]
    assert result == "BLOCK" and detail.startswith("cannot ask staging (ai-doc-qa-staging): cannot connect")


def test_staging_without_a_running_backend_cannot_say_its_revision(mocker, capsys, staging, monitoring):
    remote_staging, _ = staging()
    del remote_staging.script[:]
    remote_staging.script.extend(Remote([COMPOSE_V2, (r"ps -a -q", "")]).script)
    code, out, err, remote = run_task(mocker, capsys, checklist, production())
    assert rows(out)["migrations_untested"] == (
        "BLOCK", "cannot read the database revision on staging: backend is not running")


def test_a_stopped_backend_means_the_revision_is_unknown(mocker, capsys, monitoring):
    code, out, err, remote = run_task(mocker, capsys, checklist, production(backend_running=False))
    r = rows(out)
    assert r["migrations_pending"] == ("warn", "cannot read the database revision (backend is not running); "
                                               "head of origin/main is 0002")
    assert "migrations_untested" not in r                # nothing to compare with staging
    assert r["rollback_target"] == ("warn", "running now: model_server 5ea9bf2b66a1, proxy 08bad6c75c0b; "
                                            "not running: backend; NOT healthy now, so it is not a valid rollback target")


def test_a_failing_alembic_current_names_its_error(mocker, capsys, monitoring):
    code, out, err, remote = run_task(mocker, capsys, checklist, production(
        (r"(?:exec -T backend|^docker exec [0-9a-f]{64}) (?:sh -c .*\|\| )?alembic current", Result(stdout="", stderr=captured("alembic-current-v1.txt.stderr")
                                                      + "FAILED: Can't locate revision identified by '0009'\n", exited=255))))
    assert rows(out)["migrations_pending"][1].startswith(
        "cannot read the database revision (alembic current failed: FAILED: Can't locate revision identified by '0009')")


def test_monitoring_unreachable_or_not_configured(mocker, capsys, settings, staging):
    staging()
    mocker.patch.object(web, "request", return_value=web.HttpAnswer("http://monitoring.example.com/dashboard", 0, 2.0,
                                                                     error="timed out: no complete answer within 10 s"))
    code, out, err, remote = run_task(mocker, capsys, checklist, production())
    assert rows(out)["monitoring"] == ("warn", "http://monitoring.example.com/dashboard unreachable: "
                                               "timed out: no complete answer within 10 s")
    mocker.patch("tasks.base.load_settings", return_value=dataclasses.replace(settings, monitoring_url=None))
    code, out, err, remote = run_task(mocker, capsys, checklist, production())
    assert rows(out)["monitoring"] == ("warn", "MONITORING_URL not configured")


def test_on_call_is_notified_through_the_webhook(mocker, capsys, settings, staging):
    staging()
    hooked = dataclasses.replace(settings, webhook_url="http://127.0.0.1:9100/hook",
                                 checklist_blocking=("migrations_untested",))
    mocker.patch("tasks.base.load_settings", return_value=hooked)
    calls = []

    def request(method, url, **kw):
        calls.append((method, url, kw.get("data")))
        return web.HttpAnswer(url, 204 if method == "POST" else 200, 0.01)
    mocker.patch.object(web, "request", side_effect=request)
    code, out, err, remote = run_task(mocker, capsys, checklist, production(), message="release 2.0")
    assert code == 0, err
    assert rows(out)["oncall_notified"] == ("ok", "posted deploy_starting (HTTP 204)")
    [(method, url, body)] = [c for c in calls if c[0] == "POST"]
    assert url == "http://127.0.0.1:9100/hook" and b'"message": "release 2.0"' in body
    assert b'"pending_migrations": ["0002"]' in body
    assert out.rstrip().endswith("checklist: no blocking item")


def test_a_failed_fetch_stops_the_checklist(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, checklist, production(
        (r" fetch --quiet", Result(stdout="", stderr="fatal: unable to access", exited=128))))
    assert code == 3
    assert "git fetch failed, so the incoming release cannot be checked: exited with code 128" in flat(err)
    assert f"Next: check the git remote from the host: git -C {APP} fetch origin" in flat(err)


def test_a_stage_that_cannot_be_loaded_fails_the_tested_item(mocker, capsys, monitoring):
    from config import ConfigError
    real = load_settings

    def fake(stage, *a, **kw):
        if stage == "staging" and kw.get("apply_generic_env") is False:
            raise ConfigError(["HOSTS: must not be empty"], stage="staging")
        return real(stage, *a, **kw)
    mocker.patch.object(checklist_mod, "load_settings", side_effect=fake)
    code, out, err, remote = run_task(mocker, capsys, checklist, production())
    assert rows(out)["migrations_untested"] == ("BLOCK", "cannot load stage staging: HOSTS: must not be empty")
