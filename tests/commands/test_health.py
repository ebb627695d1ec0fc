from commands import health
from tests.conftest import state

SERVICES = ["backend", "proxy"]


def test_ready_when_running_and_healthy_or_without_healthcheck():
    v = health.evaluate(SERVICES, [state("backend"), state("proxy", health=None)])
    assert v.ready and not v.failed


def test_waiting_while_starting_or_missing():
    v = health.evaluate(SERVICES, [state("backend", health="starting")])
    assert not v.ready and not v.failed
    assert any("proxy: no container yet" in w for w in v.waiting)


def test_unhealthy_fails_fast_with_healthcheck_output():
    v = health.evaluate(["backend"], [state("backend", health="unhealthy", health_log=["curl: (22) 500"])])
    assert v.failed and "unhealthy" in v.problems[0] and "curl: (22) 500" in v.problems[0]


def test_oom_and_restart_loop_and_exit_fail():
    assert health.evaluate(["m"], [state("m", oom=True, restarts=3)]).failed
    assert health.evaluate(["m"], [state("m", status="restarting", restarts=2)]).failed
    assert health.evaluate(["m"], [state("m", status="exited", exit_code=1)]).failed


def test_restart_count_growing_since_baseline_fails():
    s = state("backend", restarts=2, cid="c1")
    assert health.evaluate(["backend"], [s], {"c1": 2}).ready
    assert health.evaluate(["backend"], [s], {"c1": 1}).failed


def test_curl_command_and_parse():
    cmd = health.curl("http://localhost/health", 5)
    assert cmd.startswith("out=$(curl -sS -w '\\n@@status %{http_code} %{time_total}' --max-time 5 http://localhost/health); rc=$?;")
    ok = health.parse_curl("u", 0, '{"status":"ok","version":"v2"}\n@@status 200 0.004\n')
    assert ok.ok and ok.status == 200 and ok.version == "v2"
    bad = health.parse_curl("u", 0, "oops\n@@status 500 0.01\n")
    assert not bad.ok and bad.error == "HTTP 500" and bad.body == "oops"
    refused = health.parse_curl("u", 7, "\n@@status 000 0.0\n", "curl: (7) Failed to connect")
    assert not refused.ok and "connection refused" in refused.error
    hung = health.parse_curl("u", 28, "\n@@status 000 5.0\n")
    assert "timed out" in hung.error
    assert health.parse_curl("u", 0, "not json\n@@status 200 0.1").version is None


def test_parse_probe_measures_the_longest_outage():
    out = "100.0 200\n100.2 200\n100.4 502\n100.6 000\n101.1 200\n101.3 502\n101.5 200\nnoise\n"
    d = health.parse_probe(out)
    assert (d.probes, d.failed, d.longest) == (7, 3, 0.7)
    assert "0.7 s (3 of 7 probes failed)" in d.describe("u")
    assert health.parse_probe("1.0 200\n1.2 200\n").describe("u") == "downtime of u: none (2 probes, all 2xx)"
    assert health.parse_probe("1.0 200\n1.2 503\n1.4 503\n").longest == 0.2     # still down at the end
    assert health.parse_probe("").describe("u") == "downtime of u: not measured"


def test_probe_loop_runs_and_stops_on_its_stop_file(tmp_path):
    import subprocess
    import threading
    stop = tmp_path / "stop"
    cmd = health.probe_loop("http://127.0.0.1:1/health", str(stop), 20)
    threading.Timer(0.7, stop.touch).start()
    r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=15)
    d = health.parse_probe(r.stdout)
    assert d.probes >= 2 and d.failed == d.probes          # nothing listens on port 1
    assert not stop.exists()


def test_curl_builder_exact_string():
    assert health.curl("http://localhost/health", 5) == (
        "out=$(curl -sS -w '\\n@@status %{http_code} %{time_total}' --max-time 5 http://localhost/health); rc=$?; "
        "if [ \"$(printf '%s\\n' \"$out\" | wc -c)\" -le 2000 ]; then printf '%s\\n' \"$out\"; "
        "else echo '[... start of the body cut ...]'; printf '%s\\n' \"$out\" | tail -c 2000 | sed 1d; fi; exit $rc")


def _run_curl_with_body(tmp_path, body: str):
    """Run the curl builder for real with /bin/sh, a fake curl printing ``body`` and the status."""
    import subprocess
    fake = tmp_path / "curl"
    (tmp_path / "body").write_text(body)
    fake.write_text(f"#!/bin/sh\ncat {tmp_path / 'body'}\nprintf '\\n@@status 500 0.01'\nexit 0\n")
    fake.chmod(0o755)
    r = subprocess.run(["sh", "-c", health.curl("http://localhost/x", 5)], capture_output=True, text=True,
                       env={"PATH": f"{tmp_path}:/usr/bin:/bin"}, timeout=15)
    return health.parse_curl("http://localhost/x", r.returncode, r.stdout, r.stderr)


def test_host_side_body_cut_never_starts_inside_a_secret(tmp_path):
    """Issue 7 item 10: `tail -c` cut a secret in half at the start of the window; its second half
    is matched by no redaction rule. The window now starts at a line boundary."""
    secret = "sentinel-tail-0123456789abcdef"
    status_line = len("\n@@status 500 0.01\n")
    for cut_inside in (1, 5, 12, len(secret) - 4):
        head = "x" * 50 + "\n" + "y" * 3000 + secret[:cut_inside]
        body = head + secret[cut_inside:] + "\n" + "tail line\n" + "z" * (2000 - status_line - len(secret[cut_inside:]) - 12)
        check = _run_curl_with_body(tmp_path, body)
        leaked = [secret[i:] for i in range(len(secret) - 3) if secret[i:] in check.body]
        assert not leaked, (cut_inside, check.body[:80])
        assert check.body.startswith("[... start of the body cut ...]\ntail line") and check.status == 500


def test_short_body_is_passed_whole(tmp_path):
    check = _run_curl_with_body(tmp_path, "line one\nline two")
    assert check.body == "line one\nline two" and check.status == 500


def test_fractional_smoke_timeout_rounds_up_in_curl_max_time_and_probe_loop():
    """Issue 7 #15: int() cut 1.5 s to --max-time 1 and a 0.5 s probe window to 0 s."""
    assert " --max-time 2 " in health.curl("http://localhost/health", 1.5)
    assert " --max-time 1 " in health.curl("http://localhost/health", 0.2)
    assert "end=$(( $(date +%s) + 1 ))" in health.probe_loop("http://localhost/health", "/tmp/stop", 0.5)


def test_health_url_answering_makes_a_starting_backend_ready_without_dockers_interval():
    """Target 2 (issue 9): Docker reports healthy only after its healthcheck interval; the app's own
    health URL answering in the same poll is enough for the service behind it, and only for it."""
    states = [state("backend", health="starting"), state("proxy", health=None)]
    assert not health.evaluate(SERVICES, states).ready
    assert health.evaluate_http_first(SERVICES, states, "backend", http_ok=True).ready
    assert not health.evaluate_http_first(SERVICES, states, "backend", http_ok=False).ready
    other = [state("backend"), state("proxy", health="starting")]
    assert not health.evaluate_http_first(SERVICES, other, "backend", http_ok=True).ready


def test_health_url_answering_never_hides_a_failure():
    """unhealthy, exited, OOM-killed and restarting stay definitive failures with the URL answering."""
    for sick in (state("backend", health="unhealthy", health_log=["500"]), state("backend", oom=True, restarts=1),
                 state("backend", status="restarting", restarts=2), state("backend", status="exited", exit_code=1)):
        v = health.evaluate_http_first(["backend"], [sick], "backend", http_ok=True)
        assert v.failed and not v.ready
