"""Runbook 1. Prepare the deployment server: ``git pull`` (fast-forward only, never over local
edits or diverged history) and the configuration review (env files compared by key, values masked)."""
from __future__ import annotations

import re

from commands import envdiff
from commands import git as git_cmd
from tasks import ui
from tasks.base import operator_task
from tasks.cli import parse_show
from tasks.errors import CommandFailed, DeployError, ExitCode
from tasks.flow import run_flow
from tasks.hostsecrets import env_file
from tasks.session import Session
from tasks.steps import RunOptions, Step

STEP = "prepare › git pull"


def short(sha: str) -> str:
    return sha[:10]


def fetch(s: Session, state, remote: str) -> None:
    st, app = s.settings, s.settings.app_dir
    with s.timed("prepare", "git fetch"):
        try:
            s.run(git_cmd.fetch(app, st.git_remote, st.git_branch), timeout=st.command_timeout)
        except CommandFailed as failed:
            raise DeployError.from_command(failed, f"git fetch {st.git_remote} {st.git_branch} failed", step="prepare › git fetch",
                                           state=f"nothing changed: code still at {short(state.head)}",
                                           next_step=f"check the remote from the host: git -C {app} fetch {st.git_remote}") from None


def git_pull(s: Session) -> tuple[str, str]:
    """Fast-forward the checkout to REMOTE/BRANCH. Returns (old, new) commit."""
    st = s.settings
    app = st.app_dir
    remote = git_cmd.remote_ref(st.git_remote, st.git_branch)
    counted = lambda: s.run(git_cmd.ahead_behind(app, remote)).stdout      # noqa: E731
    if s.state.fetched == remote:
        # This run's checklist fetched it and checked what comes (migrations, env keys, compose
        # files): a second fetch could bring commits nobody checked. They wait for the next deploy.
        # Nothing to fetch: the checkout and how far it is from the remote are read at once.
        state, count = s.concurrently(lambda: checkout_state(s), counted)
        ui.say(f"      git: merging {remote} as this run's checklist fetched and checked it")
    else:
        state = checkout_state(s)
        fetch(s, state, remote)
        count = counted()
    behind, ahead = git_cmd.parse_ahead_behind(count)
    if ahead:
        raise diverged(s, state, remote, ahead, behind)
    with s.timed("prepare", "git pull"):
        new = fast_forward(s, state, remote, behind)
    s.state.git = f"code at {short(new)}" + (f" (was {short(state.head)})" if new != state.head else "")
    s.state.head = new
    s.recorder.write("git", before=state.head, after=new)
    report_pull(s, state.head, new, remote, behind)
    return state.head, new


def checkout_state(s: Session) -> git_cmd.RepoState:
    """The checkout's HEAD, branch and edits; a dirty tree or another branch is refused."""
    st = s.settings
    app = st.app_dir
    try:
        state = git_cmd.parse_state(s.run(git_cmd.state(app)).stdout)
    except CommandFailed as failed:
        raise DeployError.from_command(failed, f"{app} is not a readable git checkout", step=STEP, state="nothing changed",
                                       next_step=f"check APP_DIR ({st.sources.get('APP_DIR')}) and the deploy user's access") from None
    s.state.git = f"code at {short(state.head)}"
    if state.dirty:
        raise DeployError(
            f"the checkout at {app} has local changes to tracked files; refusing to pull over them",
            command=git_cmd.state(app), output="\n".join(state.dirty), step=STEP,
            state=f"nothing changed: code still at {short(state.head)}",
            next_step=f"inspect on the host: git -C {app} diff ; keep the change in a commit upstream, or discard it with git -C {app} checkout -- <file>",
            code=ExitCode.STEP_FAILED)
    if state.branch != st.git_branch:
        raise DeployError(
            f"the checkout is on branch {state.branch!r}, the stage deploys {st.git_branch!r}",
            step=STEP, state=f"nothing changed: code still at {short(state.head)}",
            next_step=f"git -C {app} checkout {st.git_branch} on the host (or set GIT_BRANCH)")
    return state


def diverged(s: Session, state: git_cmd.RepoState, remote: str, ahead: int, behind: int) -> DeployError:
    app = s.settings.app_dir
    return DeployError(
        f"history has diverged: the checkout has {ahead} commit(s) that {remote} does not have"
        + (f" (and {remote} has {behind} new)" if behind else ""),
        command=git_cmd.log_range(app, remote, "HEAD"),
        output=s.run(git_cmd.log_range(app, remote, "HEAD"), check=False).stdout,
        step=STEP, state=f"nothing changed: code still at {short(state.head)}",
        next_step=f"find out who committed on the server; push those commits upstream or reset with git -C {app} reset --hard {remote} (after saving them)")


def fast_forward(s: Session, state: git_cmd.RepoState, remote: str, behind: int) -> str:
    """``git merge --ff-only``: changes nothing on failure. Returns the new HEAD."""
    app = s.settings.app_dir
    if behind:
        try:
            s.run(git_cmd.merge_ff_only(app, remote), mutating=True)
        except CommandFailed as failed:
            raise DeployError.from_command(failed, "git merge --ff-only failed", step=STEP,
                                           state=f"code still at {short(state.head)} (a fast-forward changes nothing on failure)",
                                           next_step=f"git -C {app} status on the host") from None
    if s.dry:
        return state.head
    new = git_cmd.parse_commit(s.run(git_cmd.head(app)).stdout)
    if not new:
        raise DeployError(f"git rev-parse HEAD in {app} printed no commit after the merge", command=git_cmd.head(app),
                          step=STEP, state="code possibly changed by the merge: check it", next_step=f"git -C {app} log -1 on the host")
    return new


def report_pull(s: Session, old: str, new: str, remote: str, behind: int) -> None:
    if new == old:
        ui.say(f"      git: already at {remote} ({short(new)})" if not behind else f"      git: would fast-forward {behind} commit(s) from {remote}")
        return
    ui.say(f"      git: {short(old)} -> {short(new)}, {behind} commit(s) pulled:")
    for line in s.run(git_cmd.log_range(s.settings.app_dir, old, new)).stdout.splitlines():
        ui.say(f"        {line}")


def env_diff(s: Session, show: frozenset[str] = frozenset()) -> envdiff.EnvDiff | None:
    """Compare the first two ENV_FILES by key; values always masked (runbook note 1)."""
    st = s.settings
    if len(st.env_files) < 2:
        ui.say("      env diff: ENV_FILES names fewer than two files; nothing to compare")
        return None
    left_name, right_name = st.env_files[0], st.env_files[1]
    left, right = env_file(s, left_name), env_file(s, right_name)
    missing = [n for n, v in ((left_name, left), (right_name, right)) if v is None]
    if missing:
        ui.warn(f"env diff: {', '.join(missing)} not found in {st.app_dir}")
        return None
    d = envdiff.diff(left, right, left_name, right_name)
    rows = envdiff.render_rows(d, left, right, show, re.compile(st.secret_key_pattern))
    if not rows:
        ui.say(f"      env diff: {left_name} and {right_name} have the same keys and values")
    else:
        ui.say(f"      env diff {left_name} vs {right_name} (by key; values masked):")
        ui.table(rows, ["change", "key", left_name, right_name])
    return d


def prepare_step(s: Session, opts: RunOptions) -> None:
    git_pull(s)
    with s.timed("prepare", "env diff"):
        env_diff(s, opts.show)


@operator_task(help={"show": "comma-separated non-secret keys whose values the env diff may print (secret-looking keys stay masked)"})
def prepare(s: Session, show=""):
    """Runbook 1: git pull --ff-only (refuses dirty or diverged trees) and env diff by key, values masked."""
    run_flow(s, (Step("prepare", prepare_step),), RunOptions("prepare", show=parse_show(show)))


@operator_task(name="env-diff", help={"show": "comma-separated non-secret keys whose values may be printed (secret-looking keys stay masked)"})
def env_diff_task(s: Session, show=""):
    """Compare .env.production and .env.staging by key (added, removed, changed); values masked."""
    env_diff(s, parse_show(show))
