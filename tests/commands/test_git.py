"""Git builders by exact string, and run for real against throw-away repositories (local git only)."""
import subprocess

import pytest

from commands import git

APP = "/app/ai-doc-qa"


def sh(cmd: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", cmd], cwd=cwd, capture_output=True, text=True)


def test_exact_strings():
    assert git.state(APP) == (f"git -C {APP} rev-parse HEAD && git -C {APP} rev-parse --abbrev-ref HEAD && "
                              f"git -C {APP} status --porcelain --untracked-files=no")
    assert git.fetch(APP, "origin", "main") == f"git -C {APP} fetch --quiet origin main"
    assert git.merge_ff_only(APP, "origin/main") == f"git -C {APP} merge --ff-only --quiet origin/main"
    assert git.ahead_behind(APP, "origin/main") == f"git -C {APP} rev-list --left-right --count origin/main...HEAD"
    assert git.log_range(APP, "abc", "def") == f"git -C {APP} log --oneline --no-decorate -n 50 abc..def"
    assert git.show_file(APP, "origin/main", ".env.example") == f"git -C {APP} show origin/main:.env.example 2>/dev/null || true"


def test_path_with_space_and_semicolon_is_one_argument():
    assert git.state("/srv/a b;c").startswith("git -C '/srv/a b;c' rev-parse HEAD")


def test_hostile_branch_refused():
    with pytest.raises(ValueError):
        git.fetch(APP, "origin", "main;touch /tmp/pwned")
    with pytest.raises(ValueError):
        git.fetch(APP, "--upload-pack=x", "main")


def test_parse_state_and_counts():
    st = git.parse_state("abc123\nmain\n M app/main.py\n")
    assert (st.head, st.branch, st.dirty) == ("abc123", "main", (" M app/main.py",))
    assert git.parse_state("abc\nmain\n").dirty == ()
    assert git.parse_ahead_behind("3\t1\n") == (3, 1)


def test_parse_migration_headers_from_git_grep():
    out = """origin/main:migrations/versions/0001_create_documents.py:revision = "0001"
origin/main:migrations/versions/0001_create_documents.py:down_revision = None
origin/main:migrations/versions/0002_add_summary.py:revision: str = '0002'
origin/main:migrations/versions/0002_add_summary.py:down_revision: Union[str, None] = '0001'
origin/main:migrations/versions/0003_merge.py:revision = 'm3'
origin/main:migrations/versions/0003_merge.py:down_revision = ('0002', 'x1')
"""
    migs = git.parse_migration_headers(out)
    assert [(m.revision, m.down_revisions) for m in migs] == [("0001", ()), ("0002", ("0001",)), ("m3", ("0002", "x1"))]


@pytest.fixture
def repos(tmp_path):
    """origin (bare) + a clone, like the server's checkout."""
    origin, work, clone = tmp_path / "origin.git", tmp_path / "work", tmp_path / "clone"
    ident = "-c user.email=t@example.com -c user.name=t"
    assert sh(f"git init -q --bare -b main {origin}").returncode == 0
    assert sh(f"git clone -q {origin} {work} && cd {work} && git checkout -q -b main && echo 1 > f && "
              f"git add f && git {ident} commit -qm one && git push -q origin main").returncode == 0
    assert sh(f"git clone -q {origin} {clone}").returncode == 0
    return origin, work, clone, ident


def test_fast_forward_pull_for_real(repos):
    origin, work, clone, ident = repos
    assert sh(f"cd {work} && echo 2 > f && git {ident} commit -qam two && git push -q origin main").returncode == 0
    assert sh(git.fetch(str(clone), "origin", "main")).returncode == 0
    behind, ahead = git.parse_ahead_behind(sh(git.ahead_behind(str(clone), "origin/main")).stdout)
    assert (behind, ahead) == (1, 0)
    assert sh(git.merge_ff_only(str(clone), "origin/main")).returncode == 0
    assert (clone / "f").read_text().strip() == "2"


def test_dirty_tree_is_seen_and_untracked_files_are_not(repos):
    _, _, clone, _ = repos
    (clone / ".env.production").write_text("SECRET_KEY=x\n")       # untracked: fine
    assert git.parse_state(sh(git.state(str(clone))).stdout).dirty == ()
    (clone / "f").write_text("local edit\n")
    assert git.parse_state(sh(git.state(str(clone))).stdout).dirty == (" M f",)


def test_diverged_history_is_detected_and_ff_only_refuses(repos):
    origin, work, clone, ident = repos
    assert sh(f"cd {work} && echo 2 > f && git {ident} commit -qam remote && git push -q origin main").returncode == 0
    assert sh(f"cd {clone} && echo 3 > g && git add g && git {ident} commit -qm local").returncode == 0
    sh(git.fetch(str(clone), "origin", "main"))
    behind, ahead = git.parse_ahead_behind(sh(git.ahead_behind(str(clone), "origin/main")).stdout)
    assert (behind, ahead) == (1, 1)
    head = sh(f"git -C {clone} rev-parse HEAD").stdout
    assert sh(git.merge_ff_only(str(clone), "origin/main")).returncode != 0
    assert sh(f"git -C {clone} rev-parse HEAD").stdout == head     # nothing changed


def test_migration_headers_command_runs(repos):
    origin, work, clone, ident = repos
    mig = work / "migrations" / "versions"
    mig.mkdir(parents=True)
    (mig / "0001_a.py").write_text('revision = "0001"\ndown_revision = None\n')
    (mig / "0002_b.py").write_text("revision: str = '0002'\ndown_revision: str | None = '0001'\n")
    assert sh(f"cd {work} && git add -A && git {ident} commit -qm m && git push -q origin main").returncode == 0
    sh(git.fetch(str(clone), "origin", "main"))
    out = sh(git.migration_headers(str(clone), "origin/main", "migrations/versions")).stdout
    assert [(m.revision, m.down_revisions) for m in git.parse_migration_headers(out)] == [("0001", ()), ("0002", ("0001",))]
    # before the pull, HEAD has none of them
    assert git.parse_migration_headers(sh(git.migration_headers(str(clone), "HEAD", "migrations/versions")).stdout) == []


def test_unchanged_names_the_commit_it_compares_and_parse_commit_reads_it():
    from commands.git import parse_commit, unchanged
    assert unchanged("/app", "origin/main", ["*.yml", ".env"]) == (
        "c=$(git -C /app rev-parse --verify --quiet 'origin/main^{commit}') && echo \"$c\" && "
        "git -C /app diff --quiet HEAD \"$c\" -- '*.yml' .env")
    sha = "2fc2ddcf8a" + "0" * 30
    assert parse_commit(sha + "\n") == sha
    assert parse_commit("") == "" and parse_commit("fatal: bad revision\n") == ""
