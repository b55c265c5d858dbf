"""Text from outside (LLM-written labels, file contents) made safe to print on a terminal or in the TUI."""

from __future__ import annotations

import re

# Escape sequences whole (so no payload is left behind): OSC (window title, OSC 52 clipboard, hyperlinks) up to BEL
# or ST, CSI (cursor moves, clearing, colours), other two-byte ESC sequences; and their 8-bit C1 forms.
_SEQUENCES = re.compile(
    r"(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC
    r"|(?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c]*(?:\x1b\\|\x9c)?"  # DCS, SOS, PM, APC strings
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"  # CSI
    r"|\x1b[ -/]*[0-~]?"  # other ESC sequences
)
# Every other C0/C1 control (carriage return and backspace can overwrite what was printed) but tab and newline.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` without terminal escape sequences and control characters (tab and newline kept)."""
    return _CONTROLS.sub("", _SEQUENCES.sub("", text))
