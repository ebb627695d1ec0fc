"""commands/docker.py: the builders by exact string (rollback depends on ``image_inspect``,
``tag`` and ``pull``), and the parsers on real captured output (tests/fixtures/captured/)."""
import pytest

from commands import docker
from commands.shell import UnsafeValue
from tests.conftest import captured

ID = "sha256:54108187d377d75942eb0494a8a5fe3ed79673ade06ff6af8ff64360804e4b1d"
FMT = """'{"id":{{json .Id}},"digests":{{json .RepoDigests}},"tags":{{json .RepoTags}}}'"""


# ---- builders ------------------------------------------------------------------------------------

def test_inspect():
    assert docker.inspect(["1412bcba4a53", "c5e7186b5a45"]) == "docker inspect -- 1412bcba4a53 c5e7186b5a45"
    assert docker.inspect(["odd id"]) == "docker inspect -- 'odd id'"


def test_image_inspect_asks_every_image_in_one_call_and_never_fails():
    assert docker.image_inspect([ID, "127.0.0.1:5000/ai-doc-qa/backend:v1"]) == (
        f"docker image inspect --format {FMT} -- {ID} 127.0.0.1:5000/ai-doc-qa/backend:v1 2>/dev/null ; true")


@pytest.mark.parametrize("bad", ["-v", "reg/app:latest; reboot", "$(id)", "reg/app:lat est", ""])
def test_image_builders_refuse_what_is_not_an_image_reference(bad):
    for build in (lambda: docker.image_inspect([bad]), lambda: docker.tag(ID, bad), lambda: docker.tag(bad, "reg/app:latest"),
                  lambda: docker.pull(bad)):
        with pytest.raises(UnsafeValue):
            build()


def test_tag_points_the_reference_at_the_image_id():
    assert docker.tag(ID, "127.0.0.1:5000/ai-doc-qa/backend:latest") == \
        f"docker tag {ID} 127.0.0.1:5000/ai-doc-qa/backend:latest"


def test_pull_by_tag_and_by_digest():
    assert docker.pull("127.0.0.1:5000/ai-doc-qa/backend:v1") == "docker pull --quiet 127.0.0.1:5000/ai-doc-qa/backend:v1"
    digest = "127.0.0.1:5000/ai-doc-qa/backend@sha256:486e06e116830474ff9b980fe0ee9a9c634595496858dc015e5d82e38c4ea4f4"
    assert docker.pull(digest) == f"docker pull --quiet {digest}"


def test_stats_by_container_name():
    assert docker.stats(["ai-doc-qa-model_server-1"]) == \
        "docker stats --no-stream --format '{{json .}}' -- ai-doc-qa-model_server-1"


# ---- parsers on captured output -------------------------------------------------------------------

def test_parse_image_inspect_of_captured_output_skips_the_missing_image():
    """Three images asked (the backend's ID, a missing ID, model-server:latest): two answers."""
    backend, model = docker.parse_image_inspect(captured("docker-image-inspect.txt"))
    assert backend == docker.ImageInfo(
        ID, ("127.0.0.1:5000/ai-doc-qa/backend@sha256:486e06e116830474ff9b980fe0ee9a9c634595496858dc015e5d82e38c4ea4f4",),
        ("127.0.0.1:5000/ai-doc-qa/backend:latest",))
    assert model.id == "sha256:5ea9bf2b66a17f40a4f5f0e6e1b4a02bc1e2a6691ec501a690672fb213f8b3f4"
    assert model.tags == ("127.0.0.1:5000/ai-doc-qa/model-server:latest",)


def test_parse_image_inspect_of_a_local_image_and_noise():
    out = 'WARNING: something\n{"id":"sha256:abc","digests":null,"tags":null}\n\n'
    assert docker.parse_image_inspect(out) == [docker.ImageInfo("sha256:abc", (), ())]
    assert docker.parse_image_inspect("") == []


def test_parse_stats_of_a_degraded_host_lists_no_restarting_container():
    stats = docker.parse_stats(captured("docker-stats-no-stream-json-degraded.txt"))
    assert [s.name for s in stats] == ["ai-doc-qa-backend-1", "ai-doc-qa-proxy-1", "ai-doc-qa-redis-1",
                                       "ai-doc-qa-postgres-1"]


def test_parse_stats_asked_by_name():
    [m] = docker.parse_stats(captured("docker-stats-model-server-hang.txt"))
    assert (m.name, m.id, m.cpu) == ("ai-doc-qa-model_server-1", "e424e278311b", "0.01%")
    assert (m.mem_usage, m.mem_limit, m.mem_percent) == (int(11.64 * 1024 * 1024), 64 * 1024 * 1024, 18.18)


def test_parse_stats_with_odd_values():
    out = '{"Name":"x","ID":"1","CPUPerc":"--","MemUsage":"-- / --","MemPerc":"--"}\nnot json\n'
    [m] = docker.parse_stats(out)
    assert (m.mem_usage, m.mem_limit, m.mem_percent) == (0, 0, 0.0)


def test_parse_inspect_of_a_stopped_postgres():
    [c] = docker.parse_inspect(captured("docker-inspect-postgres-exited.json"))
    assert (c.service, c.status, c.exit_code, c.health, c.memory_limit) == ("postgres", "exited", 0, "unhealthy", 0)
    assert c.health_log == ("127.0.0.1:5433 - accepting connections",)


def test_parse_inspect_keeps_the_last_three_healthcheck_outputs_stripped():
    [c] = docker.parse_inspect(captured("docker-inspect-model-server-hang.json"), env_keys=["CONTEXT_SIZE", "MODEL_HANG"])
    assert c.env == {"CONTEXT_SIZE": "2048", "MODEL_HANG": "1"}
    assert len(c.health_log) == 3 and c.health_log[-1] == \
        "curl: (28) Operation timed out after 2006 milliseconds with 0 bytes received"


def test_parse_inspect_of_every_container_of_a_host():
    states = docker.parse_inspect(captured("docker-inspect-all-v1-healthy.json"))
    assert sorted(c.service for c in states) == ["backend", "model_server", "postgres", "proxy", "redis"]
    assert all(c.status == "running" and c.health == "healthy" for c in states)


def test_sizes_and_ids():
    assert docker.short_image_id(ID) == "54108187d377"
    assert docker.short_image_id("54108187d377d75942eb") == "54108187d377"
    assert docker.short_image_id("") == ""
    assert docker.human_bytes(512) == "512 B"
    assert docker.human_bytes(1536) == "1.5 KiB"
    assert docker.human_bytes(int(23.54 * 1024 ** 3)) == "23.5 GiB"
    assert docker.parse_size("1.5GB") == 1_500_000_000 and docker.parse_size("3B") == 3 and docker.parse_size("7") == 7


def test_project_containers_filters_by_compose_labels_and_leaves_one_off_containers_out():
    cmd = docker.project_containers("ai-doc-qa")
    assert cmd.startswith("docker ps -a --no-trunc --filter label=com.docker.compose.project=ai-doc-qa ")
    assert " --filter label=com.docker.compose.oneoff=False " in cmd
    assert "{{.ID}} {{.Label \"com.docker.compose.service\"}}" in cmd
    assert "project='it'\"'\"'s; rm -rf /' " in docker.project_containers("it's; rm -rf /")   # quoted for the shell


def test_parse_project_containers_keeps_the_wanted_services_and_ignores_other_lines():
    a, b = "a" * 64, "b" * 64
    out = f"{a} backend\n{b} proxy\nWARNING: something\n{'c' * 64} \n"
    assert docker.parse_project_containers(out, ["backend"]) == [a]
    assert docker.parse_project_containers(out) == [a, b]
    assert docker.parse_project_containers("") == []


def test_parse_logs_of_a_container_whose_log_ends_without_a_newline_keeps_the_next_separator():
    """Captured on the staging host: a container killed right after writing a line without its
    newline; `docker logs` then ends without one and the next `echo MARK ID` is glued to that
    line. The next container's lines must stay its own (not the killed one's), the torn line the
    killed one's."""
    from commands.docker import parse_logs_of
    a, b = "a" * 64, "b" * 12
    captured = (f"@@logs-x1234567 {a}\n"
                '127.0.0.1 - - [28/Nov/2026 15:05:30] "GET /health HTTP/1.1" 200 -\n'
                f"ERROR torn line no newline@@logs-x1234567 {b}\n"
                "ERROR: model_server broke\n")
    assert parse_logs_of(captured, "@@logs-x1234567") == {
        a: '127.0.0.1 - - [28/Nov/2026 15:05:30] "GET /health HTTP/1.1" 200 -\nERROR torn line no newline',
        b: "ERROR: model_server broke"}
