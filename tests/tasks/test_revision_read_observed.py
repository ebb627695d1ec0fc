"""The checklist's database revision read uses the start's observation only when it holds the
backend's container: BACKEND_SERVICE may be a dependency service (the observation holds SERVICES
only), and then a running backend is not "not running" (production's migrations_untested gate
would silently go)."""
import os

from invoke import Result

from config import load_settings
from tasks.deploy import deploy
from tests.tasks.scripted import run_task
from tests.tasks.scripted_host import ScriptedHost

TABLE_READ = r"^docker exec [0-9a-f]{64} sh -c .*alembic_version"


def deploy_on(mocker, capsys, host, extra=()):
    mocker.patch.dict(os.environ, {"DEPLOY_TESTED_ON_STAGE": ""})
    code, out, err, remote = run_task(mocker, capsys, deploy, [*extra, *host.script()])
    return code, out, err, remote.commands


def test_backend_listed_in_dependency_services_is_read_not_called_not_running(mocker, capsys, monkeypatch):
    """BACKEND_SERVICE may be listed in DEPENDENCY_SERVICES (config/load.py, docs/configuration.md);
    the start's observation holds the containers of SERVICES only: the backend is inspected."""
    monkeypatch.setenv("DEPLOY_SERVICES", "model_server,proxy")
    monkeypatch.setenv("DEPLOY_DEPENDENCY_SERVICES", "postgres,redis,backend")
    st = load_settings("production")
    assert st.backend_service in st.dependency_services
    host = ScriptedHost(st.services, st.dependency_services)
    assert "backend" in host.containers and host.containers["backend"]       # it runs
    code, out, err, commands = deploy_on(mocker, capsys, host)
    reads = [c for c in commands if "alembic_version" in c and "@@before" not in c]
    assert "backend is not running" not in out, out[-3000:]
    assert reads, "the database revision was never read"


def test_backend_in_dependency_services_skips_production_blocking_migrations_untested_gate(mocker, capsys, monkeypatch):
    """Same config on production (CHECKLIST_BLOCKING has migrations_untested): staging has NOT
    applied 0002, so the checklist must block (exit 9) before anything changes (a revision read
    as "backend is not running" would skip check_tested_on and migrate production untested)."""
    from commands.secrets import Redactor
    from tasks.conftest import Remote
    from tasks.executor import SSHExecutor
    from tasks.session import Session
    from tests.conftest import captured
    from tests.tasks.scripted import COMPOSE_V2, Containers, all_of

    staging = Remote([COMPOSE_V2, (r"@@ai-doc-qa-file@@", ""), *Containers(*all_of()).script(),
                      (r"(?:exec -T backend|^docker exec [0-9a-f]{64}) (?:sh -c .*\|\| )?alembic current",
                       Result(stdout=captured("alembic-current-v1.txt"), exited=0))])     # staging at 0001

    def open_session(s, settings, host):
        cxn = mocker.Mock()
        cxn.run.side_effect = staging
        return Session(settings, host, cxn, redactor=Redactor(settings.secret_key_pattern))
    mocker.patch.object(SSHExecutor, "open_session", side_effect=open_session)
    monkeypatch.setenv("DEPLOY_SERVICES", "model_server,proxy")
    monkeypatch.setenv("DEPLOY_DEPENDENCY_SERVICES", "postgres,redis,backend")
    st = load_settings("production")
    assert st.tested_on_stage == "staging" and "migrations_untested" in st.checklist_blocking
    host = ScriptedHost(st.services, st.dependency_services)
    code, out, err, remote = run_task(mocker, capsys, deploy, host.script())
    assert code == 9, (code, [l for l in out.splitlines() if "migrations_" in l])
    assert "migrations_untested" in out + err and host.database == "0001"       # blocked, production not migrated


def test_fab_checklist_alone_with_backend_in_dependency_services_reads_it_whatever_lands_first(mocker, capsys, monkeypatch):
    """`fab checklist`: check_rollback_target's observe() and check_migrations run at once; when the
    observation lands first (forced here: observe() before the checklist, as the concurrent read may),
    the revision must still be read."""
    from tasks import checklist as checklist_mod
    from tasks.hoststate import observe as real_observe
    from tests.tasks.test_checklist import production
    monkeypatch.setenv("DEPLOY_SERVICES", "model_server,proxy")
    monkeypatch.setenv("DEPLOY_DEPENDENCY_SERVICES", "postgres,redis,backend")
    monkeypatch.setenv("DEPLOY_TESTED_ON_STAGE", "")
    monkeypatch.setenv("DEPLOY_MONITORING_URL", "")
    real_check = checklist_mod.check_migrations
    mocker.patch.object(checklist_mod, "check_migrations", side_effect=lambda s, remote: (real_observe(s), real_check(s, remote))[1])
    code, out, err, remote = run_task(mocker, capsys, checklist_mod.checklist, production())
    assert "backend is not running" not in out, out
