"""``fab deploy --version TAG`` on the host (docs/versions.md): the registry check before anything
changes, the ``.env`` write right before ``up``, and putting the variable back on a restore.

The tag reaches every compose command of the run as ``VAR=TAG docker compose ...`` (the shell
wins over .env), so pull and migrate use the new images while the .env still names the old ones;
the .env changes only when the services switch, so a failed pull or migration leaves it true.
"""
from __future__ import annotations

import dataclasses

from commands import docker as docker_cmd
from commands import versions as versions_cmd
from commands.shell import UnsafeValue
from tasks import messages, ui
from tasks.errors import CommandFailed, DeployError, ExitCode
from tasks.session import Session
from tasks.steps import RunOptions


def read_value(s: Session) -> str:
    st = s.settings
    return versions_cmd.parse_value(s.run(versions_cmd.read_variable_command(st.app_dir, st.image_tag_variable)).stdout)


def check_restorable(s: Session, tag: str, previous: str) -> None:
    """The value now in the .env is what a rollback writes back, so it must be a plain tag too
    (``${OTHER}`` is not): refused here, before anything changes, not in the middle of a rollback.
    The value is not quoted in the error: the .env holds secrets, and this one is not a tag."""
    st = s.settings
    try:
        versions_cmd.check_tag(previous or "x")
    except UnsafeValue:
        raise DeployError(f"--version {tag}: the value of {st.image_tag_variable} in {st.app_dir}/.env is not a plain docker "
                          "tag (letters, digits, _ . -), so a rollback could not put it back", code=ExitCode.CONFIG,
                          state=s.describe_state() + "; nothing was changed",
                          next_step=f"set {st.image_tag_variable} to a plain tag (or remove it) in {st.app_dir}/.env, "
                                    "then deploy again") from None


def refs_using(s: Session, tag: str) -> list[str]:
    """The image references of the compose file that use the variable, resolved with ``tag``."""
    var = s.settings.image_tag_variable
    with_tag = dataclasses.replace(s.compose, env=(var, tag))
    other = dataclasses.replace(s.compose, env=(var, versions_cmd.other_value(tag)))
    return versions_cmd.refs_using(versions_cmd.parse_images(s.run(with_tag.config_images()).stdout),
                                   versions_cmd.parse_images(s.run(other.config_images()).stdout))


def check_step(s: Session, opts: RunOptions) -> None:
    """Before anything changes: every image that uses the variable exists in the registry with the
    tag (pulled: the same daemon, registry settings and credentials ``up`` will use, and the
    later pull finds it on the host). Then every compose command of the run carries the tag."""
    st, tag = s.settings, opts.version
    var = st.image_tag_variable
    previous = read_value(s)
    check_restorable(s, tag, previous)
    refs = refs_using(s, tag)
    if not refs:
        raise DeployError(f"--version {tag}: no image in {st.compose_file} uses the variable {var}", code=ExitCode.CONFIG,
                          state=s.describe_state() + "; nothing was changed",
                          next_step=f"make the tag of the image a Compose variable, e.g. image: <registry>/backend:${{{var}:-latest}}, "
                                    "or set IMAGE_TAG_VARIABLE to the variable it uses")
    for ref in refs:
        try:
            s.run(docker_cmd.pull(ref), timeout=st.pull_timeout, mutating=True, interruptible=True)
        except CommandFailed as failed:
            raise DeployError.from_command(
                failed, f"--version {tag}: image {ref} is not in the registry (or cannot be pulled)", step="version",
                state=s.describe_state() + f"; nothing was changed ({var} is still {previous or 'unset'})",
                next_step=f"check the tag (docker manifest inspect {ref}), then {messages.fab(s.host, 'deploy --version <tag>')}") from None
    s.state.tag_change = (var, previous)
    s._compose = dataclasses.replace(s.compose, env=(var, tag))
    s.recorder.write("version", variable=var, tag=tag, previous=previous, images=refs)
    ui.say(f"      {', '.join(refs)}: in the registry; {var} is {previous or 'unset'} now, {tag} from the switch on")


def write_before_up(s: Session) -> None:
    """The switch: the .env gets the tag, so the operator's own ``docker compose`` sees what runs."""
    if not s.state.tag_change or not s.compose.env:
        return
    var, tag = s.compose.env
    s.state.services_touched = True         # from here on a restore must put the variable back
    s.run(versions_cmd.set_variable_command(s.settings.app_dir, var, tag), mutating=True)
    s._compose = dataclasses.replace(s.compose, env=None)
    ui.say(f"      {var}={tag} written to {s.settings.app_dir}/.env")


def restore_variable(s: Session, target: dict, current: dict) -> bool:
    """Before a restore: put the variable back if ``target`` ran under another value of it (the
    value recorded before this run's write, or for ``fab rollback`` the tag of the target's
    recorded references). True: it was set, and the target's own references are to be used."""
    st = s.settings
    var = st.image_tag_variable
    before = s.state.before
    if before and target is before.images:      # auto-rollback, abort: only this run's own write is undone
        if not s.state.tag_change:
            return False
        value = s.state.tag_change[1]
    else:
        value = versions_cmd.restore_value(target, current, st.services, read_value(s))
        if value is None:
            return False
    s._compose = dataclasses.replace(s.compose, env=None)
    s.state.services_touched = True
    cmd = (versions_cmd.set_variable_command(st.app_dir, var, value) if value
           else versions_cmd.unset_variable_command(st.app_dir, var))
    s.run(cmd, mutating=True)
    s.recorder.write("version_restored", variable=var, tag=value)
    ui.say(f"      {var}={value or '(unset)'} written to {st.app_dir}/.env")
    return True
