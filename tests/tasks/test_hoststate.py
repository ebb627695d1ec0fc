"""The host readers (tasks/hoststate.py) on a scripted host answering with captured output: which
commands they issue, what they make of the answers, and how the polls end (ready, failed fast,
deadline). Time is simulated: no test waits."""
import json

import pytest
from invoke import Result

from tasks import hoststate
from tasks.errors import DeployError, ExitCode
from tasks.runstate import Observation
from tests.conftest import captured
from tests.tasks.scripted import ALL_V1, COMPOSE_V2, DOCKER_PS, IMAGE_INSPECT, Containers, Images, all_of, container

COMPOSE = "cd /app/ai-doc-qa && docker compose -f docker-compose.production.yml"
BACKEND_V1 = "sha256:54108187d377d75942eb0494a8a5fe3ed79673ade06ff6af8ff64360804e4b1d"
MODEL_V1 = "sha256:5ea9bf2b66a17f40a4f5f0e6e1b4a02bc1e2a6691ec501a690672fb213f8b3f4"
HEALTH_V1 = Result(stdout='{"status": "ok", "version": "v1"}\n@@status 200 0.004\n', exited=0)


@pytest.fixture
def host(make_session):
    def make(*script):
        return make_session([COMPOSE_V2, *script])
    return make


class Clock:
    """time.monotonic and time.sleep of hoststate: sleeping advances the clock, nothing waits."""

    def __init__(self, mocker):
        self.now, self.slept = 1000.0, []
        mocker.patch.object(hoststate.time, "monotonic", side_effect=lambda: self.now)
        mocker.patch.object(hoststate.time, "sleep", side_effect=self.sleep)

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


# ---- containers and images ---------------------------------------------------------------------------

def test_containers_reads_ps_ids_then_inspects_them(host):
    s, remote = host(*Containers(*all_of()).script())
    found = hoststate.containers(s, ["backend", "proxy"], env_keys=["APP_ENV"])
    assert sorted(c.service for c in found) == ["backend", "proxy"]
    backend = next(c for c in found if c.service == "backend")
    assert backend.env == {"APP_ENV": "production"} and backend.image_id == BACKEND_V1
    assert remote.commands[-2] == f"{COMPOSE} ps -a -q -- postgres redis backend model_server proxy"
    assert remote.commands[-1].startswith("docker inspect -- ") and len(remote.commands[-1].split()) == 8


def test_container_ids_are_resolved_once_until_something_changes(host):
    """Issue 9: one Compose call per run of reads, not one per read or poll (a Compose start costs
    ~0.6 s on v1); ``docker inspect`` reads the state fresh each time; a change drops the IDs."""
    s, remote = host(*Containers(*all_of()).script())
    assert [c.service for c in hoststate.containers(s, ["backend"])] == ["backend"]
    assert hoststate.backend_running(s)
    assert sorted(c.service for c in hoststate.containers(s, ["model_server", "proxy", "backend"])) == [
        "backend", "model_server", "proxy"]
    assert [c for c in remote.commands if " ps " in c] == [f"{COMPOSE} ps -a -q -- postgres redis backend model_server proxy"]
    assert len([c for c in remote.commands if c.startswith("docker inspect")]) == 3
    s.run(f"{COMPOSE} up -d", mutating=True)
    hoststate.containers(s, ["backend"])
    assert len([c for c in remote.commands if " ps " in c]) == 2
    s.run("bookkeeping", mutating=True, bookkeeping=True)         # the record, the lock: nothing that runs changed
    hoststate.containers(s, ["backend"])
    assert len([c for c in remote.commands if " ps " in c]) == 2


def test_a_container_removed_since_its_id_was_read_is_resolved_again(host):
    everything = Containers(*all_of())
    gone = {"n": 0}

    def inspect(command):
        gone["n"] += 1
        return Result(stdout="", stderr="Error: No such object", exited=1) if gone["n"] == 2 else everything.inspect(command)
    s, remote = host((r" ps -a -q", everything.ps("all")), (DOCKER_PS, everything.docker_ps), (r"^docker inspect", inspect))
    hoststate.containers(s, ["backend"])
    assert [c.service for c in hoststate.containers(s, ["backend"])] == ["backend"]
    # Resolved again from Compose's labels: the first inspect taught the project (no Compose start).
    assert [c.split(" ", 2)[:2] for c in remote.commands if " ps " in c] == [["cd", "/app/ai-doc-qa"], ["docker", "ps"]]


def test_no_container_means_no_docker_inspect(host):
    s, remote = host((r"ps -a -q", "\n"))
    assert hoststate.containers(s) == []
    assert not [c for c in remote.commands if c.startswith("docker inspect")]


def test_containers_keeps_only_the_services_asked_for(host):
    everything = Containers(*all_of())
    s, remote = host((r"ps -a -q", everything.ps("all")), (r"^docker inspect", everything.inspect))
    assert [c.service for c in hoststate.containers(s, ["redis"])] == ["redis"]


def test_images_of_records_ref_id_and_digests_from_captured_image_inspect(host):
    s, remote = host(*Containers(*all_of()).script(), (IMAGE_INSPECT, Images(captured("docker-image-inspect.txt"))))
    states = hoststate.containers(s)
    images = hoststate.images_of(s, states, ["backend", "model_server", "proxy"])
    assert images["backend"] == {
        "ref": "127.0.0.1:5000/ai-doc-qa/backend:latest", "id": BACKEND_V1,
        "digests": ["127.0.0.1:5000/ai-doc-qa/backend@sha256:486e06e116830474ff9b980fe0ee9a9c634595496858dc015e5d82e38c4ea4f4"]}
    assert images["model_server"]["digests"] == [
        "127.0.0.1:5000/ai-doc-qa/model-server@sha256:7822fd25a55e016342217865d4df94cc8163b198d737ad16189c091b13bf3088"]
    assert images["proxy"]["digests"] == []          # the capture did not ask for it: no digest known
    assert list(images) == ["backend", "model_server", "proxy"]      # postgres and redis are not deployed services
    [call] = [c for c in remote.commands if c.startswith("docker image inspect")]
    assert call.count("docker image inspect") == 1 and call.endswith(" ; true") and call.count(" sha256:") == 3


def test_images_of_nothing_running_asks_nothing(host):
    s, remote = host()
    assert hoststate.images_of(s, [], ["backend"]) == {}
    assert remote.commands == []


def test_describe_and_label():
    images = {"proxy": {"id": "sha256:" + "b" * 64}, "backend": {"id": BACKEND_V1}}
    assert hoststate.describe_images(images) == "backend 54108187d377, proxy bbbbbbbbbbbb"
    assert hoststate.describe_images({}) == "no service containers"
    assert hoststate.label(images, "v2") == "v2 (backend 54108187d377, proxy bbbbbbbbbbbb)"
    assert hoststate.label({}) == "(no service containers)"


def test_backend_running_and_container_of(host):
    sick = Containers(container("docker-inspect-postgres-exited.json"))
    s, remote = host(*Containers(*all_of()).script())
    assert hoststate.backend_running(s)
    assert hoststate.container_of(s, "redis").name == "ai-doc-qa-redis-1"
    s, remote = host(*sick.script())
    assert not hoststate.backend_running(s)
    assert hoststate.container_of(s, "backend") is None
    assert hoststate.container_of(s, "postgres").status == "exited"


# ---- checks ------------------------------------------------------------------------------------------

def test_http_check_runs_curl_on_the_host_with_its_timeout(host):
    s, remote = host((r"curl ", Result(stdout=captured("curl-model-server-hang.txt"),
                                       stderr=captured("curl-model-server-hang.txt.stderr"), exited=28)))
    check = hoststate.http_check(s, "http://127.0.0.1:8001/health", timeout=5)
    assert not check.ok and check.error == "timed out: the request hung"
    assert "--max-time 5 http://127.0.0.1:8001/health" in remote.commands[0]
    s, remote = host((r"curl ", HEALTH_V1))
    check = hoststate.http_check(s, "http://localhost:8000/health")
    assert check.ok and check.version == "v1"
    assert "--max-time 10 " in remote.commands[0]            # SMOKE_TIMEOUT by default


def test_logs_tail_drops_the_terminal_codes_compose_prints(host):
    s, remote = host((r"logs --no-color --tail=15 -- postgres",
                      Result(stdout=captured("compose-v2-logs-postgres-stopped.txt"),
                             stderr=captured("compose-v2-logs-postgres-stopped.txt.stderr"), exited=0)))
    text = hoststate.logs_tail(s, "postgres", 15)
    assert "\x1b" not in text
    assert text.splitlines()[-2] == "postgres-1  | 2026-11-28 06:29:57.528 UTC [1] LOG:  database system is shut down"
    assert remote.commands[-1] == f"{COMPOSE} logs --no-color --tail=15 -- postgres"


# ---- polls -------------------------------------------------------------------------------------------

def test_wait_ready_returns_once_every_service_is_healthy(host, mocker):
    clock = Clock(mocker)
    starting = Containers(*all_of())
    starting.by_service["backend"] = container(ALL_V1, "backend", Health={"Status": "starting", "Log": []})
    healthy = Containers(*all_of())
    polls = iter([starting, starting, healthy])
    current = {}

    def inspect(command):
        current["host"] = next(polls)
        return current["host"].inspect(command)
    s, remote = host((r"ps -a -q", healthy.ps), (r"^docker inspect", inspect))
    states = hoststate.wait_ready(s, ["backend", "proxy"], 60, what="x", step="services › health wait")
    assert sorted(c.service for c in states) == ["backend", "proxy"]
    assert clock.slept == [1, 1]                                   # HEALTH_INTERVAL between polls
    assert sum(c.startswith("docker inspect") for c in remote.commands) == 3
    assert sum(" ps -a -q" in c for c in remote.commands) == 1     # the IDs are read once


def test_a_health_answer_of_an_earlier_poll_is_not_kept_when_docker_decides(host, mocker):
    """The URL answered while the proxy still started; the next poll Docker says every service is
    healthy (no request then): no answer is kept, so the switch asks the URL again, now."""
    Clock(mocker)
    both_starting = Containers(*all_of())
    for svc in ("backend", "proxy"):
        both_starting.by_service[svc] = container(ALL_V1, svc, Health={"Status": "starting", "Log": []})
    healthy = Containers(*all_of())
    polls = iter([both_starting, healthy])
    s, remote = host((r"ps -a -q", healthy.ps), (r"^docker inspect", lambda command: next(polls).inspect(command)),
                     (r"curl ", HEALTH_V1))
    hoststate.wait_ready(s, ["backend", "proxy"], 60, what="x", step="services › health wait",
                         http=("backend", "http://localhost:8000/health"))
    # Asked beside each inspect while the backend started (the second answer came as Docker decided): not kept.
    assert sum("curl " in c for c in remote.commands) == 2
    assert s.state.health_answer is None


def test_the_url_is_not_asked_beside_the_inspect_once_the_backend_is_past_starting(host, mocker):
    """The first poll asks the URL beside the inspect; when the backend is healthy already (only the
    proxy starts), the next polls ask Docker alone: nothing the URL could change is waiting."""
    Clock(mocker)
    proxy_starting = Containers(*all_of())
    proxy_starting.by_service["proxy"] = container(ALL_V1, "proxy", Health={"Status": "starting", "Log": []})
    healthy = Containers(*all_of())
    polls = iter([proxy_starting, proxy_starting, healthy])
    s, remote = host((r"ps -a -q", healthy.ps), (r"^docker inspect", lambda command: next(polls).inspect(command)),
                     (r"curl ", HEALTH_V1))
    hoststate.wait_ready(s, ["backend", "proxy"], 60, what="x", step="services › health wait",
                         http=("backend", "http://localhost:8000/health"))
    assert sum(c.startswith("docker inspect") for c in remote.commands) == 3
    assert sum("curl " in c for c in remote.commands) == 1 and s.state.health_answer is None


def test_wait_ready_with_the_health_url_stops_as_soon_as_it_answers_not_at_dockers_interval(host, mocker):
    """Target 2 (issue 9): after `up`, the backend counts as ready once its health URL answers while
    Docker still reports `starting`; polls every 0.1 s; the IDs are resolved once, then only
    `docker inspect` and curl run per poll (no compose call); the answer that made it ready is
    kept (the switch does not ask the URL again)."""
    clock = Clock(mocker)
    starting = Containers(*all_of())
    starting.by_service["backend"] = container(ALL_V1, "backend", Health={"Status": "starting", "Log": []})
    answers = iter([Result(stdout="curl: (7) Failed to connect\n@@status 000 0.001\n", exited=7), HEALTH_V1])
    s, remote = host((r"ps -a -q", starting.ps), (r"^docker inspect", starting.inspect),
                     (r"curl ", lambda command: next(answers)))
    states = hoststate.wait_ready(s, ["backend", "proxy"], 60, what="x", step="services › health wait",
                                  http=("backend", "http://localhost:8000/health"))
    assert sorted(c.service for c in states) == ["backend", "proxy"]
    assert clock.slept == [0.1]
    assert sum(" ps -a -q" in c for c in remote.commands) == 1
    assert sum(c.startswith("docker inspect") for c in remote.commands) == 2
    assert sum("curl " in c for c in remote.commands) == 2
    assert s.state.health_answer.ok and s.state.health_answer.version == "v1"


def test_wait_ready_fails_fast_on_an_unhealthy_container_with_its_logs(host, mocker):
    clock = Clock(mocker)
    sick = Containers(container("docker-inspect-backend-unhealthy.json"))
    s, remote = host(*sick.script(), (r"logs --no-color --tail=20 -- backend", "backend-1  | ERROR boom\n"))
    with pytest.raises(DeployError) as exc:
        hoststate.wait_ready(s, ["backend"], 60, what="the services did not become healthy", step="services › health wait")
    err = exc.value
    assert err.code == ExitCode.UNHEALTHY and clock.slept == []
    assert err.what.startswith("the services did not become healthy: backend (ai-doc-qa-backend-1): unhealthy; "
                               "last healthcheck said: curl: (22) The requested URL returned error: 500")
    assert err.command == f"{COMPOSE} logs --no-color --tail=20 -- backend"
    assert err.output == "--- backend ---\nbackend-1  | ERROR boom"
    assert err.next_step == ("fab -H deploy@prod rollback   (back to the images recorded before this deploy), "
                             "then fab -H deploy@prod diagnose")


def test_wait_ready_gives_up_at_its_deadline_saying_what_it_waited_for(host, mocker):
    clock = Clock(mocker)
    starting = Containers(container(ALL_V1, "backend", Health={"Status": "starting", "Log": []}))
    s, remote = host(*starting.script(), (r"logs --no-color", ""))
    with pytest.raises(DeployError) as exc:
        hoststate.wait_ready(s, ["backend"], 5, what="postgres did not become healthy", step="check-db › fix",
                             next_step="escalate")
    assert exc.value.what == ("postgres did not become healthy: still waiting after 5 s: "
                              "backend (ai-doc-qa-backend-1): health starting")
    assert exc.value.next_step == "escalate" and exc.value.step == "check-db › fix"
    assert len(clock.slept) == 6                 # polled once a second until the 5 s had passed


def test_wait_ready_for_a_service_with_no_container_yet(host, mocker):
    Clock(mocker)
    s, remote = host((r"ps -a -q", ""), (r"logs --no-color", ""))
    with pytest.raises(DeployError) as exc:
        hoststate.wait_ready(s, ["backend"], 2, what="not up", step="x")
    assert "still waiting after 2 s: backend: no container yet" in exc.value.what
    assert sum(" ps -a -q" in c for c in remote.commands) == 4      # asked again while no ID is known


def test_dry_run_waits_for_nothing(make_session, capsys):
    s, remote = make_session(dry=True)
    assert hoststate.wait_ready(s, ["backend", "proxy"], 120, what="x", step="y") == []
    check = hoststate.wait_http(s, "http://localhost:8000/health", 60, step="y")
    assert check.ok and remote.commands == []
    out = capsys.readouterr().out
    assert "[dry] would wait up to 120 s for backend, proxy to be running and healthy" in out
    assert "[dry] would poll http://localhost:8000/health for up to 60 s" in out


def test_wait_http_polls_until_2xx(host, mocker):
    clock = Clock(mocker)
    answers = iter([Result(stdout="", exited=7), Result(stdout="busy\n@@status 503 0.01\n", exited=0), HEALTH_V1])
    s, remote = host((r"curl ", lambda cmd: next(answers)))
    check = hoststate.wait_http(s, "http://localhost:8000/health", 60, step="services › health wait")
    assert check.version == "v1" and clock.slept == [1, 1]


def test_wait_http_deadline_names_the_last_error(host, mocker):
    Clock(mocker)
    s, remote = host((r"curl ", Result(stdout="oops\n@@status 500 0.01\n", exited=0)))
    with pytest.raises(DeployError) as exc:
        hoststate.wait_http(s, "http://localhost:8000/health", 3, step="verify")
    err = exc.value
    assert err.what == "http://localhost:8000/health did not answer 2xx within 3 s (last: HTTP 500)"
    assert err.code == ExitCode.UNHEALTHY and err.output == "oops" and err.command.startswith("out=$(curl ")


def test_wait_http_never_asks_with_a_timeout_past_the_deadline(host, mocker):
    Clock(mocker)      # simulated time: the deadline passes without waiting
    s, remote = host((r"curl ", Result(stdout="", exited=7)))
    with pytest.raises(DeployError):
        hoststate.wait_http(s, "http://localhost:8000/health", 2.5, step="verify")
    timeouts = [int(c.split("--max-time ")[1].split()[0]) for c in remote.commands]
    assert timeouts == [3, 2, 1, 1]              # min(SMOKE_TIMEOUT, time left), at least 1 s


# ---- observe -----------------------------------------------------------------------------------------

def test_observe_a_healthy_host_asks_the_health_url_for_the_version_and_caches(host):
    s, remote = host(*Containers(*all_of()).script(), (IMAGE_INSPECT, Images(captured("docker-image-inspect.txt"))),
                     (r"curl ", HEALTH_V1))
    seen = hoststate.observe(s)
    assert seen.healthy and seen.version == "v1" and seen.images["backend"]["id"] == BACKEND_V1
    n = len(remote.commands)
    assert hoststate.observe(s) is seen and len(remote.commands) == n
    s.run("docker compose up -d", mutating=True)                    # a change: observe again next time
    assert s.state.observed is None


def test_observe_an_unhealthy_host_does_not_ask_the_health_url(host):
    sick = Containers(*all_of())
    sick.by_service["backend"] = container("docker-inspect-backend-unhealthy.json")
    s, remote = host(*sick.script(), (IMAGE_INSPECT, ""))
    assert hoststate.observe(s) == Observation(hoststate.observe(s).images, False, None)
    assert not [c for c in remote.commands if "curl" in c]


def test_observe_when_the_health_url_fails_is_not_healthy(host):
    s, remote = host(*Containers(*all_of()).script(), (IMAGE_INSPECT, ""),
                     (r"curl ", Result(stdout="", exited=7)))
    seen = hoststate.observe(s)
    assert not seen.healthy and seen.version is None


def test_observe_right_after_an_http_first_health_wait_counts_the_answering_backend_healthy(host):
    """The record's `after` is observed right after the HTTP-first health wait, while Docker still
    says `starting`: the answering health URL makes it healthy (else rollback would find no healthy
    release to go back to: tests/integration/test_staging.py caught it)."""
    starting = Containers(*all_of())
    starting.by_service["backend"] = container(ALL_V1, "backend", Health={"Status": "starting", "Log": []})
    s, remote = host(*starting.script(), (IMAGE_INSPECT, Images(captured("docker-image-inspect.txt"))),
                     (r"curl ", HEALTH_V1))
    seen = hoststate.observe(s)
    assert seen.healthy and seen.version == "v1"


def test_exec_goes_through_compose_until_the_project_is_known_then_docker_exec_by_id(host):
    everything = Containers(*all_of())
    s, remote = host((r" ps -a -q", everything.ps("all")), (DOCKER_PS, everything.docker_ps), (r"^docker inspect", everything.inspect))
    assert hoststate.exec_command(s, "backend", ["alembic", "current"]) == f"{COMPOSE} exec -T backend alembic current"
    hoststate.containers(s, ["backend"])                       # a container's label names the project
    backend = next(c for c in all_of() if c["Config"]["Labels"]["com.docker.compose.service"] == "backend")["Id"]
    assert hoststate.exec_command(s, "backend", ["alembic", "current"]) == f"docker exec {backend} alembic current"
    assert hoststate.exec_sh(s, "backend", "echo 'a b'") == f"docker exec {backend} sh -c 'echo '\"'\"'a b'\"'\"''"


@pytest.mark.parametrize("status", [["exited"], ["running", "running"]], ids=["none-running", "two-running"])
def test_exec_leaves_the_choice_to_compose_unless_exactly_one_container_runs(host, status):
    base = next(c for c in all_of() if c["Config"]["Labels"]["com.docker.compose.service"] == "backend")
    found = []
    for i, st in enumerate(status):
        c = container(ALL_V1, "backend", Status=st, Running=st == "running")
        c["Id"] = f"{i}" * 64 if i else base["Id"]
        found.append(c)
    everything = Containers(*all_of())
    ps = "".join(f"{c['Id']} backend\n" for c in found)
    inspect = json.dumps(found)
    s, remote = host((r" ps -a -q", everything.ps("all")), (DOCKER_PS, ps), (r"^docker inspect", inspect))
    s.state.compose_project = "ai-doc-qa"
    assert hoststate.exec_command(s, "backend", ["alembic", "current"]) == f"{COMPOSE} exec -T backend alembic current"
