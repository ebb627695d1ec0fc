"""tasks/fleetdeploy.open_sessions: a fleet's sessions are opened at once (one connect's time, not
N), and one host that cannot be reached closes the others and shows its own error block."""
import threading

import pytest
from invoke import Exit

from tasks import fleetdeploy
from tasks.errors import DeployError, ExitCode


class FakeContext:
    class config:
        class run:
            dry = False
            echo = False


def test_sessions_are_opened_at_once_and_one_unreachable_host_closes_the_others(settings, mocker, capsys):
    barrier = threading.Barrier(3, timeout=30)       # connects one after another would never all get here
    closed = []

    def connect(c, host, st, accept):
        barrier.wait()
        if host == "b":
            raise DeployError("cannot connect to b", code=ExitCode.CONNECTION)
        return host
    mocker.patch.object(fleetdeploy, "connect", side_effect=connect)
    mocker.patch.object(fleetdeploy, "begin")
    session = mocker.patch.object(fleetdeploy, "Session")
    session.side_effect = lambda st, host, cxn, **kw: mocker.Mock(host=host, close=lambda h=host: closed.append(h))
    with pytest.raises(Exit) as exc:
        fleetdeploy.open_sessions(FakeContext(), settings, ["a", "b", "c"], False)
    assert exc.value.code == int(ExitCode.CONNECTION)
    assert sorted(closed) == ["a", "c"] and "cannot connect to b" in capsys.readouterr().err


def test_every_session_is_returned_in_hosts_order(settings, mocker):
    barrier = threading.Barrier(3, timeout=30)
    mocker.patch.object(fleetdeploy, "connect", side_effect=lambda c, host, st, accept: barrier.wait() or host)
    mocker.patch.object(fleetdeploy, "begin")
    mocker.patch.object(fleetdeploy, "Session", side_effect=lambda st, host, cxn, **kw: host)
    assert list(fleetdeploy.open_sessions(FakeContext(), settings, ["c", "a", "b"], False).items()) == [
        ("c", "c"), ("a", "a"), ("b", "b")]
