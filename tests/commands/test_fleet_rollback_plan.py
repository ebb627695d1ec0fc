"""Where a bare `fab rollback` takes each host of a fleet (commands/fleetrollback.py), on records
built with the record.line() the flow writes."""
import json

import pytest

from commands import fleetrollback as plan
from commands import record
from commands.rollback_plan import NoTarget, bare_target

SERVICES = ["backend"]


def img(n: int) -> dict:
    return {"backend": {"ref": "reg/backend:latest", "id": "sha256:" + str(n) * 64, "digests": []}}


V1, V2, V3 = img(1), img(2), img(3)


def at(text: str, when: str) -> str:
    d = json.loads(text)
    d["at"] = when
    return json.dumps(d)


def rel(rid, before, after, outcome="success", when="2026-11-28T10:00:00+00:00"):
    lines = [record.line(rid, "start", kind="deploy", stage="production", host="h", who="me@laptop"),
             record.line(rid, "images_before", images=before, healthy=True),
             record.line(rid, "images_after", images=after, healthy=True),
             record.line(rid, "end", outcome=outcome, seconds=1.0)]
    return [at(line, when) for line in lines]


def host(*chunks, now):
    return plan.HostRecord(record.releases(record.parse("\n".join(line for c in chunks for line in c))), record.image_ids(now))


F1 = ("F1", V1, V2)
LATER = "2026-11-28T11:00:00+00:00"


def test_a_fleet_release_every_host_took_goes_back_to_the_same_release_everywhere():
    hosts = {h: host(rel(*F1), now=V2) for h in ("a", "b", "c")}
    targets = plan.plan(hosts, SERVICES)
    assert [(t.host, t.action, t.images) for t in targets] == [(h, plan.ROLL, V1) for h in ("a", "b", "c")]


def test_a_fleet_deploy_stopped_half_way_goes_back_to_one_version_not_each_host_one_step():
    """F2 switched a only (b rolled itself back, c never started): each host's own bare rollback
    would take b and c to V1 while a goes to V2, splitting the fleet; the fleet goes to V2."""
    a = host(rel(*F1), rel("F2", V2, V3, when=LATER), now=V3)
    b = host(rel(*F1), rel("F2", V2, V2, outcome="rolled_back", when=LATER), now=V2)
    c = host(rel(*F1), now=V2)
    assert bare_target(b.rels, b.current, SERVICES).images == V1, "what b alone would do"
    targets = {t.host: t for t in plan.plan({"a": a, "b": b, "c": c}, SERVICES)}
    assert (targets["a"].action, targets["a"].images) == (plan.ROLL, V2)
    assert targets["b"].action == targets["c"].action == plan.UNCHANGED


def test_records_that_disagree_refuse_the_whole_rollback():
    a = host(rel(*F1), rel("F2", V2, V3, when=LATER), now=V3)
    c = host(rel("F0", V3, V1), now=V1)          # runs V1 and has no record of V2 serving
    with pytest.raises(NoTarget, match=r"records disagree: .* not recorded as healthy on c"):
        plan.plan({"a": a, "c": c}, SERVICES)


def test_no_host_with_a_target_is_no_target():
    with pytest.raises(NoTarget, match="no host has a recorded healthy image set"):
        plan.plan({"a": host(now=V1), "b": host(now=V1)}, SERVICES)
