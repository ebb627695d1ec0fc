import subprocess

import pytest

from commands import record
from commands.shell import UnsafeValue

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


def test_new_release_id_sorts_by_time():
    from datetime import datetime, timezone
    a = record.new_release_id(datetime(2026, 1, 1, tzinfo=timezone.utc))
    b = record.new_release_id(datetime(2026, 1, 2, tzinfo=timezone.utc))
    assert a < b and a.startswith("20260101T000000Z-")


# ---- issue 7, item 14: every append starts on a fresh line ------------------------------------------

def test_append_writes_several_lines_in_order_in_one_command(tmp_path):
    """The recorder holds step timings and appends them with the next event (tasks/recorder.py)."""
    path = str(tmp_path / "releases.jsonl")
    lines = [record.line("r1", "step", step="pull", sub=None, seconds=0.2, ok=True),
             record.line("r1", "step", step="x", sub="y", seconds=1.0, ok=True, note="a'b $(c)"),
             record.line("r1", "end", outcome="success")]
    assert subprocess.run(["sh", "-c", record.append(path, *lines)]).returncode == 0
    assert open(path).read() == "".join(f"{x}\n" for x in lines)


def test_append_command_exact_string():
    assert record.append("/srv/my app/.deploy/releases.jsonl", '{"a":"it\'s"}') == (
        "mkdir -p '/srv/my app/.deploy' && { if [ -s '/srv/my app/.deploy/releases.jsonl' ] && "
        "[ \"$(tail -c 1 '/srv/my app/.deploy/releases.jsonl' | wc -l)\" -eq 0 ]; then echo; fi; "
        "printf '%s\\n' '{\"a\":\"it'\"'\"'s\"}'; } >> '/srv/my app/.deploy/releases.jsonl'")


def test_append_after_a_torn_last_line_starts_a_fresh_line(tmp_path):
    path = tmp_path / "releases.jsonl"
    good = record.line("r1", "start", kind="deploy")
    path.write_text(good + "\n" + '{"v":1,"release":"r1","event":"images_bef')      # a crash mid-write
    end = record.line("r1", "end", outcome="success", seconds=3.0)
    assert subprocess.run(["sh", "-c", record.append(str(path), end)]).returncode == 0
    rows = path.read_text().split("\n")
    assert rows == [good, '{"v":1,"release":"r1","event":"images_bef', end, ""]
    assert [d["event"] for d in record.parse(path.read_text())] == ["start", "end"]      # the end line survived


def test_append_adds_no_blank_line_to_a_new_empty_or_whole_file(tmp_path):
    path = tmp_path / "d" / "releases.jsonl"
    one, two = record.line("r1", "start"), record.line("r1", "end", outcome="success")
    for text in (one, two):
        assert subprocess.run(["sh", "-c", record.append(str(path), text)]).returncode == 0
    assert path.read_text() == one + "\n" + two + "\n"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    subprocess.run(["sh", "-c", record.append(str(empty), one)], check=True)
    assert empty.read_text() == one + "\n"


# ---- item 14: corrupt or hostile lines are validated, skipped and reported ----------------------------

HOSTILE = [
    ('"seconds": "12s"', {"v": 1, "release": "r9", "event": "end", "outcome": "success", "seconds": "12s"}),
    ('"release" as a list', {"v": 1, "release": ["r9"], "event": "start", "kind": "deploy"}),
    ('"images" as a list', {"v": 1, "release": "r9", "event": "images_after", "images": [IMG_V1], "healthy": True}),
    ('"images" as a string', {"v": 1, "release": "r9", "event": "images_after", "images": "backend", "healthy": True}),
    ('"healthy": "false"', {"v": 1, "release": "r9", "event": "images_after", "images": IMG_BAD, "healthy": "false"}),
    ("image id with shell syntax", {"v": 1, "release": "r9", "event": "images_after", "healthy": True,
                                    "images": {"backend": {"ref": "x", "id": "$(reboot)", "digests": []}}}),
    ("step seconds NaN", {"v": 1, "release": "r9", "event": "step", "step": "x", "seconds": float("nan")}),
    ("unknown outcome", {"v": 1, "release": "r9", "event": "end", "outcome": "great"}),
]


@pytest.mark.parametrize("what,bad", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_corrupt_record_line_is_skipped_not_a_crash_nor_healthy(what, bad):
    import json
    text = "\n".join(lines("r9", "deploy", IMG_V2, True, None, False, None) + [json.dumps(bad)])
    rels = record.releases(record.parse(text))            # base: TypeError / ValueError here, or healthy
    assert [r.id for r in rels] == ["r9"]
    r = rels[0]
    assert r.images_after == {} and r.after_healthy is False and r.outcome == "incomplete" and r.seconds == 0.0
    assert r.steps == [{"step": "services", "sub": "pull", "seconds": 1.5, "ok": True}]    # only the valid step


def test_healthy_false_as_a_string_never_counts_as_healthy():
    text = "\n".join(lines("r1", "deploy", IMG_V1, True, None, False, None)) + "\n" + \
        '{"v":1,"release":"r1","event":"images_after","images":' + \
        '{"backend":{"ref":"reg/backend:latest","id":"sha256:' + "3" * 64 + '","digests":[]}},"healthy":"false"}' + \
        '\n{"v":1,"release":"r1","event":"end","outcome":"success","seconds":1}'
    r = record.releases(record.parse(text))[0]
    assert r.outcome == "success" and not r.after_healthy and r.images_after == {}


def test_skipped_lines_are_reported_with_count_and_line_numbers_never_values():
    good = lines("r1", "deploy", IMG_V1, True, IMG_V2, True, "success")
    body = "\n".join(good[:2] + ['{"v":1,"release":"r1","event":"end","outcome":"success","seconds":"12s-secret"}']
                     + good[2:] + ['{"v":1,"release":"r2","ev'])
    got = record.parse_read(f"{len(good) + 101}\n" + body)   # 100 older lines before the tail, torn last line
    assert got.numbers[0] == 101 and len(got.lines) == len(good)
    assert got.skipped == [(103, "end line: seconds is not a number of seconds"),
                           (101 + len(good) + 1, "not valid JSON (a torn or corrupt line)")]
    warning = got.warning("/app/.deploy/releases.jsonl")
    assert "skipped 2 line(s)" in warning and "line 103: end line: seconds" in warning and "12s-secret" not in warning


def test_unknown_and_newer_events_need_only_the_common_fields():
    assert record.validate({"v": 1, "release": "r1", "event": "lock_takeover", "at": "x", "who": 3}) is None
    assert record.validate({"v": 2, "release": "r1", "event": "start"}) == "schema version (v) is not 1"
    assert record.validate({"v": True, "release": "r1", "event": "start"}) == "schema version (v) is not 1"
    assert record.validate(["not", "an", "object"]) == "not a JSON object"


def test_deeply_nested_json_is_a_skipped_line_not_a_recursion_crash():
    got = record.parse_read("1\n" + '{"a":' + "[" * 100000 + "\n")
    assert got.lines == [] and got.skipped == [(1, "not valid JSON (a torn or corrupt line)")]


# ---- item 14: the last 2000 lines, plus the whole file for an explicit release id -------------------

def test_read_and_search_commands_exact_string():
    assert record.read("/app/.deploy/releases.jsonl") == \
        ("if [ -e /app/.deploy/releases.jsonl ] && ! { [ -f /app/.deploy/releases.jsonl ] && [ -r /app/.deploy/releases.jsonl ]; }; "
         "then echo @@record-unreadable@@; else { n=$(wc -l < /app/.deploy/releases.jsonl) && "
         "echo \"$n $(tail -c 1 /app/.deploy/releases.jsonl | wc -l)\" "
         "&& tail -n 2000 /app/.deploy/releases.jsonl | cut -b 1-65536 | tail -c 16777216; } 2>/dev/null || true; fi")
    assert record.search("/app/.deploy/releases.jsonl", "20261127T2237") == \
        ("{ grep -a -n -F -m 500 -e '\"release\":\"20261127T2237' -- /app/.deploy/releases.jsonl | cut -b 1-65536 "
         "| head -c 16777216; } 2>/dev/null || true")
    for bad in ("x';reboot", "", "-e", "a b"):
        with pytest.raises(UnsafeValue):
            record.search("/app/r.jsonl", bad)


def test_an_explicit_release_older_than_the_last_2000_lines_is_still_found(tmp_path):
    path = tmp_path / "releases.jsonl"
    old = lines("20250101T000000Z-0001", "deploy", IMG_V1, True, IMG_V2, True, "success")
    filler = [record.line(f"20250102T{i:06d}Z-beef", "step", step="x", sub=None, seconds=0.1, ok=True) for i in range(2500)]
    path.write_text("\n".join(old + filler) + "\n")
    sh = lambda cmd: subprocess.run(["sh", "-c", cmd], capture_output=True, text=True).stdout
    tail = record.parse_read(sh(record.read(str(path))))
    assert len(tail.lines) == 2000 and tail.numbers[0] == len(old) + 501
    assert "20250101T000000Z-0001" not in {r.id for r in record.releases(tail.lines)}
    found = record.parse_search(sh(record.search(str(path), "20250101T000000Z-0001")))
    assert found.numbers == list(range(1, len(old) + 1))
    merged = record.merge(tail, found)
    assert merged.numbers == found.numbers + tail.numbers
    rels = record.releases(merged.lines)
    assert rels[0].id == "20250101T000000Z-0001" and rels[0].images_after == IMG_V2 and rels[0].outcome == "success"


def test_read_of_a_missing_record_is_empty(tmp_path):
    out = subprocess.run(["sh", "-c", record.read(str(tmp_path / "none.jsonl"))], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == ""
    assert record.parse_read(out.stdout).lines == [] and record.merge(record.parse_read(""), record.RecordRead()).lines == []
