"""A scripted staging-like host for running the real ``fab deploy`` without SSH: it answers each
command the way the sandbox host did (outputs captured there, tests/fixtures/captured) and
changes as a host would (a pull brings the new backend image, ``up`` recreates containers, ...).

It is written independently of the plan world (tasks/planworld.py): the test that compares a
scripted deploy with ``fab plan`` would prove nothing if both answered from the same code."""
from __future__ import annotations

import copy
import hashlib
import json
import re
import shlex

from invoke import Result

from tests.conftest import captured

INSPECT = json.loads(captured("docker-inspect-backend-healthy.json"))[0]
OLD, NEW = "7ef2620" + "1" * 33, "07069d5" + "2" * 33          # git log --oneline of the sandbox origin
ENV = "DATABASE_URL=postgresql://app:sentinel-db-password@postgres/app\nSECRET_KEY=sentinel-secret-key-value\nLOG_LEVEL=info\nSUMMARY_MAX_CHARS=500\n"
EXAMPLE = "DATABASE_URL=\nSECRET_KEY=\nLOG_LEVEL=\nSUMMARY_MAX_CHARS=\n"
HEADERS = ("origin/main:migrations/versions/0001_create_documents.py:revision = '0001'\n"
           "origin/main:migrations/versions/0001_create_documents.py:down_revision = None\n"
           "origin/main:migrations/versions/0002_add_summary.py:revision = '0002'\n"
           "origin/main:migrations/versions/0002_add_summary.py:down_revision = '0001'\n")


def hexid(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class ScriptedHost:
    """One host: ``script()`` is the (regex, answer) list for tests/tasks/conftest.Remote."""

    def __init__(self, services, deps, *, running=True, healthy_after_up=True, database="0001", starting_after_up=False,
                 app_dir="/app/ai-doc-qa"):
        self.app_dir = app_dir
        self.services, self.deps = list(services), list(deps)
        self.healthy_after_up, self.database, self.head = healthy_after_up, database, OLD
        self.starting_after_up = starting_after_up      # Docker says `starting` while the new backend answers
        self.ref = {svc: f"127.0.0.1:5000/ai-doc-qa/{svc}:latest" for svc in self.deps + self.services}
        self.tags = {ref: ("sha256:" + hexid(f"{svc} v1")) for svc, ref in self.ref.items()}
        self.tags[self.ref["backend"]] = INSPECT["Image"]               # the captured backend v1 image
        self.v2 = "sha256:" + hexid("backend v2")
        self.containers: dict[str, dict] = {}
        self.n = 0
        for svc in (self.deps + self.services if running else []):
            self.start(svc)

    def start(self, svc: str) -> None:
        self.n += 1
        image = self.tags[self.ref[svc]]
        self.containers[svc] = {"id": hexid(f"c{self.n}"), "image": image,
                                "healthy": self.healthy_after_up or image != self.v2,
                                "starting": self.starting_after_up and image == self.v2}

    def script(self):
        ok = lambda out="": (lambda c: Result(stdout=out, exited=0))       # noqa: E731
        return [
            (r"^for f in ", self.env_files),
            (r"^if v=\$\(docker compose version", ok("v2 2.26.1\n")),
            (r"echo acquired", ok("acquired\n")),
            (r"touch -- \S+/lock/heartbeat \)$", ok()),
            (r"echo released", ok("released\n")),
            (r">> \S+releases\.jsonl$", ok()),
            (r" ps -a -q", self.ps),
            (r"^docker ps -a --no-trunc --filter label=com\.docker\.compose\.project=ai-doc-qa .*working_dir", self.created_from),
            (r"^docker ps -a --no-trunc --filter label=com\.docker\.compose\.project=ai-doc-qa ", self.docker_ps),
            (r"^docker inspect -- ", self.inspect),
            (r"^ids=\$\(docker ps --all --quiet --no-trunc --filter label=com\.docker\.compose\.project=ai-doc-qa ", self.inspect_project),
            (r"^docker image inspect ", self.image_inspect),
            (r"^rm -f /tmp/\S+-probe; end=", ok("".join(f"1795816543.{i} 200\n" for i in range(5)))),
            (r"^touch /tmp/\S+-probe$", ok()),
            (r"^out=\$\(curl ", self.curl),
            (r"rev-parse HEAD", lambda c: Result(stdout=f"{self.head}\nmain\n", exited=0)),
            (r" fetch --quiet ", ok()),
            (r" rev-list --left-right --count ", lambda c: Result(stdout="0\t0\n" if self.head == NEW else "1\t0\n", exited=0)),
            (r" merge --ff-only ", self.merge),
            (r' diff --quiet HEAD "\$c" -- ', ok(NEW + "\n")),      # origin/main's commit; no compose file differs
            (r" log --oneline ", ok(captured("git-log-oneline-origin-v2.txt").splitlines()[0] + "\n")),
            (r" grep -E ", ok(HEADERS)),
            (r" show origin/main:\.env\.example", ok(EXAMPLE)),
            (r"^if \[ -f \S+/\.env\.example \]", ok(EXAMPLE)),
            (r"( (exec|run --rm) -T backend|^docker exec [0-9a-f]{64}) alembic current$", self.current),
            (r"( exec -T backend|^docker exec [0-9a-f]{64}) sh -c .*alembic_version.* \|\| alembic current'$", self.table),
            (r"( (exec|run --rm) -T backend|^docker exec [0-9a-f]{64}) sh -c 'py=\$\(command -v python3", self.migrate),
            (r"^command -v setsid >/dev/null \|\| exit 96; d=\$\(mktemp -d\) ", ok("/tmp/tmp.q1W2e3R4t5\n")),   # as mktemp named it
            (r"^d=/tmp/tmp\.q1W2e3R4t5; if \[ -d .* printf '%s\\n' 'go \[", lambda c: self.migrate(c, prestarted=True)),
            (r"^d=/tmp/tmp\.q1W2e3R4t5; if \[ -d .*; else printf 'stop", ok()),
            (r"( exec -T postgres|^docker exec [0-9a-f]{64}) sh -c 'pg_isready", ok("/var/run/postgresql:5432 - accepting connections\n")),
            (r" pull --quiet ", self.pull),
            (r" up -d", self.up),
            (r"^docker tag ", self.tag),
            (r" logs --no-color ", ok("backend-1  | INFO:     Application startup complete.\n")),
            (r"^echo @@logs-\S+ [0-9a-f]+; docker logs ", self.docker_logs),
        ]

    # -- answers --------------------------------------------------------------------------------------
    def env_files(self, command):
        paths = shlex.split(command.split(" do ")[0][len("for f in "):].removesuffix(";"))
        return Result(stdout="".join(f"@@ai-doc-qa-file@@{p}\n{ENV}\n" for p in paths), exited=0)

    def ps(self, command):
        wanted = shlex.split(command.split(" -- ", 1)[1]) if " -- " in command else []
        return Result(stdout="".join(c["id"] + "\n" for s, c in self.containers.items() if not wanted or s in wanted), exited=0)

    def docker_logs(self, command):
        """One ``docker logs`` per container ID named in the command, after its separator line."""
        mark = command.split()[1]
        return Result(stdout="".join(f"{mark} {c['id']}\nINFO:     Application startup complete.\n"
                                     for c in self.containers.values() if c["id"] in command), exited=0)

    def created_from(self, command):
        """As the sandbox answers: every container created from the app dir and its compose file."""
        where = f'"{self.app_dir}" "{self.app_dir}/docker-compose.production.yml"'
        return Result(stdout="".join(f'{c["id"]} "{s}" {where}\n' for s, c in self.containers.items()), exited=0)

    def docker_ps(self, command):
        return Result(stdout="".join(f"{c['id']} {s}\n" for s, c in self.containers.items()), exited=0)

    def inspect(self, command):
        out = []
        for cid in shlex.split(command)[3:]:
            svc, c = next((s, c) for s, c in self.containers.items() if c["id"] == cid)
            d = copy.deepcopy(INSPECT)
            d.update(Id=cid, Name=f"/ai-doc-qa-{svc}-1", Image=c["image"])
            d["Config"].update(Image=self.ref[svc], Labels={**d["Config"]["Labels"], "com.docker.compose.service": svc})
            d["State"]["Health"]["Status"] = "starting" if c.get("starting") else "healthy" if c["healthy"] else "unhealthy"
            out.append(d)
        return Result(stdout=json.dumps(out, indent=4), exited=0)

    def inspect_project(self, command):
        """The project's containers listed and inspected in one command (containerids.list_and_inspect)."""
        return self.inspect("docker inspect -- " + " ".join(c["id"] for c in self.containers.values()))

    def image_inspect(self, command):
        [refs] = re.findall(r" -- (.+?) 2>/dev/null", command)
        ids = shlex.split(refs)
        lines = [json.dumps({"id": i, "digests": [f"127.0.0.1:5000/ai-doc-qa/x@sha256:{hexid(i)}"],
                             "tags": [r for r, t in self.tags.items() if t == i]}) for i in ids]
        return Result(stdout="\n".join(lines) + "\n", exited=0)

    def curl(self, command):
        backend = self.containers.get("backend")
        if backend is None:
            return Result(stdout="\n@@status 000 0.001", stderr="curl: (7) Failed to connect to localhost port 8000\n", exited=7)
        if not backend["healthy"]:
            return Result(stdout='{"detail": "summary column missing"}\n@@status 500 0.010', exited=0)
        version = "v2" if backend["image"] == self.v2 else "v1"
        return Result(stdout=json.dumps({"status": "ok", "version": version}) + "\n@@status 200 0.004", exited=0)

    def merge(self, command):
        self.head = NEW
        return Result(stdout="", exited=0)

    def current(self, command):
        if " exec -T backend " in command and "backend" not in self.containers:     # as Compose says it
            return Result(stdout="", stderr='service "backend" is not running\n', exited=1)
        return Result(stdout=f"{self.database} (head)\n" if self.database else "",
                      stderr=captured("alembic-current-v1.txt.stderr"), exited=0)

    def table(self, command):
        """The checklist's read of the revision: the alembic_version table, as the sandbox answers it."""
        if " exec -T backend " in command and "backend" not in self.containers:
            return Result(stdout="", stderr='service "backend" is not running\n', exited=1)
        return Result(stdout="@@alembic_version\n" + (f"{self.database}\n" if self.database else ""), exited=0)

    def migrate(self, command, prestarted=False):
        before, self.database = self.database, "0002"
        upgrade = captured("alembic-upgrade-head-v2.txt.stderr").split("\n", 1)[1]
        out = ("@@go\n" if prestarted else "") + (f"@@before\n{before + ' (head)' if before else ''}\n@@upgrade\n{upgrade}@@after\n"
               f"{captured('alembic-current-v2.txt')}@@history\n{captured('alembic-history-v2.txt')}")
        return Result(stdout=out, exited=0)

    def pull(self, command):
        self.tags[self.ref["backend"]] = self.v2
        return Result(stdout="", exited=0)

    def up(self, command):
        wanted = shlex.split(command.split(" -- ", 1)[1]) if " -- " in command else self.deps + self.services
        for svc in wanted:
            c = self.containers.get(svc)
            if c is None or c["image"] != self.tags[self.ref[svc]]:
                self.start(svc)
        return Result(stdout="", exited=0)

    def tag(self, command):
        _, _, image, ref = shlex.split(command)
        self.tags[ref] = image
        return Result(stdout="", exited=0)
