"""Text leaving the tool through its task layer (the lock holder file, the takeover record,
--json, the run log, the command line, the config error), tried as an attacker and a careless
operator would (adversary pass over issue 7). Each test is named after the defect it found."""
import json
import logging
import shlex

import pytest
from invoke import Exit, MockContext

from commands.secrets import Redactor
from tasks import checklist as checklist_mod
from tasks import flow as flow_mod
from tasks import locking, locktasks, runlog, ui
from tasks.conftest import hermetic_config
from tasks.deploy import DEPLOY_STEPS
from tasks.hostsecrets import learn_secrets
from tasks.runstate import Observation
from tasks.steps import RunOptions, Step

PATTERN = r"(?i)(PASS|SECRET|TOKEN|KEY|AUTH)"
SECRET = "sentinel-adv-7c1e94b2"


def appended_lines(remote) -> list[dict]:
    """The JSON lines the tool appended to the release record on the (scripted) host."""
    out = []
    for c in remote.commands:
        if "releases.jsonl" in c and ">>" in c:
            out.extend(json.loads(w) for w in shlex.shlex(c, posix=True, punctuation_chars=True) if w.startswith('{"'))
    return out


@pytest.fixture
def secret_session(make_session):
    def make(script=()):
        s, remote = make_session(script)
        s.redactor = Redactor(PATTERN)
        s.redactor.add_env({"SECRET_KEY": SECRET, "AUTH_ENABLED": "true"})
        ui.set_redactor(s.redactor)
        return s, remote
    return make


def test_lock_holder_file_on_the_host_never_gets_a_secret_from_the_message(secret_session):
    s, remote = secret_session([(r"mkdir", "acquired\n")])
    lk = locking.DeployLock(s, "deploy", f"hotfix; the old key {SECRET} leaked", 0)
    lk._start_heartbeat = lambda: None
    lk.__enter__()
    acquire = next(c for c in remote.commands if "holder.json" in c and "mkdir" in c)
    assert SECRET not in acquire and "the old key [REDACTED] leaked" in acquire


def test_lock_takeover_record_is_redacted_before_it_is_serialized(secret_session):
    holder = {"token": "ab12", "who": "mallory@x", "message": f'TOKEN="{SECRET}" \x1b]0;pwned\x07 AUTH="x y"',
              "lock_stale_after": 120}
    s, remote = secret_session([(r"^\( \[ -d .*cat -- ", json.dumps(holder) + "\nclock 1000 100 90\n")])
    locktasks.unlock.body.__wrapped__(s, force=True)
    (line,) = appended_lines(remote)              # valid JSON (redacting the text broke the escaped quotes)
    assert line["event"] == "lock_takeover" and "token" not in line["previous_holder"]
    assert line["previous_holder"]["message"] == 'TOKEN="[REDACTED]"  AUTH="[REDACTED]"'


def test_json_output_stays_valid_json_when_a_secret_value_is_true(secret_session, mocker, capsys):
    s, _ = secret_session()
    mocker.patch.object(flow_mod, "DeployLock")
    mocker.patch.object(flow_mod, "notify", return_value=(True, "posted"))
    img = {"backend": {"ref": "reg/backend:v1", "id": "sha256:" + "1" * 64, "digests": []}}
    mocker.patch.object(flow_mod, "observe", return_value=Observation(img, True, "v1"))
    ui.set_json_mode(True)                           # as the task wrapper does for --json
    try:
        flow_mod.run_flow(s, (Step("checklist", lambda s, opts: None),),
                          RunOptions(kind="deploy", json_out=True, message=f"note {SECRET}"))
    finally:
        ui.set_json_mode(False)
    raw = capsys.readouterr().out
    out = json.loads(raw)                            # `"after_healthy": [REDACTED]` was not JSON
    assert out["before_healthy"] is True and out["outcome"] == "success" and SECRET not in raw


def test_run_log_file_is_redacted_and_free_of_escape_sequences(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    r = Redactor(PATTERN)
    r.add_env({"SECRET_KEY": SECRET})
    ui.set_redactor(r)
    with runlog.opened("status") as log:
        logging.getLogger("paramiko.transport").warning("banner said %s \x1b]52;c;Y3VybCBldmls\x07", SECRET)
        log.write(f"our own line with {SECRET}")
    text = log.path.read_text()
    assert "banner said [REDACTED]" in text and "our own line with [REDACTED]" in text
    assert SECRET not in text and "\x1b" not in text


def test_config_error_echo_of_a_huge_value_is_cut_after_redaction(monkeypatch, capsys):
    from tasks.verify import smoke
    monkeypatch.setenv("DEPLOY_APP_DIR", "relative/" + "x" * 100_000)
    monkeypatch.setenv("DEPLOY_WEBHOOK_URL", "https://hooks.example.com/services/T0/" + "B" * 5000 + " bad")
    with pytest.raises(Exit) as exc:
        smoke(MockContext(config=hermetic_config()), stage="production")
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "APP_DIR (environment variable DEPLOY_APP_DIR)" in err
    assert len(err) < 4000 and "BBBB" not in err


# ---- the command line: bounded values --------------------------------------------------------------

def run_fab(argv, monkeypatch):
    """The real fab command line, in-process, with this checkout's task collection."""
    import contextlib
    import io

    from fabric.main import Fab

    import fabfile
    from tasks.program import make_program
    monkeypatch.setattr(Fab, "load_collection", lambda self: setattr(self, "collection", fabfile.ns))
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            make_program().run(["fab", *argv])
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def test_a_message_too_long_for_one_remote_command_is_a_usage_error(monkeypatch, mocker):
    connect = mocker.patch("tasks.base.connect")
    code, _, err = run_fab(["deploy", "--stage", "production", "--message", "m" * 200_000], monkeypatch)
    assert code == 2 and "--message is 200000 characters long; at most 1000" in err and len(err) < 2000
    connect.assert_not_called()


def test_a_lock_wait_that_is_finite_but_endless_is_a_usage_error(monkeypatch, mocker):
    connect = mocker.patch("tasks.base.connect")
    code, _, err = run_fab(["deploy", "--stage", "production", "--lock-wait", "1e300"], monkeypatch)
    assert code == 2 and "--lock-wait must be at most 604800 seconds, got '1e300'" in err
    connect.assert_not_called()


def test_deploy_message_reaches_the_checklist_and_its_start_notification(make_session, mocker):
    """deploy --message is what the checklist's deploy_starting notification carries (it got "")."""
    s, _ = make_session()
    checked = mocker.patch.object(checklist_mod, "checked")
    step = next(st for st in DEPLOY_STEPS if st.name == "checklist")
    step.run(s, RunOptions(kind="deploy", message="hotfix for INC-42"))
    checked.assert_called_once_with(s, "hotfix for INC-42")


def test_history_of_a_hostile_record_is_bounded_and_names_the_inconsistent_release(mocker, capsys):
    from commands import record
    from tasks import base
    from tasks.conftest import Remote
    from tasks.status import history
    img = {"backend": {"ref": "reg/backend:v1", "id": "sha256:" + "1" * 64, "digests": []}}
    rid = "20261201T000000Z-aaaa"
    lines = [record.line(rid, "start", kind="deploy", who="eve\x1b]0;t\x07" + "w" * 50_000, steps=["services"]),
             record.line(rid, "images_before", images=img, healthy=True),
             record.line(rid, "step", step="services", sub=None, seconds=1.0, ok=True),
             record.line(rid, "images_after", images=img, healthy=True),
             record.line(rid, "end", outcome="success", seconds=1.0),
             record.line(rid, "images_after", images=img, healthy=True)]        # appended after the end
    text = "\n".join(lines) + "\n"
    remote = Remote([(r"^if \[ -e .*releases.jsonl \]", f"{len(lines)} 1\n{text}"), (r"compose version --short", "v2 2.26.1\n")])
    cxn = mocker.Mock()
    cxn.run.side_effect = remote
    mocker.patch.object(base, "connect", return_value=cxn)
    history(MockContext(config=hermetic_config()), stage="production")
    out = capsys.readouterr().out
    assert len(out) < 5000 and "\x1b" not in out and "success (inconsistent)" in out
    assert f"1 release(s) whose events do not add up are never used as rollback targets ({rid}: images_after" in out


def test_secret_values_that_are_ordinary_words_are_reported_and_a_yes_no_value_does_not_garble_output(make_session, capsys):
    env = "AUTH_ENABLED=true\nADMIN_PASSWORD=admin\nAPI_TOKEN=20240101\nSECRET_KEY=" + SECRET + "\n\n"
    s, _ = make_session([("@@ai-doc-qa-file@@", "@@ai-doc-qa-file@@/app/ai-doc-qa/.env.production\n" + env)])
    learn_secrets(s)
    out = capsys.readouterr().out
    assert "plain words or numbers: ADMIN_PASSWORD, API_TOKEN" in out
    assert "AUTH_ENABLED: secret-looking name(s) with a yes/no value" in out
    r = s.redactor
    assert r("git show x 2>/dev/null || true") == "git show x 2>/dev/null || true"       # was `|| [REDACTED]`
    assert r("AUTH_ENABLED=true admin 20240101") == "AUTH_ENABLED=[REDACTED] [REDACTED] [REDACTED]"
    learn_secrets(s)                                                                     # a second read: no repeat
    assert "plain words" not in capsys.readouterr().out


def test_secret_on_a_line_compose_reads_but_python_dotenv_cannot_is_still_learned(make_session, capsys):
    # Compose v2 hands `KEY: value` from an env_file to the container; python-dotenv skipped the line.
    env = "LOG_LEVEL=info\nSECRET_KEY: sentinel-yaml-4d2e91\nDB_PASSWORD='sentinel-quoted-77 \nX=1\n\n"
    s, _ = make_session([("@@ai-doc-qa-file@@", "@@ai-doc-qa-file@@/app/ai-doc-qa/.env.production\n" + env)])
    learn_secrets(s)
    assert s.redactor("log: sentinel-yaml-4d2e91 and sentinel-quoted-77") == "log: [REDACTED] and [REDACTED]"
    assert "python-dotenv could not parse" not in capsys.readouterr().err


def test_rollback_with_an_unreadable_record_says_so_instead_of_no_healthy_release(make_session, capsys):
    from tasks import rollback as rollback_mod
    from tasks.errors import DeployError
    s, _ = make_session([(r"^if \[ -e .*releases.jsonl \]", "@@record-unreadable@@\n")])
    with pytest.raises(DeployError) as exc:
        rollback_mod.resolve_target(s, "", {})
    out = capsys.readouterr().out
    assert "exists but cannot be read by the SSH user" in out and "unknown, not empty" in out
    assert any("cannot be read by the SSH user: fix its owner or mode" in line for line in exc.value.output)


def test_an_empty_dash_h_is_a_usage_error_not_every_host_of_the_stage(monkeypatch, mocker):
    connect = mocker.patch("tasks.base.connect")
    code, _, err = run_fab(["-H", "", "status", "--stage", "production"], monkeypatch)
    assert code == 2 and "-H was given an empty host list" in err
    connect.assert_not_called()


def test_resolving_a_name_the_idna_codec_refuses_is_a_connection_error_not_a_traceback():
    from tasks.errors import DeployError, ExitCode
    from tasks.ssh import resolve
    with pytest.raises(DeployError) as exc:             # -H takes such a name; the config now refuses it
        resolve("x" * 64 + ".example", 22, 5)
    assert exc.value.code == ExitCode.CONNECTION and "could not resolve host" in exc.value.what
