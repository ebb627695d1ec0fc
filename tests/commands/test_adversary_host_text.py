"""Text that enters the tool from the host or leaves it for a terminal, a record or CI, tried as an
attacker and a careless operator would (the adversary pass over issue 7, items 10-12 and 14).
Each test is named after the defect it found."""
import json
import re
import subprocess
import time
from urllib.parse import quote, quote_plus

import pytest

from commands import lock, record
from commands.secrets import REDACTED, Redactor
from commands.terminal import strip_controls

PATTERN = r"(?i)(PASS|SECRET|TOKEN|KEY|AUTH)"
HUGE_INT = "1" + "0" * 400          # valid JSON; too large for a float


# ---- hostile numbers and nesting from the host never crash a reader ---------------------------------

def test_record_line_with_an_integer_too_large_for_a_float_is_skipped_not_a_crash():
    raw = '{"v":1,"release":"r1","event":"step","step":"services","seconds":' + HUGE_INT + '}'
    got = record.check([(7, raw)])
    assert got.lines == [] and got.skipped == [(7, "step line: seconds is not a number of seconds")]


def test_lock_holder_nested_too_deep_for_the_json_parser_is_unreadable_not_a_crash():
    state = lock.parse_status('{"who": ' + "[" * 100_000 + "]" * 100_000 + '}\nclock 100 90 80')
    assert state.held and "token" not in state.holder


def test_lock_holder_with_an_integer_too_large_for_a_float_falls_back_to_the_local_setting():
    state = lock.parse_status('{"token": "ab12", "lock_stale_after": ' + HUGE_INT + '}\nclock 1000 100 90')
    assert state.stale_after(120) == 120 and state.is_stale(120)


# ---- shape rules on JSON text ------------------------------------------------------------------------

def test_shape_rule_on_json_text_keeps_it_valid_json_and_hides_an_escaped_quoted_value():
    r = Redactor(PATTERN)
    once = r.obj({"message": 'TOKEN="x y"', "note": 'PASSWORD="hunter22" user=bob'})
    for data in (once, {"raw": 'PASSWORD="hunter22" and SECRET="s3 cr3t"'}):
        out = r(json.dumps(data))
        assert "hunter22" not in out and "s3 cr3t" not in out, out
        assert json.loads(out)                      # still valid JSON (CI parses --json)
    assert json.loads(r(json.dumps(once))) == once


# ---- URL-encoded secrets, whatever the case of the hex digits -------------------------------------

def test_url_encoded_secret_with_lowercase_hex_escapes_is_redacted():
    secret = "Sx/9+q=w&z k%tb"
    r = Redactor(PATTERN)
    r.add_env({"API_TOKEN": secret})
    lower = lambda s: re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), s)     # noqa: E731
    for encoded in (quote(secret, safe=""), quote(secret), quote_plus(secret)):
        for form in (encoded, lower(encoded)):
            assert r(f"GET /cb?x={form}&y=1") == f"GET /cb?x={REDACTED}&y=1", form


# ---- invisible characters never split a secret from the redactor, nor hide text -------------------

@pytest.mark.parametrize("invisible", ["\u00ad", "\u180e", "\u061c", "\u034f", "\ufe0f", "\U000e0041", "\u2028"])
def test_invisible_format_character_inside_a_secret_is_stripped_before_redaction(invisible):
    secret = "sentinel-zw-4f7a9c2e"
    r = Redactor(PATTERN)
    r.add_env({"SECRET_KEY": secret})
    shown = strip_controls(f"key {secret[:9]}{invisible}{secret[9:]} end")
    assert r(shown) == f"key {REDACTED} end"


# ---- scanning cost: one long line must not stall every print -----------------------------------------

def test_a_long_run_of_letters_is_redacted_in_linear_time():
    r = Redactor(PATTERN)
    text = "x" * 60_000
    start = time.process_time()
    assert r(text) == text
    # The old URL-password rule retried the scheme at every position: ~5 s here, 35 s at 100 kB.
    assert time.process_time() - start < 1.0


# ---- the release record on the host: NUL bytes and huge lines ----------------------------------------

def test_search_finds_an_old_release_in_a_record_with_a_nul_byte(tmp_path):
    path = tmp_path / "releases.jsonl"
    start = record.line("20260101T000000Z-aaaa", "start", kind="deploy")
    path.write_bytes(start.encode() + b"\n" + b"\0\0\0\n" + record.line("r2", "start").encode() + b"\n")
    out = subprocess.run(["sh", "-c", record.search(str(path), "20260101T000000Z-aaaa")],
                         capture_output=True, text=True).stdout
    assert [d["release"] for d in record.parse_search(out).lines] == ["20260101T000000Z-aaaa"]


def test_a_huge_record_line_is_cut_on_the_host_and_skipped(tmp_path):
    path = tmp_path / "releases.jsonl"
    good = record.line("r1", "start", kind="deploy")
    huge = '{"v":1,"release":"r1","event":"start","who":"' + "w" * (4 * record.MAX_LINE_BYTES) + '"}'
    path.write_text("\n".join([good, huge, good]) + "\n")
    for command, parse in ((record.read(str(path)), record.parse_read), (record.search(str(path), "r1"), record.parse_search)):
        out = subprocess.run(["sh", "-c", command], capture_output=True, text=True).stdout
        assert len(out) < 2 * record.MAX_LINE_BYTES
        got = parse(out)
        assert len(got.lines) == 2 and [n for n, _ in got.skipped] == [2]


def test_the_record_read_is_bounded_in_total(tmp_path):
    path = tmp_path / "releases.jsonl"
    line = '{"v":1,"release":"r1","event":"start","who":"' + "w" * (record.MAX_LINE_BYTES - 100) + '"}'
    with open(path, "w") as fh:
        for _ in range(2 * record.MAX_READ_BYTES // record.MAX_LINE_BYTES):
            fh.write(line + "\n")
    out = subprocess.run(["sh", "-c", record.read(str(path))], capture_output=True, text=True).stdout
    assert len(out) <= record.MAX_READ_BYTES + 100
    got = record.parse_read(out)
    total = 2 * record.MAX_READ_BYTES // record.MAX_LINE_BYTES
    assert got.numbers[-1] == total                 # line numbers still count from the end of the file


def test_every_unicode_format_character_is_stripped():
    import sys
    import unicodedata
    invisible = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) in ("Cf", "Zl", "Zp")]
    assert [hex(ord(ch)) for ch in invisible if strip_controls(f"a{ch}b") != "ab"] == []
    assert strip_controls("naïve café 日本 ✗ — ok") == "naïve café 日本 ✗ — ok"


# ---- a hostile lock holder file is shown and recorded bounded, redacted before it is cut --------------

def test_lock_holder_with_a_huge_message_is_bounded_and_redacted_before_the_cut():
    secret = "sentinel-holder-5b8e1f"
    r = Redactor(PATTERN)
    r.add_env({"SECRET_KEY": secret})
    holder = {"token": "0123456789abcdef", "who": "w" * 10_000, "pid": 10 ** 400, "stage": ["x"],
              "message": "m" * 495 + secret + "m" * 300_000, "extra": "x" * 1000}
    raw = json.dumps(holder)
    state = lock.parse_status(raw + "\nclock 1000 990 900", r)
    assert state.holder["token"] == "0123456789abcdef" and "pid" not in state.holder and "extra" not in state.holder
    text = lock.describe(state)
    assert len(text) < 1000 and "sentinel" not in text           # cut at 500: the first 5 characters of it, before
    assert "message: " + "m" * 495 in text


def test_lock_holder_token_of_the_wrong_shape_is_not_used():
    state = lock.parse_status(json.dumps({"token": "x' ; reboot", "who": "a"}) + "\nclock 1 1 1")
    assert "token" not in state.holder and state.half_created


# ---- release records whose events do not add up are never rollback evidence ---------------------------

from commands import rollback_plan as plan  # noqa: E402

SERVICES = ["backend"]


def _img(n):
    return {"backend": {"ref": "reg/backend:latest", "id": "sha256:" + str(n) * 64, "digests": []}}


def _run(rid, before, after, outcome="success", steps=("services",)):
    """The lines a real run writes, in its order."""
    return [record.line(rid, "start", kind="deploy", who="me@laptop", steps=list(steps)),
            record.line(rid, "images_before", images=before, healthy=True),
            *[record.line(rid, "step", step=s, sub=None, seconds=1.0, ok=True) for s in steps],
            record.line(rid, "images_after", images=after, healthy=True),
            record.line(rid, "end", outcome=outcome, seconds=2.0)]


def _fold(*lines):
    return record.releases(record.parse("\n".join(lines)))


def test_forged_images_after_appended_after_the_end_is_never_a_rollback_target():
    forged = record.line("R2", "images_after", images=_img(7), healthy=True)
    rels = _fold(*_run("R1", _img(1), _img(2)), *_run("R2", _img(2), _img(3)), forged)
    assert rels[1].problem == "images_after appears 2 times (two runs under one id, or forged)"
    target = plan.bare_target(rels, record.image_ids(_img(3)), SERVICES)
    assert target.images == _img(2) and "R1" in target.source        # not the forged 7, nor R2's evidence
    with pytest.raises(plan.NoTarget, match="R2 is not a --to target: its record is inconsistent"):
        plan.release_target(rels, "R2", SERVICES)


@pytest.mark.parametrize("case", ["two runs under one id", "end before start", "success without its steps",
                                  "rolled_back without the auto-rollback"])
def test_release_whose_events_do_not_add_up_is_not_evidence(case):
    good = _run("R1", _img(1), _img(2))
    lines = {
        "two runs under one id": good + _run("R1", _img(5), _img(6)),
        "end before start": [good[-1], *good[:-1]],
        "success without its steps": [l for l in good if '"event":"step"' not in l],
        "rolled_back without the auto-rollback": _run("R1", _img(1), _img(1), outcome="rolled_back"),
    }[case]
    (r,) = _fold(*lines)
    assert r.problem
    assert plan.healthy_sets([r], SERVICES) == []


def test_a_real_record_adds_up():
    from tests.conftest import captured
    rels = record.releases(record.parse(captured("releases-deploy-autorollback-rollback-to.jsonl")))
    assert [r.problem for r in rels] == ["", "", "", ""]
    assert [r.outcome for r in rels] == ["success", "rolled_back", "success", "success"]


def test_lock_takeover_is_listed_as_a_takeover_not_an_incomplete_deploy():
    (r,) = _fold(record.line("T1", "lock_takeover", who="ops@x", previous_holder={"who": "a"}))
    assert (r.kind, r.outcome, r.who, r.problem) == ("lock_takeover", "-", "ops@x", "")


def test_a_record_that_exists_but_cannot_be_read_is_reported_as_unreadable_not_as_empty(tmp_path):
    (tmp_path / "releases.jsonl").mkdir()
    out = subprocess.run(["sh", "-c", record.read(str(tmp_path / "releases.jsonl"))], capture_output=True, text=True)
    got = record.parse_read(out.stdout)
    assert out.returncode == 0 and got.unreadable and got.lines == []
    missing = subprocess.run(["sh", "-c", record.read(str(tmp_path / "none.jsonl"))], capture_output=True, text=True)
    assert not record.parse_read(missing.stdout).unreadable
