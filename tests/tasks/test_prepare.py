"""Runbook 1 (fab prepare, fab env-diff) through the task layer on a scripted host: git pull is a
fetch and a fast-forward only, refused over local edits, another branch or diverged history, and
the env files are compared by key with values masked."""
from invoke import Result

from tasks.prepare import env_diff_task, prepare
from tests.conftest import captured
from tests.tasks.scripted import IMAGE_INSPECT, LOCK, Containers, all_of, flat, records, run_task

V1 = "7ef2620" + "1" * 33
V2 = "07069d5" + "2" * 33
APP = "/app/ai-doc-qa"
SECRET = "sentinel-prod-db-7f3e9a1c55"
PRODUCTION = f"APP_ENV=production\nLOG_LEVEL=info\nDATABASE_URL=postgres://app:{SECRET}@db/app\nLEGACY_CACHE_TTL=60\n"
STAGING = "APP_ENV=staging\nLOG_LEVEL=debug\nDATABASE_URL=postgres://app:other-staging-pw-1234@db/app\nSUMMARY_MAX_CHARS=500\n"


def env_files(production=PRODUCTION, staging=STAGING):
    """What commands.files.read_files prints for the env files (a missing one after its marker)."""
    def part(name, text):
        marker = "@@ai-doc-qa-file@@" if text is not None else "@@ai-doc-qa-missing@@"
        return f"{marker}{APP}/{name}\n" + (text or "") + "\n"
    return (r"@@ai-doc-qa-file@@", part(".env.production", production) + part(".env.staging", staging)
            + f"@@ai-doc-qa-missing@@{APP}/.env\n\n")


class Git:
    """The checkout: at v1, origin/main at v2 (``behind`` commits ahead of it)."""

    def __init__(self, branch="main", dirty="", behind=1, ahead=0):
        self.head, self.branch, self.dirty = V1, branch, dirty
        self.behind, self.ahead = behind, ahead

    def state(self, command):
        return f"{self.head}\n{self.branch}\n{self.dirty}"

    def merge(self, command):
        self.head = V2
        return ""

    def script(self, *first):
        return [*LOCK, *first, env_files(), (r"rev-parse HEAD", self.state), (r"rev-list --left-right", f"{self.behind} {self.ahead}\n"),
                (r"merge --ff-only", self.merge),
                (r"log --oneline", captured("git-log-oneline-origin-v2.txt").splitlines(True)[0]),
                *Containers(*all_of()).script(), (IMAGE_INSPECT, ""),
                (r"curl ", Result(stdout='{"version": "v1"}\n@@status 200 0.01\n', exited=0))]


def test_prepare_fast_forwards_and_compares_the_env_files_by_key(mocker, capsys):
    git = Git()
    code, out, err, remote = run_task(mocker, capsys, prepare, git.script(), show="LOG_LEVEL,DATABASE_URL")
    assert code == 0, err
    gits = [c for c in remote.commands if c.startswith("git -C")]
    assert f"git -C {APP} fetch --quiet origin main" in gits
    assert f"git -C {APP} rev-list --left-right --count origin/main...HEAD" in gits
    assert f"git -C {APP} log --oneline --no-decorate -n 50 {V1}..{V2}" in gits
    assert f"git -C {APP} merge --ff-only --quiet origin/main" in gits
    assert f"      git: {V1[:10]} -> {V2[:10]}, 1 commit(s) pulled:" in out
    assert "        07069d5 Release v2: document summaries (migration 0002, SUMMARY_MAX_CHARS)" in out
    assert "      env diff .env.production vs .env.staging (by key; values masked):" in out
    rows = {line.split()[3] if line.startswith("only in") else line.split()[1]: line
            for line in out.splitlines() if line.startswith(("only in", "changed "))}
    assert set(rows) == {"LEGACY_CACHE_TTL", "SUMMARY_MAX_CHARS", "APP_ENV", "LOG_LEVEL", "DATABASE_URL"}
    assert rows["LOG_LEVEL"].split()[1:] == ["LOG_LEVEL", "info", "debug"]       # --show a non-secret key
    assert "****** (secret)" in rows["DATABASE_URL"]                             # --show of a secret key: still masked
    assert "****** (10 chars, sha256:" in rows["APP_ENV"]
    assert SECRET not in out + err and "other-staging-pw" not in out + err
    [gitev] = [e for e in records(remote) if e["event"] == "git"]
    assert (gitev["before"], gitev["after"]) == (V1, V2)
    assert records(remote)[-1]["outcome"] == "success"


def test_prepare_on_the_remote_head_changes_nothing(mocker, capsys):
    git = Git(behind=0)
    code, out, err, remote = run_task(mocker, capsys, prepare, git.script())
    assert code == 0, err
    assert f"      git: already at origin/main ({V1[:10]})" in out
    assert not [c for c in remote.commands if "merge" in c]


def test_local_edits_are_refused_before_anything_is_fetched(mocker, capsys):
    git = Git(dirty=" M VERSION\n")
    code, out, err, remote = run_task(mocker, capsys, prepare, git.script())
    assert code == 3
    assert f"the checkout at {APP} has local changes to tracked files; refusing to pull over them" in flat(err)
    assert "M VERSION" in err
    assert f"Next: inspect on the host: git -C {APP} diff" in flat(err)
    assert f"Host state: nothing changed: code still at {V1[:10]}" in flat(err)
    assert not [c for c in remote.commands if " fetch " in c or "merge" in c]


def test_another_branch_is_refused(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, prepare, Git(branch="hotfix").script())
    assert code == 3
    assert "the checkout is on branch 'hotfix', the stage deploys 'main'" in flat(err)
    assert f"Next: git -C {APP} checkout main on the host (or set GIT_BRANCH)" in flat(err)


def test_diverged_history_is_refused_with_the_local_commits(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, prepare, Git(behind=1, ahead=1).script(
        (r"log --oneline .*origin/main\.\.HEAD", "abc1234 Hotfix on the server\n")))
    assert code == 3
    assert ("history has diverged: the checkout has 1 commit(s) that origin/main does not have "
            "(and origin/main has 1 new)") in flat(err)
    assert "abc1234 Hotfix on the server" in err
    assert not [c for c in remote.commands if "merge" in c]


def test_a_failed_fetch_changes_nothing(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, prepare, Git().script(
        (r" fetch --quiet", Result(stdout="", stderr="fatal: could not read from remote repository", exited=128))))
    assert code == 3
    assert "✗ FAILED at prepare › git fetch" in err and "git fetch origin main failed: exited with code 128" in flat(err)
    assert f"Next: check the remote from the host: git -C {APP} fetch origin" in flat(err)


def test_a_failed_fast_forward_changes_nothing(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, prepare, Git().script(
        (r"merge --ff-only", Result(stdout="", stderr="fatal: Not possible to fast-forward, aborting.", exited=128))))
    assert code == 3
    assert "git merge --ff-only failed: exited with code 128" in flat(err)
    assert f"code still at {V1[:10]} (a fast-forward changes nothing on failure)" in flat(err)


def test_an_app_dir_that_is_not_a_checkout(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, prepare, Git().script(
        (r"rev-parse HEAD", Result(stdout="", stderr="fatal: not a git repository", exited=128))))
    assert code == 3
    assert f"{APP} is not a readable git checkout" in flat(err)
    assert "Next: check APP_DIR (" in flat(err)


# ---- env-diff on its own -------------------------------------------------------------------------

def test_env_diff_with_the_same_keys_and_values(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, env_diff_task, [env_files(PRODUCTION, PRODUCTION)])
    assert code == 0
    assert "      env diff: .env.production and .env.staging have the same keys and values" in out
    assert [c for c in remote.commands if "@@ai-doc-qa-file@@" in c], "the files are read once, with the secrets"
    assert not [c for c in remote.commands if c.startswith("if [ -f")]


def test_env_diff_names_a_missing_file(mocker, capsys):
    code, out, err, remote = run_task(mocker, capsys, env_diff_task, [env_files(PRODUCTION, None)])
    assert code == 0
    assert "! env diff: .env.staging not found in /app/ai-doc-qa" in out


def test_env_diff_needs_two_files(mocker, capsys, settings):
    import dataclasses
    mocker.patch("tasks.base.load_settings", return_value=dataclasses.replace(settings, env_files=(".env.production",)))
    code, out, err, remote = run_task(mocker, capsys, env_diff_task, [env_files()])
    assert code == 0
    assert "      env diff: ENV_FILES names fewer than two files; nothing to compare" in out
