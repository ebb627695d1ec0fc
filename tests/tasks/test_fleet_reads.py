"""status, history, check-*, diagnose and smoke on a stage with several HOSTS (tasks/fleetread.py),
through the real task wrapper, each host a scripted remote answering with captured output; one
host may be unreachable. What is asserted: each host's lines together and prefixed with it, the
per-host table, the fleet split, one exit code, one JSON document."""
import json
import os
import re
import signal
import threading

import pytest
from invoke import Exit, MockContext, Result

from tasks import fleetread, ui
from tasks.diagnose import diagnose
from tasks.errors import SETUP, DeployError, ExitCode
from tasks.status import history, status
from tasks.verify import smoke
from tests.conftest import captured
from tests.tasks.conftest import Remote, hermetic_config
from tests.tasks.scripted import COMPOSE_V2, RECORD, Containers, all_of, record_answer

HOSTS = ("web-1", "web-2", "web-3")
HEAD = "7ef2620" + "a" * 33
FREE = (r"/\.deploy/lock", "free\n")
GIT_STATE = (r"rev-parse HEAD", f"{HEAD}\nmain\n")
RECORD_READ = (r"^if \[ -e .*n=\$\(wc -l <", record_answer(captured(RECORD)))
NO_RECORD = (r"^if \[ -e .*n=\$\(wc -l <", "")


def health(version):
    return (r"curl .*8000/health", Result(stdout=f'{{"status": "ok", "version": "{version}"}}\n@@status 200 0.004\n', exited=0))


def status_host(version="v1", record=RECORD_READ):
    return [*Containers(*all_of()).script(), health(version), GIT_STATE, record, FREE]


@pytest.fixture
def fleet(mocker, monkeypatch, capsys):
    """Run a task on stage production with HOSTS=web-1,web-2,web-3; ``scripts`` maps a host to its
    remote's script, or to a DeployError its connection raises."""
    monkeypatch.setenv("DEPLOY_HOSTS", ",".join(HOSTS))
    remotes = {}

    def run(task, scripts, wrap_connect=None, **options):
        def connect(c, host, settings, accept_new=False):
            answer = scripts[host]
            if isinstance(answer, Exception):
                raise answer
            remotes[host] = Remote([COMPOSE_V2, *answer])
            cxn = mocker.Mock()
            cxn.run.side_effect = remotes[host]
            return cxn
        mocker.patch.object(fleetread, "connect", side_effect=connect)
        if wrap_connect:
            mocker.patch.object(fleetread, "connect", side_effect=wrap_connect(connect))
        code = 0
        try:
            task(MockContext(config=hermetic_config()), stage="production", **options)
        except Exit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err
    run.remotes = remotes
    yield run
    ui.set_json_mode(False)         # --json switched it on for the process


def unreachable(host):
    return DeployError(f"cannot connect to {host}: ConnectionRefusedError", state="nothing was run",
                       kind=SETUP, code=ExitCode.CONNECTION)


def table(out):
    """The per-host table: host -> its cells after the host."""
    head = next(i for i, line in enumerate(out.splitlines()) if line.startswith("host ") and "result" in line)
    rows = {}
    for line in out.splitlines()[head + 2:]:
        if not line.strip() or line.startswith("Fleet:") or line.startswith("fleet split") or "differs" in line:
            break
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = cells[1:]
    return rows


def test_fleet_status_reads_every_host_groups_its_lines_and_flags_the_split(fleet):
    code, out, err = fleet(status, {"web-1": status_host("v1"), "web-2": status_host("v1"), "web-3": status_host("v2")})
    assert code == 0, err
    lines = out.splitlines()
    for h in HOSTS:
        mine = [i for i, line in enumerate(lines) if line.startswith(f"[{h}] ")]
        assert mine == list(range(mine[0], mine[0] + len(mine))), f"{h}'s lines are printed together"
        assert f"[{h}] health: all services running and healthy" in out
        assert f"[{h}] deploy lock: free" in out
    assert [lines.index(next(line for line in lines if line.startswith(f"[{h}] "))) for h in HOSTS] == sorted(
        lines.index(next(line for line in lines if line.startswith(f"[{h}] "))) for h in HOSTS), "in HOSTS order"
    rows = table(out)
    assert rows["web-1"][:3] == ["ok", "healthy", "v1"] and rows["web-3"][:3] == ["ok", "healthy", "v2"]
    assert rows["web-1"][3] == "20261128T041925Z-a527 success"
    assert "fleet split: web-1, web-2 serve v1; web-3 serves v2" in out
    assert out.rstrip().splitlines()[-1] == "Fleet: 3 hosts: every host ok"


def test_fleet_status_with_one_host_unreachable_reports_the_others_and_exits_5(fleet):
    code, out, err = fleet(status, {"web-1": status_host(), "web-2": unreachable("web-2"), "web-3": status_host()})
    assert code == ExitCode.CONNECTION
    assert "[web-1] health: all services running and healthy" in out and "[web-3] deploy lock: free" in out
    assert "✗ FAILED on web-2 (stage production)" in err and "cannot connect to web-2" in err
    assert "on web-1" not in err and "on web-3" not in err
    rows = table(out)
    assert rows["web-2"][:3] == ["unreachable", "-", "?"]
    assert rows["web-1"][0] == rows["web-3"][0] == "ok"
    assert "fleet split" not in out, "an unknown version is no split"
    assert "Fleet: 3 hosts: NOT every host ok: web-2 (exit code 5)" in out


def test_fleet_status_json_is_one_document_in_hosts_order(fleet):
    code, out, err = fleet(status, {"web-1": status_host("v1"), "web-2": unreachable("web-2"), "web-3": status_host("v2")},
                           json=True)
    assert code == ExitCode.CONNECTION
    doc = json.loads(out)           # stdout holds exactly one JSON document
    assert [h["host"] for h in doc["hosts"]] == list(HOSTS)
    assert [h["ok"] for h in doc["hosts"]] == [True, False, True]
    assert doc["hosts"][1]["error"]["exit_code"] == 5 and "services" not in doc["hosts"][1]
    assert doc["hosts"][0]["health_url"]["version"] == "v1"
    assert doc["versions"] == {"web-1": "v1", "web-2": None, "web-3": "v2"}
    assert doc["fleet_split"].startswith("fleet split: web-1 serves v1; web-3 serves v2")
    assert doc["exit_code"] == 5
    assert "[web-1]" not in out and "Fleet: 3 hosts" in err, "the table goes to stderr in --json mode"


def test_fleet_status_json_is_redacted_before_serialization(fleet, monkeypatch):
    """A secret of the stage config (a token in WEBHOOK_URL) that a host echoes is hidden, and a
    secret that is also JSON syntax ("true") does not break the document."""
    monkeypatch.setenv("DEPLOY_WEBHOOK_URL", "https://hooks.example.com/T000/sentinel-webhook-token")
    holder = {"who": "https://hooks.example.com/T000/sentinel-webhook-token", "from": "x", "pid": 1, "stage": "production",
              "task": "deploy", "started": "2026-11-28T04:00:00Z", "token": "ab12", "lock_stale_after": 120}
    held = (r"/\.deploy/lock", json.dumps(holder) + "\nclock 10000 9990 9990\n")
    host = [*Containers(*all_of()).script(), health("v1"), GIT_STATE, RECORD_READ, held]
    code, out, err = fleet(status, {h: host for h in HOSTS}, json=True)
    assert code == 0, err
    assert "sentinel-webhook-token" not in out + err
    assert json.loads(out)["hosts"][2]["lock"]["held"] is True


def test_fleet_history_says_which_records_differ_and_each_hosts_next_rollback(fleet):
    code, out, err = fleet(history, {"web-1": [RECORD_READ, *Containers(*all_of()).script()],
                                     "web-2": [RECORD_READ, *Containers(*all_of()).script()],
                                     "web-3": [NO_RECORD, *Containers(*all_of()).script()]}, limit="3")
    assert code == 0, err
    assert "[web-1] rollback candidates" in out and "[web-3] no releases recorded in /app/ai-doc-qa/.deploy/releases.jsonl" in out
    rows = table(out)
    assert rows["web-1"][:2] == ["ok", "20261128T041925Z-a527"] and rows["web-3"][:2] == ["ok", "none"]
    assert "last release differs: web-1 20261128T041925Z-a527; web-2 20261128T041925Z-a527; web-3 -" in out


def test_fleet_history_json_is_one_document(fleet):
    script = [RECORD_READ, *Containers(*all_of()).script()]
    code, out, err = fleet(history, {h: script for h in HOSTS}, json=True, limit="2")
    assert code == 0, err
    doc = json.loads(out)
    assert [len(h["releases"]) for h in doc["hosts"]] == [2, 2, 2]
    assert all(h["rollback_candidates"] for h in doc["hosts"])


def test_fleet_smoke_failing_on_one_host_is_exit_4_with_that_hosts_block_only(fleet):
    ok = (r"curl ", Result(stdout='{"status": "ok"}\n@@status 200 0.01\n', exited=0))
    bad = (r"curl ", Result(stdout="Internal Server Error\n@@status 500 0.02\n", exited=0))
    code, out, err = fleet(smoke, {"web-1": [ok], "web-2": [bad], "web-3": [ok]})
    assert code == ExitCode.UNHEALTHY
    assert "[web-1] smoke tests passed" in out and "[web-3] smoke tests passed" in out
    assert "[web-2] smoke tests passed" not in out
    assert err.count("✗ FAILED") == 1 and "✗ FAILED at smoke on web-2" in err
    rows = table(out)
    assert rows["web-2"][0] == "failed (exit 4)" and rows["web-2"][1].startswith("2 smoke test(s) failed")
    assert rows["web-1"][:2] == ["ok", "no problem found"]


def test_fleet_diagnose_of_healthy_hosts_with_one_unreachable_exits_5(fleet):
    healthy = [*Containers(*all_of()).script(), (r"^docker stats", ""), (r"(exec -T backend|^docker exec [0-9a-f]{64}) sh -c", "")]
    code, out, err = fleet(diagnose, {"web-1": healthy, "web-2": healthy, "web-3": unreachable("web-3")})
    assert code == ExitCode.CONNECTION
    for h in ("web-1", "web-2"):
        assert f"[{h}] == restart loop ==" in out and f"[{h}] diagnose: no problem found" in out
    assert table(out)["web-3"][0] == "unreachable"


def test_a_problem_and_an_unreachable_host_exit_with_the_first_hosts_code(fleet):
    """Hosts differ: the first host's own code in HOSTS order (docs/fleets.md)."""
    bad = (r"curl ", Result(stdout="down\n@@status 503 0.02\n", exited=0))
    code, _, _ = fleet(smoke, {"web-1": unreachable("web-1"), "web-2": [bad], "web-3": [bad]})
    assert code == ExitCode.CONNECTION
    code, _, _ = fleet(smoke, {"web-1": [bad], "web-2": unreachable("web-2"), "web-3": [bad]})
    assert code == ExitCode.UNHEALTHY


def test_sigterm_while_reading_cuts_off_the_hosts_still_read_and_exits_143(fleet, mocker):
    """web-2 hangs on its health URL until its connection is closed; SIGTERM arrives meanwhile."""
    closed = threading.Event()

    def hang(command):
        os.kill(os.getpid(), signal.SIGTERM)        # the wrapper turns it into Terminated in the main thread
        closed.wait(10)
        raise OSError("Socket is closed")
    hung = [*Containers(*all_of()).script(), (r"curl .*8000/health", hang), GIT_STATE, RECORD_READ, FREE]
    def closing(real):
        def connect(c, host, settings, accept_new=False):
            cxn = real(c, host, settings, accept_new)
            if host == "web-2":
                cxn.close.side_effect = closed.set
            return cxn
        return connect
    scripts = {"web-1": status_host(), "web-2": hung, "web-3": status_host()}
    code, out, err = fleet(status, scripts, wrap_connect=closing)
    assert code == ExitCode.TERMINATED
    assert closed.is_set(), out + err
    assert table(out)["web-2"][0] == "interrupted"
    assert "Traceback" not in err and "Fleet: 3 hosts: NOT every host ok" in out
