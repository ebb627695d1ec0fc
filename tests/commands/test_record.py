import subprocess

from commands import record

IMG_V1 = {"backend": {"ref": "reg/backend:latest", "id": "sha256:" + "1" * 64, "digests": ["reg/backend@sha256:" + "a" * 64]}}
IMG_V2 = {"backend": {"ref": "reg/backend:latest", "id": "sha256:" + "2" * 64, "digests": []}}
IMG_BAD = {"backend": {"ref": "reg/backend:latest", "id": "sha256:" + "3" * 64, "digests": []}}


def lines(rid, kind, before, before_ok, after, after_ok, outcome):
    out = [record.line(rid, "start", kind=kind, stage="staging", host="h", who="me@laptop"),
           record.line(rid, "images_before", images=before, healthy=before_ok),
           record.line(rid, "step", step="services", sub="pull", seconds=1.5, ok=True)]
    if after is not None:
        out.append(record.line(rid, "images_after", images=after, healthy=after_ok))
    if outcome:
        out.append(record.line(rid, "end", outcome=outcome, seconds=12.5, bottleneck="services › pull"))
    return out


def test_append_command_writes_one_line_verbatim(tmp_path):
    path = str(tmp_path / "d" / "releases.jsonl")
    tricky = record.line("r1", "start", note="it's $(danger) `x` \\ \"q\"; echo pwned")
    assert subprocess.run(["sh", "-c", record.append(path, tricky)]).returncode == 0
    assert subprocess.run(["sh", "-c", record.append(path, record.line("r1", "end", outcome="success"))]).returncode == 0
    text = open(path).read()
    assert text.splitlines()[0] == tricky
    parsed = record.parse(subprocess.run(["sh", "-c", record.read(path)], capture_output=True, text=True).stdout)
    assert parsed[0]["note"] == "it's $(danger) `x` \\ \"q\"; echo pwned"
    assert [p["event"] for p in parsed] == ["start", "end"]


def test_round_trip_into_releases_and_torn_line():
    text = "\n".join(lines("r1", "deploy", IMG_V1, True, IMG_V2, True, "success")) + '\n{"v":1,"release":"r2","ev'
    rels = record.releases(record.parse(text))
    assert len(rels) == 1
    r = rels[0]
    assert (r.kind, r.who, r.outcome, r.seconds, r.bottleneck) == ("deploy", "me@laptop", "success", 12.5, "services › pull")
    assert r.images_before == IMG_V1 and r.images_after == IMG_V2 and r.before_healthy and r.after_healthy
    assert r.steps == [{"step": "services", "sub": "pull", "seconds": 1.5, "ok": True}]


def test_a_crash_leaves_an_incomplete_release():
    rels = record.releases(record.parse("\n".join(lines("r1", "deploy", IMG_V1, True, None, False, None))))
    assert rels[0].outcome == "incomplete"


def history():
    text = []
    text += lines("r1", "deploy", IMG_V1, True, IMG_V2, True, "success")       # v1 -> v2 ok
    text += lines("r2", "deploy", IMG_V2, True, IMG_BAD, False, "failed")      # v2 -> broken, failed
    return record.releases(record.parse("\n".join(text)))


def test_candidates_only_healthy_image_sets_newest_first():
    cands = record.rollback_candidates(history(), ["backend"])
    ids = [c.images["backend"]["id"][-1] for c in cands]
    assert ids == ["2", "1"]          # the broken image set is never a candidate
    assert "finished healthy" in cands[0].source or "healthy before" in cands[0].source


def test_choose_target_skips_what_runs_now():
    cands = record.rollback_candidates(history(), ["backend"])
    assert record.choose_target(cands, {"backend": IMG_BAD["backend"]["id"]}, ["backend"]).images == IMG_V2
    assert record.choose_target(cands, {"backend": IMG_V2["backend"]["id"]}, ["backend"]).images == IMG_V1
    only = record.rollback_candidates(record.releases(record.parse("\n".join(lines("r1", "deploy", IMG_V1, False, IMG_V2, True, "success")))), ["backend"])
    assert record.choose_target(only, {"backend": IMG_V2["backend"]["id"]}, ["backend"]) is None


def test_unhealthy_before_and_aborted_releases_are_not_candidates():
    text = lines("r1", "deploy", IMG_V1, False, IMG_V2, False, "aborted")
    assert record.rollback_candidates(record.releases(record.parse("\n".join(text))), ["backend"]) == []


def test_new_release_id_sorts_by_time():
    from datetime import datetime, timezone
    a = record.new_release_id(datetime(2026, 1, 1, tzinfo=timezone.utc))
    b = record.new_release_id(datetime(2026, 1, 2, tzinfo=timezone.utc))
    assert a < b and a.startswith("20260101T000000Z-")
