"""The blue/green slot decisions (commands/slots.py): which slot is idle, what a switch starts and
stops, what a restore keeps, and how the serving slot stands for the backend."""
from types import SimpleNamespace

from commands.docker import ContainerState
from commands.slots import (
    Slot,
    SlotState,
    active,
    describe,
    fold,
    idle,
    pair,
    restore_plan,
    states_of,
    switch_plan,
    with_slots,
)

SLOTS = (Slot("backend", "http://localhost:8000/health"), Slot("backend_green", "http://localhost:8002/health"))


def st(service, running=True, healthy=True, image="sha256:old"):
    return SlotState(service, running, running and healthy, image)


def container(service, status="running", health="healthy", image="sha256:old"):
    return ContainerState(id=service + "-id", name=service + "-1", service=service, image_ref="reg/backend:latest",
                          image_id=image, status=status, health=health, restart_count=0, oom_killed=False, exit_code=0,
                          started_at="", finished_at="", memory_limit=0)


def test_idle_is_the_slot_that_does_not_run():
    assert idle([st("backend"), st("backend_green", running=False)]) == "backend_green"
    assert idle([st("backend", running=False), st("backend_green")]) == "backend"
    # first deploy under blue-green, nothing runs: blue first
    assert idle([st("backend", running=False), st("backend_green", running=False)]) == "backend"


def test_with_both_running_the_healthy_one_serves_and_the_other_is_idle():
    both = [st("backend", healthy=False), st("backend_green")]
    assert active(both) == "backend_green"
    assert idle(both) == "backend"
    assert active([st("backend", running=False), st("backend_green", running=False)]) == ""


def test_switch_starts_the_idle_slot_and_stops_the_serving_one_after_it():
    plan = switch_plan([st("backend"), st("backend_green", running=False)])
    assert (plan.start, plan.stop, plan.serves) == ("backend_green", ("backend",), "backend_green")
    plan = switch_plan([st("backend", running=False), st("backend_green")])
    assert (plan.start, plan.stop) == ("backend", ("backend_green",))


def test_restore_after_a_failed_new_slot_keeps_the_old_slot_and_stops_the_new():
    # auto-rollback / abort: the old slot (blue) still serves the old image, green runs the new one
    states = [st("backend", image="sha256:old"), st("backend_green", healthy=False, image="sha256:new")]
    plan = restore_plan(states, "sha256:old", prefer="backend")
    assert (plan.start, plan.stop, plan.serves) == (None, ("backend_green",), "backend")


def test_restore_after_the_old_slot_was_stopped_brings_the_old_slot_back_first():
    # smoke failed after the switch: blue (old) stopped, green serves the new image
    states = [st("backend", running=False, image="sha256:old"), st("backend_green", image="sha256:new")]
    plan = restore_plan(states, "sha256:old", prefer="backend")
    assert (plan.start, plan.stop, plan.serves) == ("backend", ("backend_green",), "backend")


def test_fab_rollback_without_a_preferred_slot_starts_the_idle_one():
    states = [st("backend", running=False, image="sha256:old"), st("backend_green", image="sha256:new")]
    plan = restore_plan(states, "sha256:old")
    assert (plan.start, plan.stop) == ("backend", ("backend_green",))


def test_restore_to_what_already_serves_only_stops_a_leftover_slot():
    states = [st("backend", image="sha256:new"), st("backend_green", running=False, image="sha256:old")]
    assert restore_plan(states, "sha256:new") == restore_plan(states, "sha256:new", prefer="backend")
    plan = restore_plan(states, "sha256:new")
    assert (plan.start, plan.stop, plan.serves) == (None, (), "backend")


def test_states_of_reads_running_health_and_image():
    got = states_of(SLOTS, [container("backend_green", health="starting", image="sha256:new")])
    assert got == [SlotState("backend", False, False, ""), SlotState("backend_green", True, False, "sha256:new")]


def test_fold_names_the_serving_slot_backend_and_drops_the_other():
    cs = [container("proxy", health=None), container("backend", status="exited", image="sha256:old"),
          container("backend_green", image="sha256:new")]
    folded = fold(cs, SLOTS, "backend")
    assert [(c.service, c.image_id) for c in folded] == [("proxy", "sha256:old"), ("backend", "sha256:new")]
    # nothing runs: the stopped blue container still stands for the backend (a dead backend is seen)
    stopped = fold([container("backend", status="exited"), container("backend_green", status="exited", image="x")], SLOTS, "backend")
    assert [(c.service, c.image_id, c.status) for c in stopped] == [("backend", "sha256:old", "exited")]


def test_with_slots_queries_both_slots_for_the_backend_only():
    assert with_slots(["backend", "proxy"], SLOTS, "backend") == ["proxy", "backend", "backend_green"]
    assert with_slots(["proxy"], SLOTS, "backend") == ["proxy"]
    assert with_slots(["backend", "proxy"], (), "backend") == ["backend", "proxy"]    # recreate: unchanged


def test_pair_and_describe():
    settings = SimpleNamespace(backend_service="backend", health_url="http://localhost:8000/health",
                               blue_green_slot="backend_green", blue_green_health_url="http://localhost:8002/health")
    assert pair(settings) == SLOTS
    assert describe([st("backend", running=False), st("backend_green")], SLOTS) == \
        "backend stopped; backend_green serves (http://localhost:8002/health)"
    assert describe([st("backend", running=False), st("backend_green", running=False)], SLOTS).startswith("no slot runs")


def test_a_restore_never_recreates_the_only_serving_slot():
    # Regression (found on staging: 7 of 498 requests got 502): fab rollback after a blue-green
    # deploy preferred the slot that served before the run, which is the serving slot itself, and
    # `up -d` recreated it while the other slot was stopped. The idle slot must start instead.
    states = [st("backend", running=False, image="sha256:old"), st("backend_green", image="sha256:new")]
    plan = restore_plan(states, "sha256:old", prefer="backend_green")
    assert (plan.start, plan.stop, plan.serves) == ("backend", ("backend_green",), "backend")
    # with the other slot serving meanwhile, the preferred slot may be recreated
    both = [st("backend", image="sha256:new"), st("backend_green", image="sha256:new")]
    assert restore_plan(both, "sha256:old", prefer="backend_green").start == "backend_green"
