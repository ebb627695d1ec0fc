"""Which image set a rollback goes to (issue 7, items 4, 5, 14 and 16), on records built with the
same record.line() the flow writes, folded by record.releases()."""
import json

import pytest

from commands import record
from commands import rollback_plan as plan

SERVICES = ["backend"]


def img(n: int) -> dict:
    return {"backend": {"ref": "reg/backend:latest", "id": "sha256:" + str(n) * 64, "digests": []}}


V1, V2, V3, V4, BAD = img(1), img(2), img(3), img(4), img(9)


def rel(rid, kind, before, after, outcome="success", before_ok=True, after_ok=True):
    out = [record.line(rid, "start", kind=kind, stage="staging", host="h", who="me@laptop"),
           record.line(rid, "images_before", images=before, healthy=before_ok)]
    if after is not None:
        out.append(record.line(rid, "images_after", images=after, healthy=after_ok))
    if outcome:
        out.append(record.line(rid, "end", outcome=outcome, seconds=1.0))
    return out


def fold(*chunks):
    return record.releases(record.parse("\n".join(l for c in chunks for l in c)))


def running(images):
    return record.image_ids(images)


def bare(rels, now):
    return plan.bare_target(rels, running(now), SERVICES)


# ---- basics that held before and still hold ---------------------------------------------------------

def test_only_healthy_image_sets_are_candidates_newest_first():
    rels = fold(rel("A", "deploy", V1, V2), rel("B", "deploy", V2, BAD, "failed", after_ok=False))
    cands = plan.healthy_sets(rels, SERVICES)
    assert [c.images for c in cands] == [V2, V1]              # the broken set is never a candidate
    assert bare(rels, BAD).images == V2                        # failed deploy: back to the set before it
    assert plan.healthy_sets(fold(rel("A", "deploy", V1, V2, "aborted", before_ok=False, after_ok=False)), SERVICES) == []


def test_no_target_when_everything_healthy_is_what_runs_now():
    with pytest.raises(plan.NoTarget, match="every recorded healthy image set is what runs now"):
        bare(fold(rel("A", "deploy", V1, V2, before_ok=False)), V2)
    with pytest.raises(plan.NoTarget, match="no release in the record finished healthy"):
        bare([], V2)


# ---- item 4: --to RELEASE is the set that release left serving healthily -------------------------------

def test_rollback_to_a_successful_deploy_after_a_bare_rollback_gets_its_images():
    # v1 -> v2 (A), bare rollback R1 -> v1: the old code de-duplicated sets, kept R1's copies
    # and refused --to A with "never served healthily".
    rels = fold(rel("20261127T100000Z-aaaa", "deploy", V1, V2), rel("20261127T110000Z-bbbb", "rollback", V2, V1))
    target = plan.release_target(rels, "20261127T100000Z-aaaa", SERVICES)
    assert target.images == V2 and target.release == "20261127T100000Z-aaaa"
    assert plan.release_target(rels, "20261127T1000", SERVICES).images == V2          # a unique prefix
    assert plan.release_target(rels, "20261127T110000Z-bbbb", SERVICES).images == V1  # a healthy rollback too


def test_rollback_to_does_not_depend_on_deduplicating_image_sets():
    # the same set deployed twice: each release still resolves to its own images_after
    rels = fold(rel("A", "deploy", V1, V2), rel("B", "deploy", V2, V1), rel("C", "deploy", V1, V2))
    assert [plan.release_target(rels, r, SERVICES).images for r in "ABC"] == [V2, V1, V2]


def test_ambiguous_release_prefix_is_refused_listing_the_matches():
    rels = fold(rel("20261127T100000Z-aaaa", "deploy", V1, V2), rel("20261127T110000Z-bbbb", "deploy", V2, V3))
    with pytest.raises(plan.NoTarget) as exc:
        plan.release_target(rels, "20261127T1", SERVICES)
    assert "ambiguous" in exc.value.why and exc.value.matches == ["20261127T100000Z-aaaa", "20261127T110000Z-bbbb"]


def test_release_that_never_served_healthily_is_refused_saying_so():
    rels = fold(rel("A", "deploy", V1, V2), rel("B", "deploy", V2, BAD, "failed", after_ok=False),
                rel("C", "deploy", V2, V2, "rolled_back"), rel("D", "deploy", V2, None, None))
    for rid, outcome in (("B", "failed"), ("C", "rolled_back"), ("D", "incomplete")):
        with pytest.raises(plan.NoTarget, match=f"release {rid} never served healthily: deploy, outcome {outcome}"):
            plan.release_target(rels, rid, SERVICES)
    assert plan.release_target(rels, "v1", SERVICES) is None            # not a release: maybe an image tag


# ---- item 5: a second bare rollback goes further back ------------------------------------------------

def v1_v2_v3():
    return [rel("A", "deploy", V1, V2), rel("B", "deploy", V2, V3)]


def test_second_bare_rollback_goes_further_back_never_to_what_it_rolled_away_from():
    chain = v1_v2_v3()
    assert bare(fold(*chain), V3).images == V2                          # first rollback: v3 -> v2
    chain.append(rel("R1", "rollback", V3, V2))
    assert bare(fold(*chain), V2).images == V1                          # second: v2 -> v1, never v3 (the old code)
    chain.append(rel("R2", "rollback", V2, V1))
    with pytest.raises(plan.NoTarget, match=r"rolled away from by a later rollback \(R1, R2\).*--to"):
        bare(fold(*chain), V1)                                          # nothing older: refuse, ask for --to
    assert plan.release_target(fold(*chain), "B", SERVICES).images == V3   # --to still reaches v3


def test_a_fresh_successful_deploy_restarts_the_rollback_chain():
    chain = v1_v2_v3() + [rel("R1", "rollback", V3, V2), rel("C", "deploy", V2, V4)]
    assert bare(fold(*chain), V4).images == V2                          # the set before the fresh deploy
    chain.append(rel("R2", "rollback", V4, V2))
    assert bare(fold(*chain), V2).images == V1                          # then further back, skipping v3 and v4
    redeploy = v1_v2_v3() + [rel("R1", "rollback", V3, V2), rel("C", "deploy", V2, V3), rel("R2", "rollback", V3, V2)]
    assert bare(fold(*redeploy), V2).images == V1                       # v3 re-deployed, then rolled away from again
    again = [rel("A", "deploy", V1, V2), rel("R1", "rollback", V2, V1), rel("C", "deploy", V1, V2)]
    assert bare(fold(*again), V2).images == V1                          # a re-deployed set is a normal deploy again


def test_rollback_to_after_a_rollback_makes_that_set_a_target_again():
    # v1 -> v2, bare rollback -> v1, --to A -> v2: the next bare rollback goes to v1 again? No:
    # the --to rollback moved away from v1, so a bare rollback refuses rather than flip-flopping.
    chain = [rel("A", "deploy", V1, V2), rel("R1", "rollback", V2, V1), rel("R2", "rollback", V1, V2)]
    with pytest.raises(plan.NoTarget, match=r"rolled away from by a later rollback \(R2\)"):
        bare(fold(*chain), V2)
    chain.append(rel("C", "deploy", V2, V3))
    assert bare(fold(*chain), V3).images == V2                          # v2 re-established by R2


def test_a_failed_rollback_rolls_away_from_nothing():
    chain = v1_v2_v3() + [rel("R1", "rollback", V3, BAD, "failed", after_ok=False)]
    assert bare(fold(*chain), BAD).images == V3


# ---- item 4: each candidate once -------------------------------------------------------------------

def test_history_candidates_list_each_set_and_release_once():
    rels = fold(*v1_v2_v3(), rel("R1", "rollback", V3, V2))
    rows = plan.annotate(plan.healthy_sets(rels, SERVICES), running(V2), SERVICES)
    assert [(c.images, c.release, note) for c, note in rows] == [
        (V2, "R1", "running now"),
        (V3, "B", "rolled away from by R1: only with --to"),
        (V1, "", "next bare rollback"),
    ]
    ids = [c.release for c, _ in rows if c.release]
    assert len(ids) == len(set(ids))


# ---- item 14: a line that fails validation is never a target -----------------------------------------

def test_hostile_healthy_false_line_is_never_a_rollback_target():
    hostile = json.dumps({"v": 1, "release": "X", "event": "images_after", "images": BAD, "healthy": "false"})
    end = json.dumps({"v": 1, "release": "X", "event": "end", "outcome": "success", "seconds": "12s"})
    rels = fold(rel("A", "deploy", V1, V2), rel("X", "deploy", V2, None, None), [hostile, end])
    assert bare(rels, V2).images == V1
    with pytest.raises(plan.NoTarget, match="release X never served healthily"):
        plan.release_target(rels, "X", SERVICES)
    assert all(c.images != BAD for c in plan.healthy_sets(rels, SERVICES))


# ---- item 16: --to and --limit are checked before any SSH --------------------------------------------

@pytest.mark.parametrize("good", ["", "v1", "20261127T223704Z-d996", "2026112", "127.0.0.1:5000/ai-doc-qa/backend:v1",
                                  "sha256:" + "a" * 64, "8cb0f7c0711a"])
def test_rollback_to_accepts_release_ids_tags_references_and_image_ids(good):
    assert plan.check_reference(good) is None


@pytest.mark.parametrize("bad", ["v1;reboot", "$(reboot)", "-rf", "v1 v2", "a\nb", "x" * 300])
def test_rollback_to_with_shell_syntax_is_refused_saying_what_is_accepted(bad):
    problem = plan.check_reference(bad)
    assert problem.startswith(f"--to {bad[:40]!r}") and "is not accepted" in problem and "release id" in problem and "a tag of" in problem


def test_history_limit_must_be_a_whole_number():
    assert plan.check_limit("20") is None and plan.check_limit(10) is None
    for bad in ("abc", "0", "-3", "1.5", "", "٣", True, "100001"):
        assert "--limit takes a whole number of releases from 1 to 100000" in plan.check_limit(bad)


# ---- the real record of a staging session -------------------------------------------------------------

def test_real_record_deploy_autorollback_bare_rollback_and_rollback_to():
    """v1 -> v2 (deploy), broken image (auto-rolled back to v2), bare rollback (-> v1), then
    --to the deploy (-> v2): captured from the staging host."""
    from pathlib import Path
    text = (Path(__file__).parents[1] / "fixtures" / "captured" / "releases-deploy-autorollback-rollback-to.jsonl").read_text()
    got = record.parse_read(f"{text.count(chr(10))}\n{text}")
    assert got.skipped == [] and got.numbers == list(range(1, 82))       # every real line passes the schema
    rels = record.releases(got.lines)
    assert [(r.kind, r.outcome) for r in rels] == [("deploy", "success"), ("deploy", "rolled_back"),
                                                   ("rollback", "success"), ("rollback", "success")]
    deploy, _, bare_rb, to_rb = rels
    services = ["backend", "model_server", "proxy"]
    v1, v2 = deploy.images_before, deploy.images_after
    assert plan.release_target(rels[:3], deploy.id, services).images == v2      # the --to the host ran
    assert bare_rb.images_after == v1 and to_rb.images_after == v2
    # now: v2, after a --to that moved away from v1: a bare rollback refuses rather than flip-flop
    with pytest.raises(plan.NoTarget, match=f"rolled away from by a later rollback \\({to_rb.id}\\)"):
        plan.bare_target(rels, record.image_ids(v2), services)
    assert [c.release for c, _ in plan.annotate(plan.healthy_sets(rels, services), record.image_ids(v2), services)] \
        == [to_rb.id, bare_rb.id]                                       # two sets, each once, newest release
