"""fab status and fab history through the task layer, on a scripted host answering with captured
output (every container of a healthy v1 host; the release record of a deploy, an auto-rolled-back
deploy and two rollbacks). They only read: no command may change the host."""
import json

from invoke import Result

from tasks.status import history, status
from tests.conftest import captured
from tests.tasks.scripted import IMAGE_INSPECT, RECORD, Containers, Images, all_of, container, record_answer, run_task

HEAD = "7ef2620" + "a" * 33
GIT_STATE = (r"rev-parse HEAD", f"{HEAD}\nmain\n")
HEALTH = (r"curl .*8000/health", Result(stdout='{"status": "ok", "version": "v1"}\n@@status 200 0.004\n', exited=0))
FREE = (r"/\.deploy/lock", "free\n")
RECORD_READ = (r"^if \[ -e .*n=\$\(wc -l <", record_answer(captured(RECORD)))
WRITES = (" up ", " restart ", "docker tag", "docker pull", " pull ", ">>", "rm -rf", "mkdir")


def read_only(remote):
    return not [c for c in remote.commands if any(w in c for w in WRITES)]


def test_status_of_a_healthy_host(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, status, [
        *Containers(*all_of()).script(), HEALTH, GIT_STATE, RECORD_READ, FREE])
    assert code == 0, err
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split() and line.split()[0] in
            ("backend", "model_server", "postgres", "proxy", "redis")}
    assert rows["backend"] == ["running", "healthy", "0", "127.0.0.1:5000/ai-doc-qa/backend:latest", "54108187d377"]
    assert rows["redis"] == ["running", "healthy", "0", "127.0.0.1:5000/ai-doc-qa/redis:7", "5d1204fd1834"]
    assert list(rows) == ["backend", "model_server", "postgres", "proxy", "redis"]        # sorted by service
    assert "health: all services running and healthy" in out
    assert "http://localhost:8000/health: HTTP 200, version v1" in out
    assert f"code: {HEAD[:10]} on main" in out
    assert ("last release: 20261128T041925Z-a527 rollback by root@vm at 2026-11-28T04:19:25+00:00: SUCCESS in 4.1 s; "
            "serving v2 (backend 43ddce2e4145, model_server d16104b9beb5, proxy 150eb399809a)") in out
    assert out.rstrip().endswith("deploy lock: free")
    assert read_only(remote)


def test_status_of_a_degraded_host_names_each_problem(mocker, capsys):
    host = Containers(*all_of())
    host.by_service["backend"] = container("docker-inspect-backend-unhealthy.json")
    host.by_service["model_server"] = container("docker-inspect-model-server-oom.json")
    del host.by_service["proxy"]
    failing = (r"curl .*8000/health", Result(stdout="\n@@status 500 0.01\n", exited=0))
    dirty = (r"rev-parse HEAD", f"{HEAD}\nmain\n M VERSION\n M README.md\n")
    code, out, err, remote = run_task(mocker, capsys, status, [*host.script(), failing, dirty, (r"^if \[ -e .*n=\$\(wc -l <", ""), FREE])
    assert code == 0, err
    health = next(line for line in out.splitlines() if line.startswith("health: "))
    assert "returned error: 500" in health and "OOM-killed" in health and "proxy" in health
    assert "http://localhost:8000/health: FAILING (HTTP 500)" in out
    assert f"code: {HEAD[:10]} on main, 2 locally modified file(s)" in out
    assert "last release: none recorded" in out


def test_status_shows_who_holds_the_lock_and_whether_it_is_stale(mocker, capsys):
    holder = {"who": "alice@laptop", "from": "10.0.0.5", "pid": 4242, "stage": "production", "task": "deploy",
              "started": "2026-11-28T04:00:00Z", "token": "ab12", "lock_stale_after": 120}
    lock = (r"/\.deploy/lock", json.dumps(holder) + "\nclock 10000 9700 9600\n")
    code, out, err, remote = run_task(mocker, capsys, status, [
        *Containers(*all_of()).script(), HEALTH, GIT_STATE, RECORD_READ, lock])
    assert code == 0, err
    assert ("deploy lock: held by alice@laptop from 10.0.0.5 (pid 4242), stage production, deploy started "
            "2026-11-28T04:00:00Z, last heartbeat 300 s ago (STALE)") in out


# ---- history -------------------------------------------------------------------------------------------

def test_history_lists_the_captured_releases_and_the_rollback_candidates(mocker, capsys):
    images = Images(captured("docker-image-inspect.txt"))
    code, out, err, remote = run_task(mocker, capsys, history, [
        RECORD_READ, *Containers(*all_of()).script(), (IMAGE_INSPECT, images)], limit="3")
    assert code == 0, err
    releases, cands = out.split("rollback candidates (healthy image sets, newest first; --to takes the release shown")
    rows = [line.split() for line in releases.splitlines() if line.startswith("2026")]
    assert [(r[0], r[1], r[4], r[5], r[6]) for r in rows] == [
        ("20261128T041905Z-948e", "deploy", "rolled_back", "8dbaab0", "15.1"),       # --limit 3: the last three
        ("20261128T041921Z-ad2c", "rollback", "success", "-", "3.9"),
        ("20261128T041925Z-a527", "rollback", "success", "-", "4.1")]
    assert "backend b5ac816bbf69, model_server d16104b9beb5, proxy 150eb399809a" in releases
    lines = [line for line in cands.splitlines() if line.startswith("2026")]
    assert lines[0].split()[0] == "20261128T041925Z-a527" and lines[0].endswith("next bare rollback")
    assert lines[1].split()[0] == "20261128T041921Z-ad2c"
    assert lines[1].endswith("rolled away from by 20261128T041925Z-a527: only with --to")
    assert read_only(remote)


def test_history_of_an_empty_record(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, history, [(r"^if \[ -e .*n=\$\(wc -l <", "")])
    assert code == 0
    assert out.rstrip().endswith("no releases recorded in /app/ai-doc-qa/.deploy/releases.jsonl")
    assert not [c for c in remote.commands if "docker" in c]


def test_history_still_lists_releases_when_what_runs_cannot_be_read(mocker, capsys):
    broken = (r"ps -a -q", Result(stdout="", stderr="Cannot connect to the Docker daemon", exited=1))
    code, out, err, remote = run_task(mocker, capsys, history, [RECORD_READ, broken])
    assert code == 0, err
    assert "20261128T041925Z-a527" in out and "rollback candidates" in out


def test_status_json_is_one_object_on_stdout_with_the_same_facts(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, status, [
        *Containers(*all_of()).script(), HEALTH, GIT_STATE, RECORD_READ, FREE], json=True)
    assert code == 0, err
    d = json.loads(out)
    assert [s["service"] for s in d["services"]] == ["backend", "model_server", "postgres", "proxy", "redis"]
    assert d["healthy"] and d["health_url"]["version"] == "v1" and d["code"]["head"] == HEAD
    assert d["last_release"]["id"] == "20261128T041925Z-a527" and d["last_release"]["outcome"] == "success"
    assert d["lock"]["held"] is False and d["lock"]["described"] == "free"
    assert "stage: production" in err                   # progress goes to stderr in --json mode
    assert read_only(remote)


def test_history_json_lists_the_releases_and_the_candidates(mocker, capsys):
    images = Images(captured("docker-image-inspect.txt"))
    code, out, err, remote = run_task(mocker, capsys, history, [
        RECORD_READ, *Containers(*all_of()).script(), (IMAGE_INSPECT, images)], limit="3", json=True)
    assert code == 0, err
    d = json.loads(out)
    assert [r["id"] for r in d["releases"]] == ["20261128T041905Z-948e", "20261128T041921Z-ad2c", "20261128T041925Z-a527"]
    assert d["releases"][0]["outcome"] == "rolled_back" and d["releases"][0]["steps"]
    assert d["rollback_candidates"][0]["release"] == "20261128T041925Z-a527"
    assert d["rollback_candidates"][0]["note"].endswith("next bare rollback")
    assert read_only(remote)
