"""Issue 10, fleets, on three real hosts: `sandbox/ctl up --hosts 3` (host 1 = 127.0.0.1, hosts 2
and 3 in their own network namespaces at 127.0.0.2 and 127.0.0.3, each with its own dockerd, sshd,
app dir and proxy, sharing the registry, the origin and host 1's PostgreSQL), deployed by `fab`
with the staging stage as that fleet (sandbox/fleet/staging.env).

The module brings the extra hosts up once and stops them at its end (`sandbox/ctl up` = one
host), so the single-host tests before and after it see the sandbox they expect. Each test starts
from `sandbox/ctl reset` (every running host back to v1)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess

import pytest

from tests.integration.conftest import FAB, ROOT, SANDBOX_ROOT, flat

FLEET_CONFIG = ROOT / "sandbox" / "fleet"
HOSTS = ("ai-doc-qa-fleet-1", "ai-doc-qa-fleet-2", "ai-doc-qa-fleet-3")
STAGE = ["--stage", "staging"]


def app_dir(n: int):
    """Host n's app dir as this machine sees it (each host sees its own at the stage's APP_DIR)."""
    return SANDBOX_ROOT / "app" / "ai-doc-qa" if n == 1 else SANDBOX_ROOT / "hosts" / str(n) / "app" / "ai-doc-qa"


class Fleet:
    def __init__(self, sandbox):
        self.sandbox = sandbox
        self.env = {"DEPLOY_LOCAL_CONFIG": str(FLEET_CONFIG)}

    def reset(self) -> None:
        self.sandbox.reset()        # `ctl reset` resets every running host

    def deploy(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return self.sandbox.fab("deploy", *STAGE, *args, env={**self.env, **(env or {})}, timeout=600)

    def start_deploy(self, *args: str) -> subprocess.Popen:
        """In the background, SIGINT and SIGTERM at their defaults (pytest may run under nohup)."""
        def dispositions():
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOY_")}
        env.update({"PYTHONFAULTHANDLER": "1", **self.env})
        return subprocess.Popen([FAB, "deploy", *STAGE, *args], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env, preexec_fn=dispositions)

    def versions(self) -> list[str | None]:
        """What each host's proxy reports (127.0.0.n:8080, the forwarder into host n)."""
        return [self.sandbox.version(f"http://127.0.0.{n}:8080") for n in (1, 2, 3)]

    def records(self, n: int) -> list[dict]:
        p = app_dir(n) / ".deploy" / "releases.jsonl"
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.exists() else []

    def release(self, n: int, rid: str) -> list[dict]:
        return [r for r in self.records(n) if r["release"] == rid]

    def lock_held(self, n: int) -> bool:
        return (app_dir(n) / ".deploy" / "lock").exists()


@pytest.fixture(scope="module")
def fleet(sandbox):
    sandbox.ctl("up", "--hosts", "3", timeout=900)
    try:
        yield Fleet(sandbox)
    finally:
        sandbox.ctl("up", timeout=600)      # back to one host: hosts 2 and 3 stopped, namespaces gone


def fleet_rid(out: str) -> str:
    m = re.search(r"Fleet: release (\S+):", out)
    assert m, out
    return m.group(1)


def table_row(out: str, host: str, outcome: str, version: str) -> bool:
    return re.search(rf"^{host}\s+{outcome}\s+{version}\s", out, re.M) is not None


def migration_steps(fleet: Fleet, n: int, rid: str) -> list[dict]:
    return [r for r in fleet.release(n, rid) if r["event"] == "step" and r["step"] == "migrate" and r["sub"] is None]


def assert_every_host_on_v2_migrated_once(fleet: Fleet, out: str) -> None:
    assert fleet.versions() == ["v2", "v2", "v2"], out
    rid = fleet_rid(out)
    assert "every host succeeded; the fleet serves one version: v2" in out
    # one release id on every host; the migration ran on host 1 only, the others waited for it
    assert [len(migration_steps(fleet, n, rid)) for n in (1, 2, 3)] == [1, 0, 0]
    for n in (2, 3):
        steps = {r["step"] for r in fleet.release(n, rid) if r["event"] == "step"}
        assert "await migration" in steps and "services" in steps, steps
    assert fleet.sandbox.alembic_current() == "0002"
    # hosts 2 and 3 serve v2's summaries from the one database host 1 migrated
    docs = fleet.sandbox.get("http://127.0.0.3:8080/api/v1/documents").json()
    assert len(docs) == 3 and all("summary" in d for d in docs), docs
    assert not any(fleet.lock_held(n) for n in (1, 2, 3))


def test_fleet_of_three_in_parallel_v1_to_v2_every_host_serves_v2_and_the_database_migrated_once(fleet):
    fleet.reset()
    assert fleet.versions() == ["v1", "v1", "v1"]
    fleet.sandbox.ctl("version", "v2")
    r = fleet.deploy("--parallel", "3")
    out = flat(r)
    assert r.returncode == 0, out
    assert "3 hosts, 1 batch(es) of up to 3; migrations on ai-doc-qa-fleet-1" in out
    assert_every_host_on_v2_migrated_once(fleet, r.stdout + r.stderr)


def test_fleet_of_three_rolling_v1_to_v2_every_host_serves_v2_and_the_database_migrated_once(fleet):
    fleet.reset()
    fleet.sandbox.ctl("version", "v2")
    r = fleet.deploy()                      # BATCH_SIZE=1 (the default): one host after another
    out = flat(r)
    assert r.returncode == 0, out
    assert "3 hosts, 3 batch(es) of up to 1; migrations on ai-doc-qa-fleet-1" in out
    assert "fleet: batch 3/3: ai-doc-qa-fleet-3" in out
    assert_every_host_on_v2_migrated_once(fleet, r.stdout + r.stderr)


# Rolling (BATCH_SIZE=1), host 2 broken: host 1 has switched to v2 when host 2 fails (its own
# auto-rollback puts v1 back); host 3 is next. The end state under each policy is docs/fleets.md's
# table. Run one after another on the same hosts (one reset): each run starts with host 2 on v1.
POLICIES = [
    # policy, expected (outcome, version) per host, what the fleet line says
    ("revert", [("reverted", "v1"), ("rolled_back", "v1"), ("not started", "v1")], "the fleet serves one version: v1"),
    ("stop", [("success", "v2"), ("rolled_back", "v1"), ("not started", "v1")], "does NOT serve one known version"),
    ("continue", [("success", "v2"), ("rolled_back", "v1"), ("success", "v2")], "does NOT serve one known version"),
]


def test_one_broken_host_under_each_failure_policy_ends_as_the_docs_say(fleet):
    fleet.reset()
    fleet.sandbox.ctl("break", "--host", "2", "backend-health")
    fleet.sandbox.ctl("version", "v2")
    for policy, expected, line in POLICIES:
        r = fleet.deploy(env={"DEPLOY_FAILURE_POLICY": policy})
        out = r.stdout + r.stderr
        assert r.returncode == 7, f"{policy}: {out}"       # host 2's own code: rolled back
        assert f"FAILURE_POLICY={policy}" in out and "FAILED" in out and "ai-doc-qa-fleet-2" in out
        for host, (outcome, version) in zip(HOSTS, expected):
            assert table_row(out, host, outcome, version), f"{policy}: {host} should be {outcome} on {version}:\n{out}"
        assert fleet.versions() == [v for _, v in expected], f"{policy}: {out}"
        assert line in out, f"{policy}: {out}"
        assert not any(fleet.lock_held(n) for n in (1, 2, 3)), policy
        rid = fleet_rid(out)
        ends = [[e for e in fleet.release(n, rid) if e["event"] == "end"] for n in (1, 2, 3)]
        assert ends[1] and ends[1][-1]["outcome"] == "rolled_back", ends[1]
        assert bool(ends[2]) == (policy == "continue"), f"{policy}: host 3 ran only under continue"


def after_migration_on_host_1(fleet: Fleet, proc: subprocess.Popen) -> bool:
    assert proc.poll() is None, f"fab ended early ({proc.returncode}):\n{proc.stdout.read()}"
    starts = [r for r in fleet.records(1) if r["event"] == "start"]
    return bool(starts) and any(r["event"] == "step" and r["step"] == "migrate" and r["sub"] is None
                                for r in fleet.release(1, starts[-1]["release"]))


@pytest.mark.parametrize("signum, code, name", [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")],
                         ids=["sigint", "sigterm"])
def test_signal_mid_fleet_releases_every_lock_and_every_host_serves_the_version_its_record_says(fleet, signum, code, name):
    fleet.reset()
    fleet.sandbox.ctl("version", "v2")
    proc = fleet.start_deploy("--parallel", "3")
    fleet.sandbox.wait_for(lambda: after_migration_on_host_1(fleet, proc), 120, "host 1 migrated", interval=0.1)
    proc.send_signal(signum)
    out = fleet.sandbox.finish(proc, 180)
    assert proc.returncode == code, out
    assert "Traceback" not in out and f"{name}: every host's flow stops at its next step and cleans up" in out
    assert not any(fleet.lock_held(n) for n in (1, 2, 3)), out
    rid = fleet_rid(out)
    for n, version in zip((1, 2, 3), fleet.versions()):
        assert version in ("v1", "v2"), f"host {n} serves {version}:\n{out}"
        end = [e for e in fleet.release(n, rid) if e["event"] == "end"]
        assert end, f"host {n} has no end record for {rid}"
        assert end[-1]["outcome"] in ("aborted", "success"), end[-1]
        assert re.search(rf"\b{version}\b", end[-1]["serving"]), (n, version, end[-1]["serving"])
        assert table_row(out, HOSTS[n - 1], r"\S+", version), out


REPO = "127.0.0.1:5000/ai-doc-qa/backend"


def host_docker(fleet: Fleet, n: int, *args: str) -> str:
    """docker against host n's own daemon (each host has its own images and tags)."""
    sock = SANDBOX_ROOT / ("run" if n == 1 else f"hosts/{n}/run") / "docker.sock"
    r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "DOCKER_HOST": f"unix://{sock}"})
    assert r.returncode == 0, f"host {n}: docker {' '.join(args)}: {r.stderr}"
    return r.stdout


def env_tag(n: int) -> str:
    env = app_dir(n) / ".env"
    lines = env.read_text().splitlines() if env.exists() else []
    return next((x.split("=", 1)[1] for x in lines if x.startswith("IMAGE_TAG=")), "")


def host_truth(fleet: Fleet, n: int) -> dict:
    """What host n runs and what its .env, `compose config` and local tags say."""
    r = fleet.sandbox.ctl("compose-exec", "--host", str(n), "config", check=False)
    assert r.returncode == 0, r.stderr
    configured = {x for x in re.findall(r"^\s+image: (\S+)$", r.stdout, re.M) if x.startswith(REPO + ":")}
    ids = host_docker(fleet, n, "ps", "-q", "--filter", "label=com.docker.compose.service=backend").split()
    assert len(ids) == 1, f"host {n}: backend containers {ids}"
    running = host_docker(fleet, n, "inspect", "--format", "{{.Image}}", ids[0]).strip()
    tags = {}
    for line in host_docker(fleet, n, "images", "--no-trunc", "--format", "{{.Tag}} {{.ID}}", REPO).splitlines():
        tag, image = line.split()
        tags[tag] = image
    return {"env": env_tag(n), "configured": configured, "running": running, "tags": tags}


def test_fleet_version_then_rollback_the_tags_and_the_variable_tell_the_truth_on_every_host(fleet):
    """Issue 10: `fab deploy --version v2` on the three hosts, then `fab rollback`: on every host
    the .env's IMAGE_TAG, `docker compose config` and the image the backend runs agree, and v2's
    image keeps its tag (not re-pointed at v1, not dangling)."""
    fleet.reset()
    fleet.sandbox.ctl("version", "v2")
    r = fleet.deploy("--version", "v2", "--parallel", "3")
    assert r.returncode == 0, flat(r)
    assert fleet.versions() == ["v2", "v2", "v2"]
    rid = fleet_rid(r.stdout + r.stderr)
    v2 = {}
    for n in (1, 2, 3):
        t = host_truth(fleet, n)
        assert t["env"] == "v2" and t["configured"] == {f"{REPO}:v2"} and t["running"] == t["tags"]["v2"], (n, t)
        assert [e["tag"] for e in fleet.release(n, rid) if e["event"] == "version"] == ["v2"], n
        v2[n] = t["tags"]["v2"]
    r = fleet.sandbox.fab("rollback", *STAGE, env=fleet.env, timeout=600)
    assert r.returncode == 0, flat(r)
    assert fleet.versions() == ["v1", "v1", "v1"], flat(r)
    for n in (1, 2, 3):
        t = host_truth(fleet, n)
        # the release before the first --version ran on backend:latest: the variable names it again
        assert t["env"] == "latest" and t["configured"] == {f"{REPO}:latest"}, (n, t)
        assert t["running"] == t["tags"]["latest"] != v2[n], (n, t)
        assert t["tags"]["v2"] == v2[n], (n, t)          # v2 still tagged, on its own image
        assert not fleet.lock_held(n)
