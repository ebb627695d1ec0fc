"""Issue 11: the builders and the pure choices of fab logs and fab prune."""
import pytest

from commands import prune
from commands.compose import V2, Compose, check_since

COMPOSE = Compose(V2, "/app/ai-doc-qa", "docker-compose.production.yml")
REPO = "127.0.0.1:5000/ai-doc-qa/backend"


def test_follow_logs_builds_one_pasteable_command():
    assert COMPOSE.follow_logs(["backend", "worker"], 50, "10m", follow=True) == (
        "cd /app/ai-doc-qa && docker compose -f docker-compose.production.yml logs --no-color --timestamps "
        "--tail=50 --since 10m --follow -- backend worker")
    assert COMPOSE.follow_logs([], 100) == (
        "cd /app/ai-doc-qa && docker compose -f docker-compose.production.yml logs --no-color --timestamps --tail=100")


@pytest.mark.parametrize("good", ["30s", "10m", "2h", "2026-11-28", "2026-11-28T07:00:00Z", "2026-11-28T08:12:36.939628178Z"])
def test_since_accepts_durations_and_dates(good):
    assert check_since(good) == good


@pytest.mark.parametrize("bad", ["", "1d", "10 m", "$(reboot)", "-f", "yesterday", "2026-11-28T07:00:00Z;id"])
def test_since_refuses_anything_else(bad):
    with pytest.raises(ValueError, match="--since takes a duration"):
        check_since(bad)


def image(n: int, *tags: str, digest: bool = False) -> prune.Image:
    return prune.Image(f"sha256:{n:064x}", 1000 * n, f"2026-11-{n:02d}T00:00:00Z", tags,
                       (f"{REPO}@sha256:{n:064x}",) if digest else ())


def test_repository_of_tags_and_digests():
    assert prune.repository(f"{REPO}:v1") == REPO
    assert prune.repository(f"{REPO}@sha256:{'a' * 64}") == REPO
    assert prune.repository("postgres") == "postgres"


def test_prune_never_chooses_a_used_image_a_rollback_candidate_or_another_repository():
    images = [image(1, digest=True), image(2, f"{REPO}:v2"), image(3, f"{REPO}:latest"), image(4, f"{REPO}:old"),
              image(5, "127.0.0.1:5000/ai-doc-qa/postgres:15"), image(6, f"{REPO}:older")]
    used = {image(3).id, image(5).id}
    candidates = {image(1).id: "20261127T223704Z-d996", image(2).id: "20261126T101010Z-aaaa"}
    choice = prune.choose(images, {REPO}, used, candidates, keep=1)
    assert [i.id for i in choice.remove] == [image(4).id]            # image 6 is the newest other: --keep 1
    why = {i.id: w for i, w in choice.kept}
    assert why[image(3).id] == "a container uses it"
    assert why[image(1).id] == "rollback candidate 20261127T223704Z-d996"
    assert why[image(6).id] == "one of the 1 newest others (--keep)"
    assert image(5).id not in why                                    # postgres: not ours to prune
    assert [i.id for i in prune.choose(images, {REPO}, used, candidates, keep=0).remove] == [image(6).id, image(4).id]


def test_prune_removes_by_tag_or_by_id_when_untagged():
    assert prune.remove(image(4, f"{REPO}:old", f"{REPO}:x")) == f"docker image rm -- {REPO}:old {REPO}:x"
    assert prune.remove(image(1, digest=True)) == f"docker image rm -- sha256:{1:064x}"


def test_prune_parses_image_inspect_lines():
    text = ('{"id":"sha256:' + "a" * 64 + '","size":52428800,"created":"2026-11-27T22:37:04.1Z",'
            '"tags":["' + REPO + ':v2"],"digests":["' + REPO + '@sha256:' + "b" * 64 + '"]}\nWARNING: x\n')
    [img] = prune.parse_images(text)
    assert img.size == 52428800 and img.tags == (f"{REPO}:v2",) and img.repositories == {REPO}
    assert prune.parse_used("sha256:" + "a" * 64 + "\n\n") == {"sha256:" + "a" * 64}
