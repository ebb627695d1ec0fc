"""Runbook 3 (fab services) through the task layer and the real flow (lock, record) on a scripted
host: pull, up, wait until healthy with the downtime measured; a failed pull restarts nothing."""
import re

import pytest
from invoke import Result

from tasks import services as services_mod
from tasks.services import DowntimeProbe, services
from tests.conftest import captured
from tests.tasks.scripted import ALL_V1, IMAGE_INSPECT, LOCK, Containers, Images, all_of, container, flat, records, run_task

COMPOSE = "cd /app/ai-doc-qa && docker compose -f docker-compose.production.yml"
BACKEND_V2 = "sha256:43ddce2e41451555780f60799d3159cc6ef857cf623731a4abc3e2587b2d54ab"
PROBES = "".join(f"1764300000.{i}00 {code}\n" for i, code in enumerate([200, 200, "000", "000", 200, 200]))


class Host:
    """v1 runs; ``up -d`` starts v2 of the backend (healthy, or unhealthy with ``broken``)."""

    def __init__(self, broken=False):
        self.containers = Containers(*all_of())
        self.images = Images(captured("docker-image-inspect.txt"))
        self.images.add(BACKEND_V2, ["127.0.0.1:5000/ai-doc-qa/backend@sha256:" + "6" * 64])
        self.version = "v1"
        self.broken = broken

    def up(self, command):
        health = {"Status": "unhealthy", "Log": [{"Output": "curl: (22) The requested URL returned error: 500"}]} \
            if self.broken else {"Status": "healthy", "Log": []}
        self.containers.by_service["backend"] = container(ALL_V1, "backend", image=BACKEND_V2, Health=health)
        self.version = "v2"
        return ""

    def health(self, command):
        return Result(stdout=f'{{"status": "ok", "version": "{self.version}"}}\n@@status 200 0.01\n', exited=0)

    def script(self, *first):
        return [*LOCK, *first, *self.containers.script(), (IMAGE_INSPECT, self.images),
                (r" up -d$", self.up), (r"curl .*8000/health", self.health), (r"while \[ ! -e ", PROBES),
                (r"curl ", Result(stdout="ok\n@@status 200 0.01\n", exited=0))]


def test_services_pulls_switches_and_reports_the_downtime_it_measured(mocker, capsys):
    host = Host()
    code, out, err, remote = run_task(mocker, capsys, services, host.script())
    assert code == 0, err
    changes = [c for c in remote.commands if c.startswith(COMPOSE) and (" pull " in c or " up " in c)]
    assert changes == [f"{COMPOSE} pull --quiet -- backend model_server proxy", f"{COMPOSE} up -d"]
    assert "      downtime of http://localhost/api/v1/documents: 0.2 s (2 of 6 probes failed)" in out
    assert ("      healthy: backend 43ddce2e4145, model_server 5ea9bf2b66a1, proxy 08bad6c75c0b; "
            "http://localhost:8000/health reports version v2") in out
    evs = records(remote)
    assert [e["event"] for e in evs][0] == "start" and evs[-1]["outcome"] == "success"
    [down] = [e for e in evs if e["event"] == "downtime"]
    assert (down["probes"], down["failed"], down["longest_seconds"]) == (6, 2, 0.2)
    before = next(e for e in evs if e["event"] == "images_before")
    assert before["images"]["backend"]["id"].startswith("sha256:54108187d377") and before["healthy"]
    assert evs[-1]["serving"].startswith("serving the new version v2 (backend 43ddce2e4145")
    # the probe was stopped through its stop file
    assert any(c.startswith("touch /tmp/ai-doc-qa-") and c.endswith("-probe") for c in remote.commands)


def test_every_switch_reports_its_change_window(mocker, capsys):
    """Issue 9, target 6: from the first command that changes what serves (``up``) to the new
    version serving healthily, in the release record and under the timing table."""
    code, out, err, remote = run_task(mocker, capsys, services, Host().script())
    assert code == 0, err
    evs = records(remote)
    [window] = [e for e in evs if e["event"] == "change_window"]
    assert window["seconds"] >= 0 and window["strategy"] == "recreate"
    names = [e["event"] + ":" + str(e.get("sub")) for e in evs]
    assert names.index("step:up") < names.index("change_window:None") < names.index("end:None")
    assert re.search(r"^change window +\d+\.\d\d +\d+\.\d%  first change of what serves -> new version healthy$", out, re.M)


def test_a_failed_pull_restarts_nothing_and_says_the_old_containers_still_serve(mocker, capsys):
    host = Host()
    failed = (r" pull --quiet", Result(stdout="", stderr="manifest for 127.0.0.1:5000/ai-doc-qa/backend:latest not found",
                                       exited=1))
    code, out, err, remote = run_task(mocker, capsys, services, host.script(failed))
    assert code == 3
    assert "pulling the new images of backend, model_server, proxy failed: exited with code 1" in flat(err)
    assert "manifest for 127.0.0.1:5000/ai-doc-qa/backend:latest not found" in err
    assert "no container was restarted" in flat(err)
    assert "Next: check the image tags and the registry from the host (docker pull <image>), then re-run fab deploy" in flat(err)
    assert not [c for c in remote.commands if " up " in c or "docker tag" in c]
    assert records(remote)[-1]["outcome"] == "failed"


def test_an_unhealthy_new_backend_is_rolled_back_to_the_recorded_images(mocker, capsys):
    host = Host(broken=True)
    code, out, err, remote = run_task(mocker, capsys, services, [
        (r"docker tag ", lambda cmd: host.containers.by_service.update(backend=container(ALL_V1, "backend")) or ""),
        *host.script()])
    assert code == 7, err
    [tag] = [c for c in remote.commands if c.startswith("docker tag")]
    assert tag == ("docker tag sha256:54108187d377d75942eb0494a8a5fe3ed79673ade06ff6af8ff64360804e4b1d "
                   "127.0.0.1:5000/ai-doc-qa/backend:latest")
    assert f"{COMPOSE} up -d --no-deps -- backend" in remote.commands
    assert "the previous images were restored automatically and are healthy" in flat(err)
    assert records(remote)[-1]["outcome"] == "rolled_back"


def test_the_downtime_probe_is_not_run_in_a_dry_run(make_session):
    s, remote = make_session(dry=True)
    probe = DowntimeProbe(s, "http://localhost/health")
    probe.start()
    assert probe.stop() is None and remote.commands == []


def test_a_failing_probe_never_breaks_the_deploy(make_session):
    s, remote = make_session([(r"while \[ ! -e ", lambda cmd: (_ for _ in ()).throw(OSError("channel closed")))])
    probe = DowntimeProbe(s, "http://localhost/health")
    probe.start()
    assert probe.stop() is None                 # measured nothing, raised nothing


def test_a_probe_that_cannot_be_stopped_reports_nothing(make_session, mocker):
    s, remote = make_session([(r"while \[ ! -e ", PROBES)])
    probe = DowntimeProbe(s, "http://localhost/health")
    probe.start()
    mocker.patch.object(s, "run", side_effect=OSError("gone"))
    assert probe.stop() is None


@pytest.mark.parametrize("step, label", [(services_mod.pull_step, "pull")])
def test_pull_step_names_its_step_in_the_error(make_session, step, label):
    from tasks.errors import DeployError
    from tasks.steps import RunOptions
    s, remote = make_session([(r"compose version", "v2 2.26.1\n"), (r" pull ", Result(stdout="", exited=18))])
    with pytest.raises(DeployError) as exc:
        step(s, RunOptions("deploy"))
    assert exc.value.step == label
