"""Issue 10, fleets, on the staging host. The sandbox has one host (`sandbox/ctl up --hosts 3` is
not built yet, see docs/fleets.md), so this proves the part a single machine can: a stage whose
HOSTS are two names for the same sshd (so the same lock directory) is a fleet whose second lock
is refused. Every lock must be taken before anything changes, and one refused lock keeps none."""
from tests.integration.conftest import SANDBOX_ROOT, flat


def two_names_for_one_host(tmp_path) -> str:
    """The sandbox's ssh_config with its one Host block answering to two aliases."""
    text = (SANDBOX_ROOT / "client" / "ssh_config").read_text()
    path = tmp_path / "ssh_config"
    path.write_text(text.replace("Host ai-doc-qa-staging", "Host fleet-a fleet-b"))
    return str(path)


def test_a_fleet_whose_second_lock_is_refused_keeps_no_lock_and_changes_nothing(sandbox, tmp_path):
    sandbox.reset()
    head, records, image = sandbox.head(), sandbox.records(), sandbox.image_id("backend")
    r = sandbox.fab("deploy", "--stage", "staging", env={
        "DEPLOY_HOSTS": "fleet-a,fleet-b", "DEPLOY_SSH_CONFIG": two_names_for_one_host(tmp_path)})
    out = flat(r)
    assert r.returncode == 6, out
    assert "2 hosts, 2 batch(es) of up to 1; migrations on fleet-a" in out
    assert "FAILED on fleet-b" in out and "another deploy holds the lock" in out
    assert "nothing was changed on any host; the locks taken on fleet-a are released" in out
    assert not sandbox.lock_held(), "fleet-a's lock was released"
    assert (sandbox.head(), sandbox.records(), sandbox.image_id("backend")) == (head, records, image)
    assert sandbox.version() == "v1"
