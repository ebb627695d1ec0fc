"""Putting a recorded image set back (tasks/restore.py), on the scripted Docker host of
test_rollback: what is retagged, recreated or pulled back by digest, and the errors when an image
cannot be brought back."""
import pytest
from invoke import Result

from tasks import restore as restore_mod
from tasks.errors import CommandFailed, DeployError, ExitCode
from tests.tasks.scripted import ALL_V1, COMPOSE_V2, container
from tests.tasks.test_rollback import COMPOSE, REF, V1, V2, V2_BACKEND, Host, changes


@pytest.fixture
def session(make_session):
    def make(host, *first):
        s, remote = make_session([COMPOSE_V2, *host.script(*first, lock=False)])
        return s, remote
    return make


def test_restore_of_what_already_runs_changes_nothing(session, capsys):
    host = Host(running=V1)
    s, remote = session(host)
    after = restore_mod.restore(s, V1, step="rollback")
    assert {k: v["id"] for k, v in after.items()} == {k: v["id"] for k, v in V1.items()}
    assert changes(remote) == [] and not s.state.services_touched
    assert "      every service already runs the target image: waiting until it is healthy" in capsys.readouterr().out


def test_a_restore_that_finds_the_target_images_running_still_waits_until_they_are_healthy(session, capsys):
    """A restore run again after a lost connection (or after Ctrl-C) finds the first try's `up`
    done with the backend still starting (adversary, this session: it said "healthy" at once, the
    smoke after it got a 502, and the state line had no version)."""
    host = Host(running=V1)
    healthy = host.containers.by_service["backend"]
    host.containers.by_service["backend"] = container(ALL_V1, "backend", image=V1["backend"]["id"],
                                                      Health={"Status": "starting", "Log": []})
    looks = []

    def looked(handler):
        def answer(command):
            looks.append(command)
            if len(looks) == 2:                          # healthy from the second look on
                host.containers.by_service["backend"] = healthy
            return handler(command)
        return answer
    host.containers.script = lambda inner=host.containers.script: [(rx, looked(h)) for rx, h in inner()]
    s, remote = session(host)
    restore_mod.restore(s, V1, step="auto-rollback")
    assert changes(remote) == [] and len(looks) >= 2
    assert s.state.version == "v1"                     # the health URL was asked: the state line names it
    assert "every service already runs the target image: waiting until it is healthy" in capsys.readouterr().out


def test_restore_recreates_a_stopped_service_on_the_right_image(session, capsys):
    host = Host(running=V1)
    host.containers.by_service["proxy"] = container(ALL_V1, "proxy", image=V1["proxy"]["id"], Status="exited")
    s, remote = session(host)
    restore_mod.restore(s, V1, step="rollback")
    assert changes(remote) == [f"{COMPOSE} up -d --no-deps -- proxy"]
    assert "      proxy: on the target image but not running and healthy: recreating" in capsys.readouterr().out
    assert s.state.services_touched


def test_a_pruned_target_image_is_pulled_back_by_its_recorded_digest(session):
    host = Host(running=V1, on_host=(V1,))
    digest = V2["backend"]["digests"][0]

    def pull(command):
        host.images[V2_BACKEND] = [digest]
        return ""
    s, remote = session(host, (r"^docker pull --quiet " + digest.replace(".", r"\."), pull))
    restore_mod.restore(s, V2, step="rollback")
    assert changes(remote) == [f"docker pull --quiet {digest}", f"docker tag {V2_BACKEND} {REF}",
                               f"{COMPOSE} up -d --no-deps -- backend"]


def test_a_pruned_image_without_a_digest_cannot_come_back(session):
    host = Host(running=V1, on_host=(V1,))
    target = {**V2, "backend": {**V2["backend"], "digests": []}}
    s, remote = session(host)
    with pytest.raises(DeployError) as exc:
        restore_mod.restore(s, target, step="rollback")
    assert exc.value.code == ExitCode.ROLLBACK_FAILED
    assert exc.value.what == ("the target image 43ddce2e4145 of backend is no longer on the host and has no recorded "
                              "digest to pull it back")
    assert exc.value.next_step == "roll back to an image tag that is in the registry: fab -H deploy@prod rollback --to <tag>"
    assert changes(remote) == [] and not s.state.services_touched


def test_a_failed_pull_by_digest_is_a_failed_rollback(session):
    host = Host(running=V1, on_host=(V1,))
    s, remote = session(host, (r"^docker pull ", Result(stdout="", stderr="manifest unknown", exited=1)))
    with pytest.raises(DeployError) as exc:
        restore_mod.restore(s, V2, step="auto-rollback")
    assert exc.value.code == ExitCode.ROLLBACK_FAILED and exc.value.step == "auto-rollback"
    assert exc.value.what == "pulling backend's target image back by digest failed: exited with code 1"
    assert not [c for c in changes(remote) if not c.startswith("docker pull")]


def test_a_failed_compose_up_says_what_runs_is_unknown(session):
    host = Host(running=V1)
    s, remote = session(host, (r" up -d --no-deps -- ", Result(stdout="", stderr="no space left on device", exited=1)))
    with pytest.raises(DeployError) as exc:
        restore_mod.restore(s, V2, step="rollback")
    assert exc.value.what == "docker compose up failed: exited with code 1"
    assert exc.value.step == "rollback › up" and exc.value.code == ExitCode.UNHEALTHY
    assert exc.value.next_step == "fab -H deploy@prod status" and s.state.services_touched


def test_a_service_the_target_does_not_name_is_left_alone(session):
    host = Host(running=V1)
    s, remote = session(host)
    restore_mod.restore(s, {"backend": V2["backend"]}, step="rollback")
    assert changes(remote) == [f"docker tag {V2_BACKEND} {REF}", f"{COMPOSE} up -d --no-deps -- backend"]


class CutOff:
    """Just what restore_again_if_cut_off asks of a session."""
    host = "deploy@prod"

    def __init__(self, reconnects: bool, dry: bool = False):
        self.dry, self.reconnects, self.kills = dry, reconnects, []

    def kill_running(self, let_finish: bool = False) -> bool:
        self.kills.append(let_finish)
        return self.reconnects


LOST = DeployError("the SSH connection to the host was lost", code=ExitCode.CONNECTION)


def test_a_restore_cut_off_by_a_lost_connection_runs_again_once_the_connection_is_back(mocker):
    """Adversary, this session: killed twice (the deploy's `up`, then the rollback's), the run said
    neither version was healthy while the rollback's `up` went on to serve v1."""
    inner = mocker.patch.object(restore_mod, "restore", side_effect=[LOST, {"backend": "sha256:old"}])
    s = CutOff(reconnects=True)
    assert restore_mod.restore_again_if_cut_off(s, {"backend": "sha256:old"}, step="auto-rollback") == {"backend": "sha256:old"}
    assert s.kills == [True] and inner.call_count == 2        # the first try's `up` was let finish first


@pytest.mark.parametrize("error, session", [
    (LOST, CutOff(reconnects=False)),                                          # still unreachable
    (LOST, CutOff(reconnects=True, dry=True)),
    (DeployError("backend unhealthy", code=ExitCode.UNHEALTHY), CutOff(reconnects=True)),   # a real failure
])
def test_a_restore_is_not_run_again_unless_the_connection_was_lost_and_is_back(mocker, error, session):
    inner = mocker.patch.object(restore_mod, "restore", side_effect=[error, {}])
    with pytest.raises(DeployError) as raised:
        restore_mod.restore_again_if_cut_off(session, {}, step="abort › restore")
    assert raised.value is error and inner.call_count == 1


def test_a_failed_command_of_the_restore_becomes_the_callers_error_block(mocker):
    """Not a bare CommandFailed reaching the top (adversary: exit 3, no step, the first failure lost)."""
    mocker.patch.object(restore_mod, "restore", side_effect=CommandFailed("docker tag a b", 1, "", "no such image"))
    with pytest.raises(DeployError) as raised:
        restore_mod.restore_again_if_cut_off(CutOff(reconnects=True), {}, step="auto-rollback")
    assert raised.value.step == "auto-rollback" and raised.value.command == "docker tag a b"
    assert raised.value.what.startswith("a command of the restore failed: ")
