import os
import shlex
import subprocess
import time

import pytest

from commands.compose import Compose
from commands.shell import (
    UnsafeValue,
    cd,
    check_image,
    check_path,
    check_ref,
    check_service,
    check_url,
    join,
    on_host,
    output_kept_on_host,
    q,
    stop_tagged,
)

HOSTILE = ["main;rm -rf /", "$(reboot)", "`id`", "a b", "-f", "--upload-pack=touch /tmp/x", "x\ny", "x|y", "..", "a..b"]


def test_quote_keeps_spaces_and_semicolons_in_one_argument():
    path = "/srv/my app;rm -rf ~"
    cmd = cd(path, "ls")
    assert cmd == "cd '/srv/my app;rm -rf ~' && ls"
    assert shlex.split(cmd)[1] == path


def test_join_quotes_each_element():
    assert join(["a b", "c;d", "e"]) == "'a b' 'c;d' e"
    assert q("it's") == "'it'\"'\"'s'"


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_refs_are_refused(value):
    with pytest.raises(UnsafeValue):
        check_ref(value)


@pytest.mark.parametrize("value", ["main", "release/2026.11", "feature/x-1", "v1.2.3"])
def test_normal_refs_pass(value):
    assert check_ref(value) == value


@pytest.mark.parametrize("value", [v for v in HOSTILE if ".." not in v] + ["", ".hidden", "a/b"])
def test_hostile_service_names_are_refused(value):
    with pytest.raises(UnsafeValue):
        check_service(value)


@pytest.mark.parametrize("value", ["http://localhost/health x", "http://a/`id`", "file:///etc/passwd", "ftp://x", "http://a/\n"])
def test_bad_urls_are_refused(value):
    with pytest.raises(UnsafeValue):
        check_url(value)


def test_url_with_query_is_allowed_and_quoted():
    url = "https://hooks.example.com/services/T0/B0?token=a&b=c"
    assert check_url(url) == url
    assert shlex.split(f"curl {q(url)}") == ["curl", url]


@pytest.mark.parametrize("value", ["relative/path", "", "/a\x00b", "/srv/$(id)", "/srv/`id`", "/srv/a'b", '/srv/a"b', "/srv/a\\b"])
def test_paths_must_be_absolute_and_clean(value):
    with pytest.raises(UnsafeValue):
        check_path(value)


def test_relative_path_refuses_leading_dash():
    with pytest.raises(UnsafeValue):
        check_path("-rf", absolute=False)


@pytest.mark.parametrize("value", ["127.0.0.1:5000/ai-doc-qa/backend:v1", "nginx", "sha256:" + "a" * 64, "abcdef012345",
                                   "reg.example.com/app@sha256:" + "b" * 64])
def test_image_references(value):
    assert check_image(value) == value


@pytest.mark.parametrize("value", ["-x", "a b", "reg/app:tag;rm", "$(x)"])
def test_bad_image_references(value):
    with pytest.raises(UnsafeValue):
        check_image(value)


def test_compose_refuses_hostile_service_before_quoting():
    c = Compose("docker compose", "/app", "docker-compose.yml")
    with pytest.raises(UnsafeValue):
        c.pull(["backend; rm -rf /"])


@pytest.mark.parametrize("seconds, whole", [(0.001, 1), (0.5, 1), (1, 1), (1.2, 2), (30, 30), (29.9, 30)])
def test_sub_second_timeouts_round_up_never_to_zero(seconds, whole):
    """Issue 7 #15: int(0.5) == 0, and `timeout 0` on the host means no limit at all."""
    from commands.shell import whole_seconds
    assert whole_seconds(seconds) == whole


def test_stop_tagged_stops_the_runs_processes_waits_for_them_and_spares_itself_and_others():
    """The command kill_running sends, run by a real sh here: it TERMs the processes of the run's
    tag, returns once they are gone (one that takes 1 s to stop is waited for), and neither matches
    its own command line nor a process of another tag."""
    tag, other = f"ai-doc-qa-t{os.getpid()}", f"ai-doc-qa-u{os.getpid()}"
    slow = subprocess.Popen(["sh", "-c", "trap 'sleep 1; exit 0' TERM; while :; do sleep 0.1; done", tag])
    bystander = subprocess.Popen(["sh", "-c", "sleep 30", other])
    time.sleep(0.3)
    try:
        start = time.monotonic()
        r = subprocess.run(["sh", "-c", stop_tagged(tag, wait=5)], capture_output=True, text=True, timeout=20)
        took = time.monotonic() - start
        assert r.returncode == 0, r.stderr
        assert slow.poll() is not None and 0.9 < took < 5          # waited for its TERM handler to finish
        assert bystander.poll() is None
    finally:
        for p in (slow, bystander):
            p.kill()
            p.wait()


def test_stop_tagged_lets_the_commands_that_must_finish_end_before_it_stops_the_rest(tmp_path):
    """With let_finish, a process tagged TAG-keep runs to its end (it is not TERMed: its file is
    written), and only then the others of TAG are TERMed."""
    tag = f"ai-doc-qa-k{os.getpid()}"
    done = tmp_path / "done"
    keep = subprocess.Popen(["sh", "-c", f"trap 'exit 9' TERM; sleep 1; touch {done}", tag + "-keep"])
    other = subprocess.Popen(["sh", "-c", "sleep 30", tag])
    time.sleep(0.3)
    try:
        r = subprocess.run(["sh", "-c", stop_tagged(tag, wait=5, let_finish=5)], capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        assert keep.wait(5) == 0 and done.exists()          # ran to its end
        assert other.wait(5) != 0                            # stopped afterwards
    finally:
        for p in (keep, other):
            p.kill()
            p.wait()


def kept(command: str) -> list[str]:
    return ["sh", "-c", output_kept_on_host(command)]


def test_a_kept_command_gives_back_its_exit_status_and_both_streams_apart():
    r = subprocess.run(kept("echo out; echo err >&2; exit 3"), capture_output=True, text=True, timeout=10)
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    r = subprocess.run(kept("echo 'a b' # a comment ends the line"), capture_output=True, text=True, timeout=10)
    assert (r.returncode, r.stdout) == (0, "a b\n")


def test_a_kept_command_finishes_when_the_reader_of_its_output_is_gone(tmp_path):
    """The SSH channel gone is a pipe without a reader: the plain command dies at its next write
    (SIGPIPE); the kept one writes to its files and runs to its end."""
    script = f"echo a; sleep 0.6; echo b; echo c >&2; touch {tmp_path}/done"
    plain = subprocess.Popen(["sh", "-c", script.replace("done", "plain")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    keep = subprocess.Popen(kept(script), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.2)
    for p in (plain, keep):
        p.stdout.close()
        p.stderr.close()
    assert plain.wait(10) != 0 and not (tmp_path / "plain").exists()
    keep.wait(10)
    assert (tmp_path / "done").exists()


def test_a_kept_command_stopped_by_term_still_prints_what_it_wrote_and_leaves_no_file(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    p = subprocess.Popen(kept("echo started; sleep 5; echo never"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True, env=env)
    time.sleep(0.4)
    os.killpg(p.pid, 15)                     # as the remote timeout (or pkill of the run tag) does
    out, _ = p.communicate(timeout=10)
    assert p.returncode == 143 and out == "started\n"
    assert list(tmp_path.iterdir()) == []    # the output files are gone


@pytest.mark.parametrize("command", ['echo hi; trap "echo mine" EXIT', "echo hi; exec true", "echo hi; e=VICTIM; o=VICTIM",
                                     "unset o e k; echo hi", "for o in 1 2; do :; done; echo hi", "c() { exit 9; }; echo hi"])
def test_a_kept_command_cannot_skip_the_printing_or_reach_the_wrappers_files(command, tmp_path):
    """Its own EXIT trap, exec, or the wrapper's variable names (adversary, this session: a trap or
    exec left both files and lost the output; `e=/tmp/victim` deleted that file)."""
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    work = tmp_path / "tmp"
    work.mkdir()
    r = subprocess.run(kept(command.replace("VICTIM", str(victim))), capture_output=True, text=True, timeout=10,
                       env={**os.environ, "TMPDIR": str(work)})
    assert r.returncode == 0 and r.stdout.startswith("hi\n"), (r.returncode, r.stdout, r.stderr)
    assert victim.read_text() == "keep me" and list(work.iterdir()) == []


def test_a_kept_command_that_cannot_write_its_files_writes_to_the_channel_instead(tmp_path):
    """A full /tmp: mktemp needs no block, the first write fails (here: a file size limit of 0,
    which pipes do not have; SIGXFSZ ignored, so the write fails as on a full disk). The output reaches the caller, the status is kept, no file stays."""
    command = "echo important; echo err >&2; exit 3"
    r = subprocess.run(["sh", "-c", 'trap "" XFSZ; ulimit -f 0; eval "$1"', "sh", output_kept_on_host(command)], capture_output=True,
                       text=True, timeout=10, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert (r.returncode, r.stdout, r.stderr) == (3, "important\n", "err\n")
    assert list(tmp_path.iterdir()) == []


def test_on_host_wraps_a_command_under_timeout_in_a_tagged_shell_reading_nothing():
    assert on_host("echo 'a b'", "adq-run-1", 2.2) == "timeout -k 5 3 sh -c 'echo '\"'\"'a b'\"'\"'' adq-run-1 </dev/null"
    assert on_host("cat", "adq-run-1", 0).startswith("timeout -k 5 0 sh -c cat adq-run-1")     # 0: no limit


def test_on_host_runs_a_must_finish_command_tagged_keep_with_its_output_kept(tmp_path):
    """Run as the host runs it (sh -c): $0 is the tag (+KEEP for a must-finish command, which
    stop_tagged's let_finish waits for), the exit status and both streams come back apart, stdin
    is empty, and the kept output's files are gone afterwards."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    command = 'echo "$0"; read -r line && echo "read $line"; echo err >&2; exit 4'
    for must_finish, tag in ((False, "adq-run-9"), (True, "adq-run-9-keep")):
        r = subprocess.run(["sh", "-c", on_host(command, "adq-run-9", 5, must_finish, keep_output=must_finish)], input="typed\n",
                           capture_output=True, text=True, timeout=20, env=env)
        assert (r.returncode, r.stdout, r.stderr) == (4, f"{tag}\n", "err\n"), must_finish
    assert list(tmp_path.iterdir()) == []

