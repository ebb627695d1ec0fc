"""Issue 9, target 4: STRATEGY=blue-green fails no request. A prober sends 20 requests per second
through the proxy while the tool deploys, rolls back and fails on the real staging host; the
backend moves between its two slots (backend :8000, backend_green :8002)."""
import signal

import pytest

from tests.integration.conftest import PROXY, flat
from tests.integration.prober import Prober
from tests.integration.test_faults import wait_for_event

STAGING = ["--stage", "staging"]
BLUE_GREEN = {"DEPLOY_STRATEGY": "blue-green"}
URL = f"{PROXY}/api/v1/documents"


def slot_of(rel: list[dict], event: str) -> str:
    return [e for e in rel if e["event"] == event][0].get("slot", "")


def running(sandbox, service: str) -> bool:
    """A slot that was never created does not run either."""
    ids = sandbox.docker("ps", "-aq", "--filter", f"label=com.docker.compose.service={service}").split()
    return bool(ids) and sandbox.container(service)["State"]["Status"] == "running"


@pytest.mark.parametrize("compose", ["v2", "v1"])
def test_blue_green_deploy_and_rollback_fail_no_request(sandbox, compose):
    sandbox.reset(compose)
    sandbox.ctl("version", "v2")
    with Prober(URL) as deploy_probe:
        r = sandbox.fab("deploy", *STAGING, env=BLUE_GREEN)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "blue-green: starting slot backend_green" in r.stdout and "stopping slot backend " in r.stdout
    assert sandbox.version(PROXY) == "v2" and sandbox.version("http://127.0.0.1:8002") == "v2"
    assert running(sandbox, "backend_green") and not running(sandbox, "backend")
    rel = sandbox.last_release("deploy")
    assert (slot_of(rel, "images_before"), slot_of(rel, "images_after")) == ("backend", "backend_green")
    status = sandbox.fab("status", *STAGING, env=BLUE_GREEN)
    assert "backend_green serves (http://localhost:8002/health)" in flat(status)

    with Prober(URL) as rollback_probe:
        r = sandbox.fab("rollback", *STAGING, env=BLUE_GREEN)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sandbox.version(PROXY) == "v1"
    assert running(sandbox, "backend") and not running(sandbox, "backend_green")
    assert slot_of(sandbox.last_release("rollback"), "images_after") == "backend"
    assert deploy_probe.total > 20 and rollback_probe.total > 20      # the prober ran during both
    assert deploy_probe.failures == [] and rollback_probe.failures == []
    assert not sandbox.lock_held()


def test_a_failing_new_slot_leaves_the_old_slot_serving(sandbox):
    """backend:latest answers 500 on /health: the new slot never becomes healthy, so the old slot
    is never stopped, with or without the automatic rollback, and the failed new slot is stopped
    (it would keep taking half of the proxy's requests)."""
    sandbox.reset("v2")
    sandbox.ctl("version", "v2")
    assert sandbox.fab("deploy", *STAGING, env=BLUE_GREEN).returncode == 0       # v2 in backend_green
    sandbox.ctl("version", "broken")
    with Prober(URL) as probe:
        r = sandbox.fab("deploy", *STAGING, env={**BLUE_GREEN, "DEPLOY_AUTO_ROLLBACK": "false"})
    assert r.returncode == 4, r.stdout + r.stderr
    out = flat(r)
    assert "FAILED at services › slot switch › health wait" in out and "the new slot backend did not become healthy" in out
    assert "the new slot backend was stopped; backend_green serves the previous version as before" in out
    assert running(sandbox, "backend_green") and not running(sandbox, "backend")
    assert sandbox.version(PROXY) == "v2"

    with Prober(URL) as auto_probe:
        r = sandbox.fab("deploy", *STAGING, env=BLUE_GREEN)
    assert r.returncode == 7, r.stdout + r.stderr
    assert running(sandbox, "backend_green") and not running(sandbox, "backend")
    assert sandbox.version(PROXY) == "v2"
    rel = sandbox.last_release("deploy")
    assert rel[-1]["outcome"] == "rolled_back" and slot_of(rel, "images_after") == "backend_green"
    assert probe.failures == [] and auto_probe.failures == []
    assert probe.total > 20 and auto_probe.total > 20


def test_sigterm_during_the_slot_switch_keeps_the_old_slot_and_stops_the_new(sandbox):
    """SIGTERM (a cancelled CI job) once the services step has started: the clean-up keeps (or
    brings back) the slot that served before the run and stops the new one; no request fails."""
    sandbox.reset("v2")
    sandbox.ctl("version", "v2")
    env = {**BLUE_GREEN, "DEPLOY_HEALTH_INTERVAL": "1"}
    with Prober(URL) as probe:
        proc = sandbox.fab_background("deploy", *STAGING, env=env)
        wait_for_event(sandbox, proc, lambda e: e["event"] == "step" and e["step"] == "services" and e["sub"] == "up",
                       60, "the services step's up")
        proc.send_signal(signal.SIGTERM)
        out = sandbox.finish(proc, 120)
    assert proc.returncode == 143, out
    assert "SIGTERM: cleaning up" in out and "Traceback" not in out
    assert running(sandbox, "backend") and not running(sandbox, "backend_green"), out
    assert sandbox.version(PROXY) == "v1"
    rel = sandbox.last_release("deploy")
    assert rel[-1]["outcome"] == "aborted" and not sandbox.lock_held()
    assert probe.failures == [] and probe.total > 20
