"""A host that accepts the SSH connection but opens no channel for a command (paramiko waits
channel_timeout, 3 x CONNECT_TIMEOUT): the command never started. On first contact that paged
Platform ("lost the SSH connection", "may or may not have finished"); it is a setup error like
any other failure to reach the host, and the block says the command did not start."""
import paramiko
import pytest

from tasks.errors import DeployError
from tasks.session import Session


@pytest.mark.parametrize("failure", [paramiko.SSHException("Timeout opening channel."),
                                     paramiko.ChannelException(2, "Resource shortage")])
def test_a_channel_that_never_opens_on_first_contact_pages_nobody_and_says_nothing_started(settings, mocker, failure):
    cxn = mocker.Mock()
    cxn.run.side_effect = failure
    s = Session(settings, "deploy@prod", cxn)
    with pytest.raises(DeployError) as exc:
        s.run("cat /app/ai-doc-qa/.env.production")
    assert exc.value.code == 5 and exc.value.kind == "setup"
    assert exc.value.state.startswith("this command did not start: the host opened no SSH channel for it")


def test_a_channel_that_never_opens_mid_run_is_still_an_infrastructure_failure(settings, mocker):
    from invoke import Result
    cxn = mocker.Mock()
    cxn.run.side_effect = [Result(stdout="", exited=0), paramiko.SSHException("Timeout opening channel.")]
    s = Session(settings, "deploy@prod", cxn)
    s.run("docker compose up -d", mutating=True)
    with pytest.raises(DeployError) as exc:
        s.run("docker compose ps -q")
    assert exc.value.kind == "infrastructure" and "did not start" in exc.value.state
