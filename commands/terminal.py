"""Host text made safe for a terminal: no escape sequences, no control characters.

Text from the host (log lines, a lock holder's message, release-record fields) is data. Printed
raw, an escape sequence in it can retitle the window (OSC), clear or rewrite what the operator
already read (CSI, CR, backspace), or hide text; bidi overrides can make a line read differently
from what it holds. Everything the tool prints passes through :func:`strip_controls`.
"""
from __future__ import annotations

import re

_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"                               # CSI (colours, cursor moves, clear screen)
    r"|\x1b[\]PX^_][^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"    # OSC, DCS, SOS, PM, APC up to BEL/ST (or the line end)
    r"|\x9b[0-?]*[ -/]*[@-~]?"                                # CSI, 8-bit form
    r"|[\x90\x98\x9d\x9e\x9f][^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"   # DCS/SOS/OSC/PM/APC, 8-bit forms
    r"|\x1b[ -/]*[0-~]?"                                      # any other ESC sequence, or a lone ESC
)
# C0 controls but tab and newline, DEL, C1 controls; and every character a terminal shows as
# nothing (Unicode's format characters, category Cf: zero-width, soft hyphen, bidi controls, tags;
# line/paragraph separators; the combining grapheme joiner; variation selectors; Hangul fillers).
# Invisible, they can sit inside a secret and split it from the redactor, or hide text.
_CONTROLS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f"
    "\u00ad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u115f\u1160\u180b-\u180f"
    "\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0000-\U000e0fff]")


def strip_controls(text: str) -> str:
    """``text`` without escape sequences and control characters; keeps newlines and tabs.
    CRLF becomes LF; a lone CR (which would let a line overwrite itself) is dropped."""
    if not text:
        return text or ""
    text = text.replace("\r\n", "\n")
    return _CONTROLS.sub("", _ESCAPES.sub("", text))
