"""``fab plan``: the offline preview of a deploy. It never connects.

The plan is not a list kept beside the flow: it is the real deploy task (tasks/deploy.py, with the
secrets learned first as every task does) run against the plan world (tasks/planworld.py) through
a :class:`PlanExecutor`, which records every command with the step it belongs to and answers it
as that host would. The paths a deploy can take (a first deploy, an auto-rollback) are the same
run in a world with other answers, shown as their differences.
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import time
from dataclasses import dataclass

from commands import compose as compose_cmd
from commands import plan as plan_cmd
from commands.secrets import Redactor
from commands.shell import q
from config import Settings
from tasks import ui, web
from tasks.base import Offline, begin, operator_task
from tasks.deploy import check_options, deploy
from tasks.errors import SETUP, DeployError, ExitCode
from tasks.executor import Result
from tasks.plananswers import Answer, Answers
from tasks.planworld import PlanHost, PlanWorld
from tasks.session import Session

PLAN_RUN_TAG = "ai-doc-qa-xxxxxxxx"     # the run's tag (in the downtime probe's file): a real run has 8 hex digits there
DEPLOY = inspect.unwrap(deploy.body)    # the deploy task's own body, with its default options
PATHS = (
    ("nothing runs yet (a first deploy: migrations run in a new container, `compose run --rm`)",
     PlanWorld(running=False, database="")),
    ("the new version fails its health check after `up` (auto-rollback when AUTO_ROLLBACK=true)",
     PlanWorld(healthy_after_up=False)),
)
UNKNOWN = "not known to the plan world: answered as if it succeeded with no output"


@dataclass(frozen=True)
class Call:
    """One command the flow issued, as the plan executor saw it."""
    where: plan_cmd.Where        # the session's timed blocks open then
    command: str                 # exactly as the flow built it
    mutating: bool               # flagged as changing the host (what `fab --dry` prints instead of running)
    host: str
    answer: Answer | None        # None: the plan world did not know the command
    local: bool = False          # an HTTP request from the operator's machine (command: "METHOD URL")


class PlanExecutor:
    """Runs nothing: records each command and answers it from the plan world. Background work
    (the lock's heartbeat thread, the downtime probe) does not run beside the flow: the probe
    runs once, in order, and the lock is proven at each step boundary as in every run."""

    background = False

    def __init__(self, answers: Answers, calls: list[Call], main: Session | None = None):
        self.answers, self.calls, self.main = answers, calls, main

    def _where(self, s: Session) -> plan_cmd.Where:
        return tuple((self.main or s).where)

    def run(self, s: Session, command: str, *, timeout: float, mutating: bool, interruptible: bool,
            keep_output: bool = False) -> Result:
        a = self.answers.answer(command)
        self.calls.append(Call(self._where(s), command, mutating, s.host, a))
        a = a or Answer()
        return Result(command, a.exited, a.stdout, a.stderr, 0.0)

    def request(self, s: Session, method: str, url: str, **kw) -> web.HttpAnswer:
        st = s.settings
        what = ("notify the webhook (WEBHOOK_URL)" if url == st.webhook_url else
                "is the monitoring dashboard up (MONITORING_URL)" if url == st.monitoring_url else
                "smoke test from here (SMOKE_FROM_OPERATOR)")
        self.calls.append(Call(self._where(s), f"{method} {url}", False, s.host, Answer(what=what), local=True))
        return web.HttpAnswer(url, 200, 0.0, '{"status": "ok"}')

    def open_session(self, s: Session, settings: Settings, host: str) -> Session:
        answers = Answers(self.answers.host.tested_stage(settings))
        return Session(settings, host, None, executor=PlanExecutor(answers, self.calls, self.main or s),
                       redactor=Redactor(settings.secret_key_pattern), run_tag=s.run_tag)


@dataclass(frozen=True)
class Preview:
    calls: list[Call]
    connect: int                 # how many calls came before the deploy's flow (learning the secrets)
    outcome: str                 # the release record's outcome ("" if the flow recorded no end)
    stopped: DeployError | None  # how the run ended, if not in success


def preview(st: Settings, world: PlanWorld, compose: str, version: str | None = None) -> Preview:
    """Run ``fab deploy`` (its body, after what every task does first) in the plan world;
    ``version``: ``fab deploy --version``."""
    t0 = time.monotonic()           # as a deploy times its connect (and then records a "connect" step)
    calls: list[Call] = []
    s = Session(st, st.hosts[0], None, executor=PlanExecutor(Answers(PlanHost(st, world, compose)), calls),
                run_tag=PLAN_RUN_TAG, redactor=Redactor(st.secret_key_pattern))
    stopped, connect = None, 0
    with contextlib.redirect_stdout(io.StringIO()):         # the flow's own progress is not the plan
        try:
            begin(s, t0)
            connect = len(calls)
            DEPLOY(s, version=version)
        except DeployError as err:
            stopped = err
    ends = [line for line in s.recorder.lines if line.get("event") == "end"]
    return Preview(calls, connect, ends[-1].get("outcome", "") if ends else "", stopped)


def entries(p: Preview, host: str) -> list[plan_cmd.Entry]:
    """The calls as the plan shows them: each with its step, per-run values as placeholders."""
    flow = p.calls[p.connect:]
    labels = [("connect", "")] * p.connect + plan_cmd.label_steps(
        [c.where for c in flow], [bool(c.answer and c.answer.guards) for c in flow])
    return plan_cmd.collapse([
        plan_cmd.Entry(step, sub, (c.answer and c.answer.display) or c.command,
                       (c.answer.what if c.answer else "") or UNKNOWN,
                       c.mutating or bool(c.answer and c.answer.changes), "" if c.host == host else c.host, c.local)
        for c, (step, sub) in zip(p.calls, labels)])


def ending(p: Preview) -> str:
    if p.stopped is None:
        return f"it ends: {p.outcome or 'success'}"
    at = f" at {p.stopped.step}" if p.stopped.step else ""
    return f"it ends{at}: {p.outcome or 'failed'} (exit {int(p.stopped.code)}): {p.stopped.what}"


@operator_task(connects=False, check=check_options, help={
    "compose": "compose command to show: 'docker compose' (v2) or docker-compose (v1)",
    "version": "show `fab deploy --version TAG`: the registry check of the tag and the .env write (docs/versions.md)"})
def plan(o: Offline, compose="", version=None):
    """Offline preview: every command `fab deploy` would run for the stage, in order, without connecting."""
    st = o.settings
    if compose and compose not in (compose_cmd.V1, compose_cmd.V2):
        raise DeployError(f"--compose must be '{compose_cmd.V2}' or {compose_cmd.V1}, got {compose!r}",
                          kind=SETUP, code=ExitCode.CONFIG, state="nothing was run",
                          next_step=f"fab plan --compose '{compose_cmd.V2}' (or {compose_cmd.V1})")
    cmd = compose or (st.compose_command if st.compose_command != "auto" else compose_cmd.V2)
    if compose and st.compose_command != "auto":
        st = dataclasses.replace(st, compose_command=compose)
    host = st.hosts[0]
    main, *others = (preview(st, world, cmd, version) for world in (PlanWorld(), *(w for _, w in PATHS)))
    say_header(st, host, compose, main, version)
    shown = entries(main, host)
    for line in plan_cmd.render(shown):
        ui.say(line)
    for (title, _), other in zip(PATHS, others):
        ui.say(f"\n=== if {title}; {ending(other)}. What differs from the deploy above:")
        for line in plan_cmd.render_difference(shown, entries(other, host)):
            ui.say(line)
    say_notes([main, *others])


def say_header(st: Settings, host: str, compose: str, main: Preview, version: str | None = None) -> None:
    what = f"fab deploy --version {version}" if version is not None else "fab deploy"
    ui.say(f"Plan for `{what}` on stage {st.stage} ({', '.join(st.hosts)}), app dir {q(st.app_dir)}; nothing is run.")
    ui.say("It is the deploy itself, run against the plan world (tasks/planworld.py): a healthy host running the previous "
           "release, the checkout one commit behind, one pending migration, the lock free. Shown for "
           f"{host}; {ending(main)}.")
    if st.compose_command == "auto" and not compose:
        ui.say("Compose is detected on the host (COMPOSE_COMMAND=auto); shown as `docker compose`. --compose docker-compose shows v1.")
    if version is not None:
        var = st.image_tag_variable
        ui.say(f"--version {version}: step [version] pulls each image that uses {var} with tag {version} before anything "
               f"changes (one missing: nothing changed, exit 3); pull and migrate run with {var}={version}; the .env gets "
               f"{var}={version} right before `up` ([services]). The plan world's .env does not set {var} yet.")


def say_notes(previews: list[Preview]) -> None:
    ui.say("\nNotes: waits (db ready, health wait) repeat their command until ready; the plan world is ready at once, "
           "so each shows once. <token> is the run's lock token; each release-record line (one JSON object per event) "
           "is shown as '<json line>'. The lock holder's who, from, pid and started are this machine's, now.")
    unknown = sum(1 for p in previews for c in p.calls if c.answer is None)
    if unknown:
        ui.warn(f"{unknown} command(s) are not known to the plan world (tasks/plananswers.py): they were answered as "
                "if they succeeded with no output, so what follows them may differ from a real deploy")
