"""fab rollback through the task layer and the real flow (lock, record, restore, verify) on a
scripted Docker host, with the release record captured from the sandbox (a deploy to v2, an
auto-rolled-back deploy, a rollback to v1, a rollback --to back to v2). The host model: ``docker
tag`` points a reference at an image ID, ``up -d --no-deps`` recreates those services from what
their reference points at."""
import pytest
from invoke import Result

from commands import record
from tasks.rollback import rollback
from tests.conftest import captured
from tests.tasks.scripted import (
    ALL_V1,
    IMAGE_INSPECT,
    LOCK,
    RECORD,
    Containers,
    container,
    flat,
    record_answer,
    records,
    run_task,
    service_of,
)

TEXT = captured(RECORD)
RELS = {r.id: r for r in record.releases(record.parse_read(record_answer(TEXT)).lines)}
V1 = RELS["20261128T041921Z-ad2c"].images_after          # backend b5ac816bbf69
V2 = RELS["20261128T041857Z-8cda"].images_after          # backend 43ddce2e4145
COMPOSE = "cd /app/ai-doc-qa && docker compose -f docker-compose.production.yml"
REF = "127.0.0.1:5000/ai-doc-qa/backend:latest"
V2_BACKEND = V2["backend"]["id"]


class Host:
    def __init__(self, running=V1, on_host=(V1, V2), healthy_after=True):
        self.images = {}                                   # image ID -> digests
        for images in on_host:
            for svc, i in images.items():
                self.images[i["id"]] = i["digests"]
        self.tags = {i["ref"]: i["id"] for i in running.values()}
        self.containers = Containers(*[container(ALL_V1, svc, image=running[svc]["id"]) if svc in running
                                       else container(ALL_V1, svc) for svc in ("backend", "model_server", "proxy",
                                                                               "postgres", "redis")])
        self.healthy_after = healthy_after
        self.pulled = []

    def image_inspect(self, command):
        out = []
        for ref in [w for w in command.split(" -- ")[1:]]:
            ref = ref.split()[0]
            image_id = self.tags.get(ref, ref)
            if image_id in self.images:
                out.append(f'{{"id":"{image_id}","digests":{list(self.images[image_id])!r},"tags":[]}}'.replace("'", '"'))
        return "".join(line + "\n" for line in out)

    def tag(self, command):
        _, _, image_id, ref = command.split()
        self.tags[ref] = image_id
        return ""

    def up(self, command):
        for svc in command.split(" -- ")[1].split():
            c = self.containers.by_service[svc]
            health = {"Status": "healthy", "Log": []} if self.healthy_after else \
                {"Status": "unhealthy", "Log": [{"Output": "curl: (22) The requested URL returned error: 500"}]}
            self.containers.by_service[svc] = container(ALL_V1, service_of(c), image=self.tags[c["Config"]["Image"]],
                                                        Health=health)
        return ""

    def pull(self, command):
        ref = command.split()[-1]
        self.pulled.append(ref)
        if ref.endswith(":v1"):
            self.tags[ref] = V1["backend"]["id"]
            return ""
        return Result(stdout="", stderr=f"Error response from daemon: manifest for {ref} not found: manifest unknown",
                      exited=1)

    def version(self, command):
        v = "v2" if self.tags[REF] == V2_BACKEND else "v1"
        return Result(stdout=f'{{"status": "ok", "version": "{v}"}}\n@@status 200 0.01\n', exited=0)

    def script(self, *first, lock=True):
        return [*(LOCK if lock else ()), *first, (r"^if \[ -e .*n=\$\(wc -l <", record_answer(TEXT)), (r"^\{ grep -a -n -F", self.search),
                *self.containers.script(), (IMAGE_INSPECT, self.image_inspect), (r"^docker tag ", self.tag),
                (r"^docker pull ", self.pull), (r" up -d --no-deps -- ", self.up), (r"curl .*8000/health", self.version),
                (r"curl ", Result(stdout="ok\n@@status 200 0.01\n", exited=0))]

    @staticmethod
    def search(command):
        needle = command.split("-e ")[1].split(" --")[0].strip("'")
        return "".join(f"{n}:{line}\n" for n, line in enumerate(TEXT.splitlines(), 1) if needle in line)


def changes(remote):
    return [c for c in remote.commands if c.startswith(("docker tag", "docker pull")) or " up -d" in c]


def test_bare_rollback_goes_one_step_back_by_image_id(mocker, capsys):
    host = Host(running=V1)
    code, out, err, remote = run_task(mocker, capsys, rollback, host.script())
    assert code == 0, err
    assert changes(remote) == [f"docker tag {V2_BACKEND} {REF}", f"{COMPOSE} up -d --no-deps -- backend"]
    assert ("      target: backend 43ddce2e4145, model_server d16104b9beb5, proxy 150eb399809a "
            "(left serving healthily by rollback 20261128T041925Z-a527)") in out
    assert f"      backend: {REF} -> image 43ddce2e4145" in out
    end = records(remote)[-1]
    assert end["outcome"] == "success"
    assert end["serving"] == "serving v2 (backend 43ddce2e4145, model_server d16104b9beb5, proxy 150eb399809a)"
    assert out.rstrip().splitlines()[-1].startswith("Outcome: SUCCESS (release ")
    assert [e["event"] for e in records(remote)].count("images_after") == 1


def test_bare_rollback_with_no_target_left_lists_the_candidates_and_changes_nothing(mocker, capsys):
    host = Host(running=V2)
    code, out, err, remote = run_task(mocker, capsys, rollback, host.script())
    assert code == 8
    assert ("no valid rollback target: every other recorded healthy image set was rolled away from by a later "
            "rollback (20261128T041925Z-a527)") in flat(err)
    assert "known healthy image sets, newest first (release = what --to takes):" in err
    assert "20261128T041921Z-ad2c" in err and "backend b5ac816bbf69" in err
    assert "Next: pick one explicitly: fab -H deploy@ai-doc-qa.example.com rollback --to <release id | image tag | image id>" in flat(err)
    assert changes(remote) == []
    assert records(remote)[-1]["outcome"] == "failed"


def test_rollback_to_a_release_searches_the_whole_record(mocker, capsys):
    host = Host(running=V2)
    code, out, err, remote = run_task(mocker, capsys, rollback, host.script(), to="20261128T041921Z-ad2c")
    assert code == 0, err
    assert "grep -a -n -F -m" in " ".join(remote.commands)
    assert changes(remote) == [f"docker tag {V1['backend']['id']} {REF}", f"{COMPOSE} up -d --no-deps -- backend"]


def test_an_ambiguous_release_prefix_lists_the_matches(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, rollback, Host().script(), to="20261128T0419")
    assert code == 8
    assert "release id prefix '20261128T0419' is ambiguous: it matches 3 releases" in flat(err)
    listing = err.split("releases whose id starts with that prefix:")[1].split("Host state:")[0]
    assert listing.split() == ["|", "20261128T041905Z-948e", "|", "20261128T041921Z-ad2c", "|", "20261128T041925Z-a527"]
    assert changes(remote) == []


def test_rollback_to_a_tag_that_is_not_on_the_host_pulls_it_first(mocker, capsys):
    host = Host(running=V2)
    code, out, err, remote = run_task(mocker, capsys, rollback, host.script(), to="v1")
    assert code == 0, err
    assert host.pulled == ["127.0.0.1:5000/ai-doc-qa/backend:v1"]
    assert "      target: backend b5ac816bbf69 (image 127.0.0.1:5000/ai-doc-qa/backend:v1)" in out
    assert changes(remote) == ["docker pull --quiet 127.0.0.1:5000/ai-doc-qa/backend:v1",
                               f"docker tag {V1['backend']['id']} {REF}", f"{COMPOSE} up -d --no-deps -- backend"]


def test_rollback_to_a_tag_the_registry_does_not_have_is_exit_8(mocker, capsys):
    host = Host(running=V2)
    code, out, err, remote = run_task(mocker, capsys, rollback, host.script(), to="v9")
    assert code == 8
    assert "image 127.0.0.1:5000/ai-doc-qa/backend:v9 is not on the host and cannot be pulled" in flat(err)
    assert "manifest unknown" in err
    assert not [c for c in changes(remote) if not c.startswith("docker pull")]


def test_rollback_to_an_image_id_the_host_does_not_have_is_not_pulled(mocker, capsys):
    host = Host(running=V2)
    code, out, err, remote = run_task(mocker, capsys, rollback, host.script(), to="sha256:" + "e" * 64)
    assert code == 8
    assert f"no valid rollback target: image sha256:{'e' * 64} is not on the host" in flat(err)
    assert changes(remote) == []


def test_rollback_to_a_tag_without_a_running_backend(mocker, capsys):
    host = Host(running=V2)
    del host.containers.by_service["backend"]
    code, out, err, remote = run_task(mocker, capsys, rollback, host.script(), to="v1")
    assert code == 8
    assert "no valid rollback target: no running backend container to take the image reference from" in flat(err)


def test_a_rollback_target_that_fails_its_health_check_is_exit_8(mocker, capsys):
    host = Host(running=V1, healthy_after=False)
    code, out, err, remote = run_task(mocker, capsys, rollback, host.script(
        (r"logs --no-color --tail=20 -- backend", "backend-1  | 500 Internal Server Error\n")))
    assert code == 8
    assert "the rolled-back services did not become healthy: backend (ai-doc-qa-backend-1): unhealthy" in flat(err)
    assert "Next: escalate now; fab -H deploy@ai-doc-qa.example.com history lists other healthy releases" in flat(err)
    assert records(remote)[-1]["outcome"] == "failed"


@pytest.mark.parametrize("to", ["v1;reboot", "$(id)"])
def test_a_hostile_to_never_reaches_the_host(mocker, capsys, to):
    code, out, err, remote = run_task(mocker, capsys, rollback, Host().script(), to=to)
    assert code == 2 and remote.commands == []
