"""Issue 7, items 4, 5 and 14 on the staging host: `rollback --to` a release after a rollback,
a second and third bare rollback, and a corrupt release record."""
import json
import os
import subprocess

from tests.integration.conftest import APP_DIR, DOCKER_HOST, flat

STAGING = ["--stage", "staging"]
RECORD = APP_DIR / ".deploy" / "releases.jsonl"
BACKEND_LATEST = "127.0.0.1:5000/ai-doc-qa/backend:latest"


def fab_ok(sandbox, *args):
    r = sandbox.fab(*args)
    assert r.returncode == 0, f"fab {' '.join(args)} exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stderr
    return r


def release_id(r) -> str:
    """The id from the `Outcome: ... (release ID)` line."""
    line = [l for l in r.stdout.splitlines() if l.startswith("Outcome:")][-1]
    return line.split("(release ", 1)[1].split(")", 1)[0]


def valid_records() -> list[dict]:
    """The record's lines that are JSON (a corrupt line put there by a test is left out)."""
    out = []
    for raw in RECORD.read_text().splitlines():
        try:
            out.append(json.loads(raw))
        except ValueError:
            pass
    return out


def publish_v3(sandbox) -> None:
    """A third healthy backend image: v2 with one more label (a new image ID, same content),
    pushed as `latest`. `sandbox.reset()` puts `latest` back to v1 and prunes it."""
    dockerfile = f"FROM {BACKEND_LATEST}\nLABEL ai-doc-qa.test.variant=v3\n"
    env = {**os.environ, "DOCKER_HOST": DOCKER_HOST, "DOCKER_BUILDKIT": "0"}
    for argv, stdin in ((["docker", "build", "-q", "-t", BACKEND_LATEST, "-"], dockerfile),
                        (["docker", "push", "-q", BACKEND_LATEST], None)):
        r = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env, timeout=180)
        assert r.returncode == 0, f"{' '.join(argv)}: {r.stderr}"


def test_rollback_to_a_deploy_after_a_bare_rollback_serves_it_again(sandbox):
    sandbox.reset()
    v1 = sandbox.image_id("backend")
    sandbox.ctl("version", "v2")
    deploy = release_id(fab_ok(sandbox, "deploy", *STAGING))
    v2 = sandbox.image_id("backend")
    fab_ok(sandbox, "rollback", *STAGING)                                   # bare: back to v1
    assert sandbox.image_id("backend") == v1 and sandbox.version() == "v1"
    # push the deploy out of the 2000 lines history/rollback read: --to must search the whole file
    filler = [json.dumps({"v": 1, "release": "20000101T000000Z-f111", "event": "downtime", "at": "x", "probes": i},
                         sort_keys=True, separators=(",", ":")) for i in range(2100)]
    with RECORD.open("a") as f:
        f.write("\n".join(filler) + "\n")
    r = fab_ok(sandbox, "rollback", *STAGING, "--to", deploy)              # base: exit 8, "never served healthily"
    assert f"left serving healthily by deploy {deploy}" in r.stdout
    assert sandbox.image_id("backend") == v2 and sandbox.version() == "v2"
    end = [e for e in valid_records() if e["event"] == "end"][-1]
    assert end["outcome"] == "success" and not sandbox.lock_held()


def test_second_bare_rollback_goes_further_back_and_the_third_refuses(sandbox):
    sandbox.reset()
    v1 = sandbox.image_id("backend")
    sandbox.ctl("version", "v2")
    fab_ok(sandbox, "deploy", *STAGING)
    v2 = sandbox.image_id("backend")
    publish_v3(sandbox)
    v3_deploy = release_id(fab_ok(sandbox, "deploy", *STAGING))
    v3 = sandbox.image_id("backend")
    assert len({v1, v2, v3}) == 3 and sandbox.version() == "v2"            # v3 is v2's code under a new image ID
    fab_ok(sandbox, "rollback", *STAGING)
    assert sandbox.image_id("backend") == v2
    fab_ok(sandbox, "rollback", *STAGING)                                   # base: back to v3
    assert sandbox.image_id("backend") == v1 and sandbox.version() == "v1"
    r = sandbox.fab("rollback", *STAGING)                                   # nothing older: refuse, never v2 or v3
    out = flat(r)
    assert r.returncode == 8, out
    assert "rolled away from by a later rollback" in out and "--to" in out and "Traceback" not in out
    assert sandbox.image_id("backend") == v1
    fab_ok(sandbox, "rollback", *STAGING, "--to", v3_deploy)                # --to still reaches v3
    assert sandbox.image_id("backend") == v3 and not sandbox.lock_held()


def test_corrupt_record_lines_do_not_break_history_or_rollback(sandbox):
    sandbox.reset()
    v1 = sandbox.image_id("backend")
    sandbox.ctl("version", "v2")
    fab_ok(sandbox, "deploy", *STAGING)
    hostile = "20261231T000000Z-bad1"
    # a "release" whose images never ran, marked healthy with a string, and ended "success": the
    # old reader counted "false" as healthy and made it the rollback target
    lines = [{"event": "start", "kind": "deploy", "stage": "staging", "who": "x"},
             {"event": "images_before", "images": {}, "healthy": True},
             {"event": "images_after", "healthy": "false",
              "images": {"backend": {"ref": BACKEND_LATEST, "id": "sha256:" + "e" * 64, "digests": []}}},
             {"event": "step", "step": "services", "seconds": "12s"},
             {"event": "end", "outcome": "success", "seconds": 1}]
    text = "".join(json.dumps({"v": 1, "release": hostile, "at": "x", **l}) + "\n" for l in lines)
    with RECORD.open("a") as f:
        f.write(text + '{"v":1,"release":"20261231T000001Z-torn","event":"images_bef')   # torn: no newline
    r = fab_ok(sandbox, "history", *STAGING)                                # base: traceback (float("12s"))
    assert "skipped 3 line(s)" in flat(r) and "not valid JSON" in flat(r)
    r = fab_ok(sandbox, "rollback", *STAGING)                               # base: picks the hostile set, fails
    assert sandbox.image_id("backend") == v1 and sandbox.version() == "v1"
    assert "sha256:" + "e" * 64 not in r.stdout
    rows = RECORD.read_text().split("\n")
    torn = rows.index('{"v":1,"release":"20261231T000001Z-torn","event":"images_bef')
    after_torn = json.loads(rows[torn + 1])                                  # the next append started a fresh line
    assert after_torn["event"] == "start" and after_torn["kind"] == "rollback"
    assert [e for e in valid_records() if e["event"] == "end"][-1]["outcome"] == "success"


def test_one_image_inspect_call_reports_every_present_image_around_a_missing_one(sandbox):
    """commands.docker.image_inspect asks for all images in one call: the real Docker CLI must
    still print the present ones when one in the middle is gone (a pruned rollback target)."""
    from commands import docker as docker_cmd
    present = [sandbox.image_id("backend"), sandbox.image_id("proxy")]
    missing = "sha256:" + "0" * 64
    command = docker_cmd.image_inspect([present[0], missing, present[1]])
    r = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "DOCKER_HOST": DOCKER_HOST})
    assert r.returncode == 0
    assert [i.id for i in docker_cmd.parse_image_inspect(r.stdout)] == present
