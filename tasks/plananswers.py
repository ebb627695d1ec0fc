"""What the plan world answers to each command: a command is recognised as its builder makes it
(built here once with marker values, then matched exactly around them), so the world follows the
builders instead of keeping its own copy of their text. See tasks/planworld.py for the world."""
from __future__ import annotations

import dataclasses
import json
import re
import shlex
from dataclasses import dataclass
from typing import Callable

from commands import alembic, docker, files, git, health, lock, prestart, record
from commands import compose as compose_cmd
from commands import versions as versions_cmd
from commands.shell import cd, q
from tasks.planworld import COMPOSE_VERSIONS, NEW_COMMIT, OLD_COMMIT, PlanHost

MARK, NUM, HEX = "PLANMARKA", 987654321, "abcdefabcdef"
URL, STOP_FILE, PATH = "http://planmark.invalid/x", "/tmp/PLANMARKB", "/PLANMARKC"
HOLDER, RECORD_LINE = {"m": MARK}, '{"m": 1}'
MIGRATE_ARGV = alembic.migrate_argv()
MIGRATE_FROM = alembic.migrate_argv([MARK])      # from the revisions the checklist read (shown as read)
MIGRATE_FROM_BASE = alembic.migrate_argv([])     # ... from an empty database
MIGRATE_WHAT = ("revision before (the migration stops unless it is the one the checklist read), upgrade head, "
                "revision after, history: one exec into the backend")
PRE_DIR = "/tmp/tmp.PLANMARKD"                 # the directory of the migration's Python started early
PRESTART_WHAT = ("start the migration's Python in the backend, detached: it imports alembic while the steps before the "
                 "migration run, then waits for its turn (it exits, doing nothing, if told to stop or after 60 s)")
PRESTARTED_WHAT = "its turn: " + MIGRATE_WHAT + " (the same command runs it the ordinary way if that Python is gone)"
TOKEN, JSON_LINE = "<token>", "<json line>"      # how the plan shows the per-run values
REF = "planmark.invalid/planmark:planmark"      # an image reference marker (a valid reference)


@dataclass(frozen=True)
class Answer:
    exited: int = 0
    stdout: str = ""
    stderr: str = ""
    what: str = ""                  # what the command is for, as the plan says it
    changes: bool = False           # changes the host though the flow does not flag it (the lock's beats, release)
    display: str | None = None      # the command with its per-run values as placeholders (token, record line)
    guards: bool = False            # a lock action run before a step, for it (taking the lock, proving it)


class Shape:
    """A builder's output with some arguments left open: the text around them must match exactly."""

    def __init__(self, built: str, *markers: object):
        pattern = re.escape(built)
        for i, m in enumerate(markers):
            # The first place a marker was built into is its argument; any other must hold the same.
            esc = re.escape(str(m))
            at = pattern.index(esc)
            pattern = pattern[:at] + f"(?P<m{i}>.+?)" + pattern[at + len(esc):].replace(esc, f"(?P=m{i})")
        self.rx = re.compile(pattern, re.S)
        self.n = len(markers)

    def match(self, command: str) -> tuple[str, ...] | None:
        """The open arguments (still quoted, in the order of the markers), or None."""
        m = self.rx.fullmatch(command)
        return tuple(m.group(f"m{i}") for i in range(self.n)) if m else None


def words(quoted: str) -> list[str]:
    """The values a builder quoted and joined; one quoted value is undone without shlex (the
    record's JSON lines are long, and shlex reads them a character at a time)."""
    if quoted.startswith("'") and quoted.endswith("'"):
        value = quoted[1:-1].replace("'\"'\"'", "'")
        if q(value) == quoted:
            return [value]
    return shlex.split(quoted)


class Answers:
    """The plan world's answers for one host: ``answer(command)`` or None for an unknown command."""

    def __init__(self, host: PlanHost):
        self.host = host
        st = host.settings
        self.c = compose_cmd.Compose(host.compose_command, st.app_dir, st.compose_file, st.compose_project)
        self.exact = self._exact()
        self.shapes = self._shapes()

    def _exact(self) -> dict[str, Callable[[], Answer]]:
        """Commands the flow builds from the settings alone."""
        h, c, st = self.host, self.c, self.host.settings
        app, ref = st.app_dir, git.remote_ref(st.git_remote, st.git_branch)
        exact = {
            compose_cmd.PROBE_COMPOSE: lambda: Answer(stdout=COMPOSE_VERSIONS[h.compose_command] + "\n",
                                                      what="which Compose the host has (COMPOSE_COMMAND=auto)"),
            git.state(app): lambda: Answer(stdout=h.state(),
                                           what="HEAD, branch and local edits: a dirty tree or another branch is refused"),
            git.head(app): lambda: Answer(stdout=h.state().split("\n", 1)[0] + "\n", what="the commit checked out now"),
            git.fetch(app, st.git_remote, st.git_branch): lambda: Answer(what="fetch the incoming release"),
            git.ahead_behind(app, ref): lambda: Answer(stdout=h.behind(),
                                                       what=f"commits behind and ahead of {ref}: diverged history is refused"),
            git.unchanged(app, ref, compose_cmd.image_naming_files(st.compose_file)): lambda: Answer(
                stdout=NEW_COMMIT + "\n", what="do the compose files differ at the incoming release? No: the pull begins now, during the checklist"),
            git.merge_ff_only(app, ref): lambda: Answer(stdout=h.merge(), what="git pull, fast-forward only"),
            git.log_range(app, OLD_COMMIT, NEW_COMMIT): lambda: Answer(stdout=h.log(OLD_COMMIT, NEW_COMMIT), what="the commits pulled"),
            git.migration_headers(app, ref, st.migrations_path): lambda: Answer(stdout=h.migration_headers(ref),
                                                                                what="the migrations of the incoming release"),
            c.exec(st.backend_service, alembic.CURRENT): lambda: self.alembic_current(st.backend_service in h.containers),
            c.exec(st.backend_service, alembic.REVISION): lambda: self.alembic_current(st.backend_service in h.containers, table=True),
            c.run_rm(st.backend_service, alembic.CURRENT): lambda: self.alembic_current(True),
            c.exec(st.backend_service, MIGRATE_ARGV): lambda: Answer(
                stdout=h.migrate(), what="revision before, upgrade head, revision after, history: one exec into the backend"),
            c.exec(st.backend_service, MIGRATE_FROM_BASE): lambda: Answer(stdout=h.migrate(), what=MIGRATE_WHAT),
            c.run_rm(st.backend_service, MIGRATE_ARGV): lambda: Answer(
                stdout=h.migrate(), what="the same in a new container (`run --rm`): no backend container runs yet"),
            c.exec_sh(st.postgres_service, st.db_ready_command): lambda: Answer(
                stdout="accepting connections\n", what="does postgres accept connections (polled until it does)"),
            c.pull(st.services): lambda: Answer(
                stdout=h.pull(), what="pull the new images first: a missing image stops here, before the database changes"),
            c.ps_ids(): lambda: Answer(stdout=h.ps_ids([]), what="the containers of every service"),
            c.up(): lambda: Answer(stdout=h.up([]), what="recreate what changed"),
            lock.status(st.lock_dir): lambda: Answer(stdout="free\n", what="the deploy lock's state"),
        }
        if h.compose_command == compose_cmd.V1:      # the early pull tries `docker compose` before any probe
            v2 = dataclasses.replace(c, command=compose_cmd.V2)
            exact[v2.pull(st.services)] = lambda: Answer(
                exited=1, stderr="docker: 'compose' is not a docker command.\n",
                what="the pull with `docker compose`, tried before any probe: not on this host (v1), nothing changed")
        if st.env_example:
            exact[git.show_file(app, ref, st.env_example)] = lambda: Answer(
                stdout=h.file(st.env_example) or "", what="the env keys the incoming release documents")
        return exact

    def _shapes(self) -> list[tuple[Shape, Callable[..., Answer]]]:
        """Commands with arguments the flow takes from what it read (service lists, IDs, URLs) or
        makes per run (the lock token, the record line)."""
        h, c, st = self.host, self.c, self.host.settings
        return [
            (Shape(c.ps_ids([MARK]), MARK), lambda g: Answer(stdout=h.ps_ids(words(g)), what=f"the containers of {', '.join(words(g))}")),
            (Shape(docker.project_containers(MARK), MARK), lambda p: Answer(
                stdout=h.project_containers(words(p)[0]), what="the containers of the Compose project, by its labels (no Compose start)")),
            (Shape(docker.project_containers_created_from(MARK), MARK), lambda p: Answer(
                stdout=h.created_from(words(p)[0]),
                what="the containers of the project Compose names by default, and the directory and files each came from "
                     "(kept only if all came from the app's: no Compose start)")),
            (Shape(c.up([MARK]), MARK), lambda g: Answer(stdout=h.up(words(g)), what=f"start {', '.join(words(g))}")),
            (Shape(c.stop([MARK]), MARK), lambda g: Answer(stdout=h.stop(words(g)), what=f"stop {', '.join(words(g))}")),
            (Shape(c.up([MARK], no_deps=True), MARK),
             lambda g: Answer(stdout=h.up(words(g)), what=f"recreate {', '.join(words(g))} alone, on the images now tagged")),
            (Shape(c.logs(MARK, NUM), MARK, NUM),
             lambda svc, n: Answer(stdout=self.logs(words(svc)[0]), what=f"the last {n} log lines of {words(svc)[0]}")),
            (Shape(docker.exec_in(HEX, alembic.CURRENT), HEX), lambda _: self.alembic_current(True)),
            (Shape(docker.exec_in(HEX, alembic.REVISION), HEX), lambda _: self.alembic_current(True, table=True)),
            (Shape(docker.exec_in(HEX, MIGRATE_ARGV), HEX), lambda _: Answer(stdout=h.migrate(), what=MIGRATE_WHAT)),
            (Shape(docker.exec_in(HEX, MIGRATE_FROM_BASE), HEX), lambda _: Answer(stdout=h.migrate(), what=MIGRATE_WHAT)),
            (Shape(docker.exec_in(HEX, MIGRATE_FROM), HEX, MARK), lambda *_: Answer(stdout=h.migrate(), what=MIGRATE_WHAT)),
            (Shape(c.exec(st.backend_service, MIGRATE_FROM), MARK), lambda _: Answer(stdout=h.migrate(), what=MIGRATE_WHAT)),
            (Shape(prestart.start(HEX, NUM), HEX, NUM), lambda *_: Answer(stdout=PRE_DIR + "\n", what=PRESTART_WHAT)),
            *[(Shape(prestart.migrate(PRE_DIR, argv[4:], docker.exec_in(HEX, argv)), PRE_DIR, HEX, *argv[5:]),
               lambda *_: Answer(stdout=prestart.GO + "\n" + h.migrate(), what=PRESTARTED_WHAT))
              for argv in (MIGRATE_ARGV, MIGRATE_FROM_BASE, MIGRATE_FROM)],
            (Shape(prestart.stop(PRE_DIR), PRE_DIR), lambda _: Answer(what="the migration's Python started early: exit, unused")),
            (Shape(docker.exec_in(HEX, ["sh", "-c", st.db_ready_command]), HEX), lambda _: Answer(
                stdout="accepting connections\n", what="does postgres accept connections (polled until it does)")),
            (Shape(docker.inspect_project(MARK), MARK), lambda p: Answer(
                stdout=h.inspect([line.split()[0] for line in h.project_containers(words(p)[0]).splitlines()]),
                what="the containers of the Compose project, listed by its labels and inspected in one command")),
            (Shape(docker.inspect([MARK]), MARK),
             lambda g: Answer(stdout=h.inspect(words(g)), what="state, health and image of those containers")),
            (Shape(docker.tag(HEX, "planmark"), HEX, "planmark"), lambda i, r: self.tag(words(i)[0], words(r)[0])),
            (Shape(health.curl(URL, NUM), URL, NUM), lambda u, _: self.curl(words(u)[0])),
            (Shape(health.probe_loop(URL, STOP_FILE, NUM), URL, STOP_FILE, NUM),
             lambda u, *_: Answer(stdout="".join(f"1767225600.{i} 200\n" for i in range(5)),
                                  what=f"measure the downtime: GET {words(u)[0]} every 0.2 s until stopped (beside the switch)")),
            (Shape(health.probe_stop(STOP_FILE), STOP_FILE), lambda _: Answer(what="stop the downtime probe")),
            (Shape(files.read_file(PATH), PATH), lambda p: self.read_file(words(p)[0])),
            (Shape(files.read_files([PATH]), PATH), lambda g: self.read_files(words(g))),
            (Shape(git.show_files(st.app_dir, git.remote_ref(st.git_remote, st.git_branch), [PATH.lstrip("/")]),
                   PATH.lstrip("/")), lambda g: self.show_files(words(g))),
            (Shape(lock.acquire(st.lock_dir, HOLDER), q(json.dumps(HOLDER, sort_keys=True))), self.acquire),
            (Shape(lock.heartbeat(st.lock_dir, MARK), MARK),
             lambda _: Answer(what="prove the deploy lock is still this run's (touches its heartbeat)", changes=True,
                              display=lock.heartbeat(st.lock_dir, TOKEN), guards=True)),
            (Shape(lock.release(st.lock_dir, MARK), MARK),
             lambda _: Answer(stdout="released\n", what="release the deploy lock (only if it is still this run's)", changes=True,
                              display=lock.release(st.lock_dir, TOKEN))),
            (Shape(record.append(st.releases_file, RECORD_LINE), q(RECORD_LINE)), self.record),
            *self._version_shapes(),
        ]

    def _version_shapes(self) -> list[tuple[Shape, Callable[..., Answer]]]:
        """``fab deploy --version`` (docs/versions.md): the .env's variable, the images that use it,
        the registry check, the write and the write back."""
        h, c, st = self.host, self.c, self.host.settings
        var, app = st.image_tag_variable, st.app_dir
        with_mark = dataclasses.replace(c, env=(var, MARK))
        return [
            (Shape(versions_cmd.read_variable_command(app, var)), lambda: Answer(
                stdout=f"{h.env_tag}\n" if h.env_tag else "", what=f"{var} in the .env now (that line only): the value to go back to")),
            (Shape(with_mark.config_images(), MARK), lambda t: Answer(
                stdout=h.config_images(words(t)[0]), what=f"the images of the compose file with {var}={words(t)[0]}: those that use it")),
            (Shape(docker.pull(REF), REF), lambda r: Answer(
                what=f"is {words(r)[0]} in the registry? pulled through the daemon `up` uses; nothing changed if it is missing")),
            (Shape(versions_cmd.set_variable_command(app, var, MARK), MARK), lambda t: Answer(
                stdout=h.set_env_tag(words(t)[0]),
                what=f"{var}={words(t)[0]} into the .env (a copy, that line replaced, mv): Compose and the operator see it")),
            (Shape(versions_cmd.unset_variable_command(app, var)), lambda: Answer(
                stdout=h.set_env_tag(""), what=f"{var} out of the .env again (it was absent before this run)")),
        ]

    def answer(self, command: str) -> Answer | None:
        known = self.exact.get(command)
        if known:
            return known()
        for shape, respond in self.shapes:
            groups = shape.match(command)
            if groups is not None:
                return respond(*groups)
        if command.endswith(" ; true"):
            return self.image_inspect(command)
        if command.startswith("echo @@logs-"):
            return self.logs_of(command)
        return self.with_tag(command)

    def with_tag(self, command: str) -> Answer | None:
        """A compose command of a --version run before the .env write: ``VAR=TAG`` before it (the
        shell wins over the .env), answered as the same command without."""
        var, prefix = self.host.settings.image_tag_variable, cd(self.host.settings.app_dir, "")
        m = re.fullmatch(rf"({re.escape(prefix)}){re.escape(var)}=(\S+) ({re.escape(self.c.command)} .*)", command, re.S)
        plain = self.answer(m.group(1) + m.group(3)) if m else None
        if plain is None:
            return None
        return dataclasses.replace(plain, what=f"{plain.what} ({var}={words(m.group(2))[0]}: the new tag, the .env unchanged)")

    # -- answers that need more than one line -------------------------------------------------------
    def alembic_current(self, runs: bool, table: bool = False) -> Answer:
        what = ("the database revision now: its alembic_version table through the backend's DATABASE_URL "
                "(`alembic current` if that cannot be read)") if table else "the database revision now"
        if not runs:
            return Answer(1, "", f'service "{self.host.settings.backend_service}" is not running\n', what)
        return Answer(stdout=self.host.current(), stderr="INFO  [alembic.runtime.migration] Context impl PostgresqlImpl.\n",
                      what=what)

    def tag(self, image: str, ref: str) -> Answer:
        return Answer(stdout=self.host.tag(image, ref), what=f"point {ref} at the recorded image {docker.short_image_id(image)}")

    def curl(self, url: str) -> Answer:
        exited, out = self.host.serving()
        return Answer(exited, out, "curl: (7) Failed to connect\n" if exited else "", f"GET {url} on the host")

    def logs(self, service: str) -> str:
        return f"{service}-1  | INFO: started\n{service}-1  | INFO: GET /health 200\n"

    def logs_of(self, command: str) -> Answer | None:
        """``docker logs`` of several containers in one round trip: recognised by rebuilding it."""
        found = re.findall(r"echo (\S+) ([0-9a-f]+); docker logs --tail (\d+) \2 2>&1", command)
        if not found or docker.logs_of([i for _, i, _ in found], int(found[0][2]), found[0][0]) != command:
            return None
        mark, n = found[0][0], found[0][2]
        out = []
        for _, cid, _ in found:
            c = self.host.by_id(cid)
            out.append(f"{mark} {cid}\n" + (self.logs(c.service) if c else ""))
        return Answer(stdout="".join(out), what=f"the last {n} log lines of each deployed service's container (docker logs, no Compose start)",
                      display=command.replace(mark, "@@logs-<run>"))

    def read_file(self, path: str) -> Answer:
        text = self.host.file(path)
        return Answer(files.MISSING if text is None else 0, text or "", what=f"read {path}")

    def read_files(self, paths: list[str]) -> Answer:
        out = []
        for p in paths:
            text = self.host.file(p)
            out.append(f"{files.FILE_MARKER}{p}\n" + (f"{files.MISSING_MARKER}{p}\n" if text is None else text) + "\n")
        return Answer(stdout="".join(out), what="the env files, read once: their secret values are hidden from every output")

    def show_files(self, paths: list[str]) -> Answer:
        out = []
        for p in paths:
            text = self.host.migration_source(p)
            out.append(f"{git.SOURCE_MARKER}{p}\n" + (f"{git.NO_SOURCE_MARKER}{p}\n" if text is None else text) + "\n")
        return Answer(stdout="".join(out), what="the pending revisions' source at the incoming ref: what breaks the code still serving")

    def image_inspect(self, command: str) -> Answer | None:
        found = Shape(docker.image_inspect([HEX]), HEX).match(command)
        if found is None:
            return None
        refs = words(found[0])
        return Answer(stdout=self.host.image_inspect(refs), what="image IDs and digests (what a rollback can go back to)")

    def acquire(self, quoted_holder: str) -> Answer:
        holder = json.loads(words(quoted_holder)[0])
        return Answer(stdout="acquired\n", what="take the deploy lock (atomic mkdir, holder and heartbeat files)",
                      display=lock.acquire(self.host.settings.lock_dir, {**holder, "token": TOKEN}), guards=True)

    def record(self, quoted_line: str) -> Answer:
        event = json.loads(words(quoted_line)[0]).get("event", "?")
        return Answer(what=f"release record: {event}", display=record.append(self.host.settings.releases_file, JSON_LINE))
