"""The real staging host (sandbox/): every test here deploys, breaks and rolls back the sample app
through the `fab` command line, over SSH with strict host key checking.

When the sandbox is not running these tests skip; with REQUIRE_STAGING=1 (CI) a skip is a failure.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
SANDBOX_ROOT = Path(os.environ.get("SANDBOX_ROOT", "/var/lib/ai-doc-qa-sandbox"))
APP_DIR = SANDBOX_ROOT / "app" / "ai-doc-qa"
CTL = ROOT / "sandbox" / "ctl"
FAB = str(Path(sys.executable).parent / "fab")
DOCKER_HOST = f"unix://{SANDBOX_ROOT}/run/docker.sock"
PROXY = "http://127.0.0.1:8080"
BACKEND = "http://127.0.0.1:8000"
ALL_OUTPUT: list[str] = []      # every fab output of the session, for the sentinel-secret test


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def sandbox_running() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "the staging sandbox needs root (sshd, dockerd)"
    if not (SANDBOX_ROOT / "client" / "ssh_config").exists():
        return False, f"no sandbox at {SANDBOX_ROOT}: run `make sandbox-up`"
    for port, what in ((2222, "sshd"), (5000, "registry")):
        if not _port_open(port):
            return False, f"sandbox {what} is not listening on 127.0.0.1:{port}: run `make sandbox-up`"
    if not Path(f"{SANDBOX_ROOT}/run/docker.sock").exists():
        return False, "sandbox dockerd is not running: run `make sandbox-up`"
    return True, ""


def flat(r: subprocess.CompletedProcess) -> str:
    """stdout + stderr with all whitespace runs collapsed (error blocks wrap long lines)."""
    return " ".join((r.stdout + "\n" + r.stderr).split())


class Sandbox:
    def ctl(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        r = subprocess.run([str(CTL), *args], capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"sandbox/ctl {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def fab(self, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOY_")}
        full_env.update(env or {})
        r = subprocess.run([FAB, *args], cwd=ROOT, capture_output=True, text=True, env=full_env, timeout=timeout)
        ALL_OUTPUT.append(r.stdout + r.stderr)
        return r

    def fab_background(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOY_")}
        # SIGABRT then dumps every thread's stack: communicate() below says where a hang was.
        full_env.update({"PYTHONFAULTHANDLER": "1", **(env or {})})
        return subprocess.Popen([FAB, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=full_env)

    @staticmethod
    def finish(proc: subprocess.Popen, timeout: float) -> str:
        """Output of a background fab; on a hang, its thread stacks (faulthandler) in the failure."""
        try:
            out = proc.communicate(timeout=timeout)[0]
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            out = proc.communicate()[0]
            raise AssertionError(f"fab did not exit within {timeout} s; its stacks:\n{out[-8000:]}")
        ALL_OUTPUT.append(out)
        return out

    def docker(self, *args: str, check: bool = True) -> str:
        r = subprocess.run(["docker", *args], capture_output=True, text=True, env={**os.environ, "DOCKER_HOST": DOCKER_HOST},
                           timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {r.stderr}")
        return r.stdout

    def container(self, service: str) -> dict:
        ids = self.docker("ps", "-aq", "--filter", f"label=com.docker.compose.service={service}").split()
        assert ids, f"no container for {service}"
        return json.loads(self.docker("inspect", ids[0]))[0]

    def image_id(self, service: str) -> str:
        return self.container(service)["Image"]

    def registry_image_id(self, tag: str, repo: str = "ai-doc-qa/backend") -> str:
        return json.loads(self.docker("image", "inspect", f"127.0.0.1:5000/{repo}:{tag}"))[0]["Id"]

    def compose(self, *args: str) -> subprocess.CompletedProcess:
        return self.ctl("compose-exec", *args, check=False)

    def alembic_current(self) -> str:
        r = self.compose("exec", "-T", "backend", "alembic", "current")
        return r.stdout.strip().splitlines()[-1].split()[0] if r.stdout.strip() else ""

    def get(self, url: str, timeout: float = 5) -> requests.Response | None:
        try:
            return requests.get(url, timeout=timeout)
        except requests.RequestException:
            return None

    def version(self, base: str = PROXY) -> str | None:
        r = self.get(f"{base}/health")
        return r.json().get("version") if r is not None and r.ok else None

    def documents(self) -> list[dict]:
        r = self.get(f"{PROXY}/api/v1/documents")
        assert r is not None and r.ok, r.text if r is not None else "no answer"
        data = r.json()
        return data["documents"] if isinstance(data, dict) else data

    def records(self) -> list[dict]:
        p = APP_DIR / ".deploy" / "releases.jsonl"
        if not p.exists():
            return []
        return [json.loads(l) for l in p.read_text().splitlines() if l.strip()]

    def last_release(self, kind: str | None = None) -> list[dict]:
        recs = self.records()
        starts = [r for r in recs if r["event"] == "start" and (kind is None or r["kind"] == kind)]
        assert starts, "no release recorded"
        rid = starts[-1]["release"]
        return [r for r in recs if r["release"] == rid]

    def head(self) -> str:
        return subprocess.run(["git", "-C", str(APP_DIR), "rev-parse", "HEAD"], capture_output=True, text=True,
                              env={**os.environ, "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "safe.directory",
                                   "GIT_CONFIG_VALUE_0": "*"}).stdout.strip()

    def lock_held(self) -> bool:
        return (APP_DIR / ".deploy" / "lock").exists()

    def wait_for(self, predicate, timeout: float, what: str, interval: float = 0.3):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def reset(self, compose: str = "v2") -> None:
        current = (SANDBOX_ROOT / "compose-generation")
        if not current.exists() or current.read_text().strip() != compose:
            self.ctl("compose", compose)
        self.ctl("reset")

    def sentinels(self) -> list[str]:
        """The fake secret values of .env.production (the things that must never be printed)."""
        values = []
        for line in (APP_DIR / ".env.production").read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                value = value.strip().strip('"').strip("'")
                if value.startswith("sentinel-") or "sentinel-" in value:
                    values.append(value)
        return values


@pytest.fixture(scope="session")
def sandbox() -> Sandbox:
    ok, why = sandbox_running()
    if not ok:
        if os.environ.get("REQUIRE_STAGING") == "1":
            pytest.fail(f"REQUIRE_STAGING=1 but the staging host is not usable: {why}")
        pytest.skip(why)
    return Sandbox()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.staging)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI (REQUIRE_STAGING=1) a staging test that skips for any reason is reported as failed."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("REQUIRE_STAGING") == "1" and report.skipped and item.get_closest_marker("staging"):
        report.outcome = "failed"
        report.longrepr = f"REQUIRE_STAGING=1: staging test skipped ({report.longrepr})"
