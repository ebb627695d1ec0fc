"""Issue 7 item 12: host text reaches the terminal without escape sequences or control characters."""
from commands.terminal import strip_controls

HOSTILE = ("held by \x1b]0;owned\x07mallory\x1b[2J\x1b[H, \x1bPq#0;2;0;0;0\x1b\\stage\x9b31m prod\r"
           "fake line\x08\x08\x07 \u202eevil\u202c \x1b(0x\x1bc end\x00\x7f")


def test_escape_sequences_and_control_characters_are_stripped():
    out = strip_controls(HOSTILE)
    assert out == "held by mallory, stage prodfake line evil x end"
    assert not any(ord(ch) < 32 or 0x7f <= ord(ch) <= 0x9f for ch in out)


def test_newlines_tabs_and_ordinary_unicode_stay():
    text = "a\tb\nc ✗ é 日本\r\nd"
    assert strip_controls(text) == "a\tb\nc ✗ é 日本\nd"


def test_an_unterminated_osc_stops_at_the_line_end():
    assert strip_controls("one \x1b]0;title\ntwo") == "one \ntwo"
