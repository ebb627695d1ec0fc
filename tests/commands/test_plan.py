"""How the plan is arranged (commands/plan.py, pure), and what `fab plan` prints for hostile but
valid config values. Where the commands come from (the real flow in the plan world) is tested in
tests/tasks/test_plan.py and tests/tasks/test_plan_matches_deploy.py."""
import os
import re

from invoke import MockContext

from commands.plan import Entry, collapse, label_steps, render, render_difference
from tasks.conftest import hermetic_config

RECORD_CMD = "mkdir -p /app/.deploy && ... '<json line>' >> /app/.deploy/releases.jsonl"


def test_a_command_outside_every_step_belongs_to_the_step_it_guards_or_follows():
    wheres = [
        (),                                                   # take the lock: before the first step
        (),                                                   # record "start"
        (("start", "record images"),),
        (),                                                   # record "images_before": after start
        (),                                                   # heartbeat before checklist
        (("checklist", None),),
        (("migrate", None), ("migrate", "deps up")),
        (),                                                   # heartbeat before the end
        (),                                                   # record "end"
    ]
    guards = [True, False, False, False, True, False, False, True, False]
    assert label_steps(wheres, guards) == [
        ("start", "lock"), ("start", ""), ("start", "record images"), ("start", ""), ("checklist", "lock"),
        ("checklist", ""), ("migrate", "deps up"), ("finish", ""), ("finish", "")]


def test_consecutive_record_appends_of_a_step_are_one_entry_naming_their_events():
    es = [Entry("start", "", RECORD_CMD, "release record: start", True),
          Entry("start", "", RECORD_CMD, "release record: step", True),
          Entry("start", "", "docker inspect -- x", "state"),
          Entry("start", "", RECORD_CMD, "release record: images_before", True),
          Entry("checklist", "", RECORD_CMD, "release record: checklist", True)]
    assert [e.what for e in collapse(es)] == ["release record: start, step", "state", "release record: images_before",
                                              "release record: checklist"]


def test_render_groups_by_step_marks_changes_and_shows_a_record_append_once_in_full():
    es = [Entry("start", "lock", "mkdir x", "take the lock", True),
          Entry("start", "", RECORD_CMD, "release record: start", True),
          Entry("checklist", "", "git fetch", "fetch"),
          Entry("checklist", "", "cat x", "read x", host="staging-host"),
          Entry("checklist", "", "GET http://m/", "is the dashboard up", local=True),
          Entry("checklist", "", RECORD_CMD, "release record: checklist", True)]
    assert render(es) == [
        "", "[start]",
        "  # lock: take the lock  [changes the host]", "  mkdir x",
        "  # release record: start  [changes the host]", "  " + RECORD_CMD,
        "", "[checklist]",
        "  # fetch", "  git fetch",
        "  # on staging-host: read x", "  cat x",
        "  # from this machine, not a command on the host: is the dashboard up", "  GET http://m/",
        "  # release record: checklist  [changes the host]  (as above, with its own JSON line)"]


def test_another_path_is_shown_as_what_it_does_not_run_and_what_it_runs_instead():
    base = [Entry("migrate", "", "ps backend", "the containers of backend"),
            Entry("migrate", "", "exec backend alembic", "alembic in the backend", True),
            Entry("services", "", "up -d", "recreate", True)]
    other = [Entry("migrate", "", "ps backend", "the containers of backend"),
             Entry("migrate", "", "run --rm backend alembic", "alembic in a new container", True),
             Entry("services", "", "up -d", "recreate", True),
             Entry("auto-rollback", "", "docker tag a b", "point b at a", True)]
    assert render_difference(base, other) == [
        "[migrate]", "  # does not run: alembic in the backend",
        "  # runs instead:", "  # alembic in a new container  [changes the host]", "  run --rm backend alembic",
        "[auto-rollback]", "  # also runs:", "  # point b at a  [changes the host]", "  docker tag a b"]
    assert render_difference(base, base) == []


def test_the_same_step_of_two_paths_matches_although_the_world_answered_other_ids():
    base = [Entry("start", "", "docker inspect -- aaa", "state, health and image of those containers")]
    other = [Entry("start", "", "docker inspect -- bbb", "state, health and image of those containers")]
    assert render_difference(base, other) == []


def outside_quotes(line):
    """The parts of a shell line that are not inside '...' or "..." (shlex.quote only makes these)."""
    return re.sub(r"'[^']*'|\"[^\"]*\"", "", line)


def test_hostile_but_valid_app_dir_appears_in_the_plan_only_quoted(capsys):
    """Issue 7 #18: APP_DIR may hold spaces and ';' (quotes and '$' are refused by validation); pasted
    from `fab plan`, an unquoted `cat -- /srv/my app;touch x/...` ran `touch`."""
    from tasks.plan import plan

    hostile = "/srv/my app;touch pwned"
    os.environ["DEPLOY_APP_DIR"] = hostile
    try:
        plan(MockContext(config=hermetic_config()), stage="production")
    finally:
        del os.environ["DEPLOY_APP_DIR"]
    out = capsys.readouterr().out
    assert f"if [ -f '{hostile}/.env.example' ]; then cat -- '{hostile}/.env.example'; else exit 3; fi" in out
    assert out.count(hostile) >= 40
    for line in out.splitlines():
        if not line.lstrip().startswith("#") and not re.fullmatch(r"\[[a-z -]+\]|(Plan for|===|It is|Notes:) .*", line):
            assert "my app" not in outside_quotes(line), line
