"""A scripted Docker host for task tests, built from real captured output.

:class:`Containers` answers ``compose ps -a -q [-- SERVICES]`` and ``docker inspect -- IDS`` from
captured ``docker inspect`` JSON (tests/fixtures/captured/), so a task reads the host through its
real builders and parsers. :func:`run_task` runs an operator task through the real task wrapper
(config, error block, exit code) on a scripted remote.
"""
from __future__ import annotations

import copy
import json
import re
import shlex

from invoke import Exit, MockContext

from tasks import base
from tasks.conftest import Remote, hermetic_config
from tests.conftest import captured

COMPOSE_V2 = (r"compose version --short", "v2 2.26.1\n")
PS_IDS = r"ps -a -q"
DOCKER_PS = r"^docker ps -a --no-trunc --filter "      # a project's containers by Compose's labels
INSPECT = r"^docker inspect -- "
INSPECT_PROJECT = r"^ids=\$\(docker ps --all --quiet --no-trunc --filter label=com\.docker\.compose\.project="   # listed and inspected at once
IMAGE_INSPECT = r"^docker image inspect "
# The deploy lock as a free host answers it (acquire first: its command also holds "rm -rf").
LOCK = [(r"echo acquired", "acquired\n"), (r"then rm -rf", "released\n")]
APPEND = ">> "


ALL_V1 = "docker-inspect-all-v1-healthy.json"
RECORD = "releases-deploy-autorollback-rollback-to.jsonl"


def container(fixture: str, service: str | None = None, *, image: str | None = None, **state) -> dict:
    """A container of a captured ``docker inspect`` (the one of ``service`` in a capture of
    several); ``state`` overrides ``State`` fields (e.g. ``Status="exited"``) and ``image`` the
    image ID, for a state no capture holds."""
    found = [c for c in json.loads(captured(fixture)) if service is None or service_of(c) == service]
    assert len(found) == 1, f"{fixture} has {len(found)} container(s) of service {service}"
    c = copy.deepcopy(found[0])
    c["State"].update(state)
    if image:
        c["Image"] = image
    return c


def all_of(fixture: str = ALL_V1) -> list[dict]:
    return json.loads(captured(fixture))


def record_answer(text: str) -> str:
    """What ``commands.record.read`` prints: the newline count, then the lines."""
    return f"{text.count(chr(10))}\n{text}"


class Images:
    """``docker image inspect --format ... -- REF... 2>/dev/null ; true``: one JSON line per image the
    host has (by ID or by tag), as commands.docker.image_inspect asks; nothing for a missing one."""

    def __init__(self, lines: str = ""):
        self.known = [json.loads(line) for line in lines.splitlines() if line.strip()]

    def add(self, image_id: str, digests=(), tags=()) -> None:
        self.known.append({"id": image_id, "digests": list(digests), "tags": list(tags)})

    def __call__(self, command: str) -> str:
        [refs] = re.findall(r" -- (.+?) 2>/dev/null", command)
        out = []
        for ref in shlex.split(refs):
            out += [json.dumps(i, separators=(",", ":")) for i in self.known if ref == i["id"] or ref in i["tags"]][:1]
        return "".join(line + "\n" for line in out)


def service_of(c: dict) -> str:
    return c["Config"]["Labels"]["com.docker.compose.service"]


class Containers:
    """The containers of the scripted host, by service; tests may replace one (a restart)."""

    def __init__(self, *containers: dict):
        self.by_service = {service_of(c): c for c in containers}

    def ps(self, command: str) -> str:
        wanted = shlex.split(command.split(" -- ", 1)[1]) if " -- " in command else list(self.by_service)
        return "".join(c["Id"] + "\n" for svc, c in self.by_service.items() if svc in wanted)

    def docker_ps(self, command: str) -> str:
        """``ID SERVICE`` of the containers whose project label the command filters on."""
        project = re.search(r"label=com\.docker\.compose\.project=([^' ]+)", command).group(1)
        return "".join(f"{c['Id']} {svc}\n" for svc, c in self.by_service.items()
                       if c["Config"]["Labels"].get("com.docker.compose.project") == project)

    def inspect(self, command: str) -> str:
        ids = shlex.split(command.split(" -- ", 1)[1])
        return json.dumps([c for c in self.by_service.values() if c["Id"] in ids])

    def inspect_project(self, command: str) -> str:
        """``docker inspect`` of the containers whose project label the command lists."""
        project = re.search(r"label=com\.docker\.compose\.project=([^' ]+)", command).group(1)
        return json.dumps([c for c in self.by_service.values() if c["Config"]["Labels"].get("com.docker.compose.project") == project])

    def script(self) -> list:
        return [(PS_IDS, self.ps), (DOCKER_PS, self.docker_ps), (INSPECT, self.inspect), (INSPECT_PROJECT, self.inspect_project)]


def run_task(mocker, capsys, task, script, **options) -> tuple[int, str, str, Remote]:
    """Run ``task`` on stage production through the real wrapper; (exit code, stdout, stderr, remote)."""
    remote = Remote([*script, COMPOSE_V2])      # the script first: a test may answer the probe itself
    cxn = mocker.Mock()
    cxn.run.side_effect = remote
    mocker.patch.object(base, "connect", return_value=cxn)
    code = 0
    try:
        task(MockContext(config=hermetic_config()), stage="production", **options)
    except Exit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err, remote


def records(remote: Remote) -> list[dict]:
    """The release-record lines a run appended on the host, in order."""
    out = []
    for c in remote.commands:
        if "releases.jsonl" in c and APPEND in c:
            words = shlex.shlex(c, posix=True, punctuation_chars=True)
            out.extend(json.loads(w) for w in words if w.startswith('{"'))     # several lines per append
    return out


def flat(text: str) -> str:
    """The error block's wrapped lines joined, to search a sentence that may span two lines."""
    return re.sub(r"\s+", " ", text)
