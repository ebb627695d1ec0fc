"""Deploy notifications (tasks/notify.py): one JSON POST to WEBHOOK_URL, redacted, bounded in time;
a failing webhook is reported, never raised."""
import dataclasses
import json

import pytest

from tasks import notify as notify_mod
from tasks import web
from tasks.notify import notify

HOOK = "http://127.0.0.1:9100/hook"
SECRET = "sentinel-hook-secret-4b2d9e"


@pytest.fixture
def hooked(make_session, settings):
    def make(**kw):
        s, remote = make_session(settings=dataclasses.replace(settings, webhook_url=HOOK), **kw)
        s.redactor.add(SECRET, "API_TOKEN")
        return s
    return make


def test_without_a_webhook_nothing_is_sent(make_session, mocker):
    request = mocker.patch.object(web, "request")
    s, _ = make_session()
    assert notify(s, "deploy_starting") == (False, "not configured (WEBHOOK_URL is empty)")
    request.assert_not_called()


def test_a_dry_run_only_says_what_it_would_post(hooked, mocker):
    request = mocker.patch.object(web, "request")
    assert notify(hooked(dry=True), "deploy_finished") == (True, "[dry] would POST deploy_finished to the webhook")
    request.assert_not_called()


def test_the_post_is_redacted_json_with_a_deadline(hooked, mocker):
    request = mocker.patch.object(web, "request", return_value=web.HttpAnswer(HOOK, 204, 0.01))
    mocker.patch.object(notify_mod, "operator", return_value="alice@laptop")
    ok, detail = notify(hooked(), "deploy_failed", {"error": f"backend said {SECRET}", "release": "r1"})
    assert (ok, detail) == (True, "posted deploy_failed (HTTP 204)")
    (method, url), kw = request.call_args
    assert (method, url, kw["deadline"], kw["headers"]) == ("POST", HOOK, 5.0, {"Content-Type": "application/json"})
    body = json.loads(kw["data"])
    assert SECRET not in kw["data"].decode()
    assert {k: body[k] for k in ("service", "event", "stage", "host", "who", "release")} == {
        "service": "ai-doc-qa", "event": "deploy_failed", "stage": "production", "host": "deploy@prod",
        "who": "alice@laptop", "release": "r1"}
    assert body["error"].startswith("backend said ") and body["at"].endswith("+00:00")


def test_a_failing_webhook_is_reported_not_raised(hooked, mocker):
    mocker.patch.object(web, "request", return_value=web.HttpAnswer(HOOK, 0, 5.0, error="timed out: no complete answer within 5 s"))
    assert notify(hooked(), "deploy_starting") == (False, "webhook POST failed: timed out: no complete answer within 5 s")
    mocker.patch.object(web, "request", return_value=web.HttpAnswer(HOOK, 500, 0.1, "oops"))
    assert notify(hooked(), "deploy_starting") == (False, "webhook answered HTTP 500")
