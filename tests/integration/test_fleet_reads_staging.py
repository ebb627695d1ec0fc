"""Issue 10, status/history/diagnose/rollback across a stage's hosts, on the staging host. The
sandbox has one host, so the stage's HOSTS are two names for the same sshd (as in
test_fleet_staging.py): the reads go over two real SSH connections at once, each host's lines
prefixed with it, one table, one exit code, one JSON document; a rollback takes the first name's
lock, is refused the second (the same lock directory) and changes nothing."""
import json

from tests.integration.conftest import SANDBOX_ROOT, flat

FLEET = ("fleet-a", "fleet-b")


def fleet_env(tmp_path) -> dict:
    text = (SANDBOX_ROOT / "client" / "ssh_config").read_text()
    path = tmp_path / "ssh_config"
    path.write_text(text.replace("Host ai-doc-qa-staging", "Host " + " ".join(FLEET)))
    return {"DEPLOY_HOSTS": ",".join(FLEET), "DEPLOY_SSH_CONFIG": str(path)}


def test_status_history_and_diagnose_read_both_hosts_and_end_with_one_table(sandbox, tmp_path):
    sandbox.reset()
    env = fleet_env(tmp_path)
    r = sandbox.fab("status", "--stage", "staging", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    for h in FLEET:
        assert f"[{h}] health: all services running and healthy" in r.stdout
        assert [line.split()[:4] for line in r.stdout.splitlines() if line.startswith(h + " ")] == [[h, "ok", "healthy", "v1"]]
    assert "fleet split" not in r.stdout and "Fleet: 2 hosts: every host ok" in r.stdout

    r = sandbox.fab("status", "--stage", "staging", "--json", env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [h["host"] for h in doc["hosts"]] == list(FLEET) and doc["versions"] == {"fleet-a": "v1", "fleet-b": "v1"}

    r = sandbox.fab("diagnose", "--stage", "staging", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert all(f"[{h}] diagnose: no problem found" in r.stdout for h in FLEET)

    r = sandbox.fab("history", "--stage", "staging", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Fleet: 2 hosts: every host ok" in r.stdout


def test_a_fleet_rollback_whose_second_lock_is_refused_changes_nothing(sandbox, tmp_path):
    sandbox.reset()
    sandbox.ctl("version", "v2")
    r = sandbox.fab("deploy", "--stage", "staging")
    assert r.returncode == 0, r.stdout + r.stderr
    records, image = sandbox.records(), sandbox.image_id("backend")
    r = sandbox.fab("rollback", "--stage", "staging", env=fleet_env(tmp_path))
    out = flat(r)
    assert r.returncode == 6, out
    assert "FAILED on fleet-b" in out and "nothing was changed on any host; the locks taken on fleet-a are released" in out
    assert not sandbox.lock_held()
    assert (sandbox.records(), sandbox.image_id("backend"), sandbox.version()) == (records, image, "v2")
