"""Text that people typed and other systems render: control characters, and one-line labels.

A room's name travels from the timeslots API through events into the reminder emails (their
``Subject`` header, the body, the calendar entry). There a line break ends the header and
starts another, so a name carrying one could add headers or a body of its own choosing. Hence
two rules, one on each side:

- what takes text in refuses control characters (:func:`refuse_control_characters`, used by
  the request schemas), with line breaks allowed only where a text is meant to have lines;
- what renders text that came by event makes it one line again (:func:`one_line`), since an
  event may carry older data or come from another producer.

A *control character* here is one of Unicode's category ``Cc`` (C0: U+0000-U+001F, DEL, C1:
U+0080-U+009F) or a line or paragraph separator (U+2028, U+2029), which many programs show
as a line break.
"""

from __future__ import annotations

import re
from typing import Final

LINE_BREAKS: Final = "\n\r\u2028\u2029"
"""The control characters that end a line."""

_CONTROL_CLASS: Final = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
_CONTROL: Final = re.compile(f"[{_CONTROL_CLASS}]")
_CONTROL_RUN: Final = re.compile(f"[{_CONTROL_CLASS}]+")


def control_characters(value: str, *, allowed: str = "") -> list[str]:
    """The distinct control characters of ``value`` that are not in ``allowed``, in the order
    they first appear (empty when the text is clean)."""
    found = dict.fromkeys(_CONTROL.findall(value))
    return [char for char in found if char not in allowed]


def refuse_control_characters(value: str, *, allowed: str = "") -> str:
    """``value`` itself if it has no control character but those ``allowed``; else a
    ``ValueError`` that names them by code point (a validator for request schemas)."""
    found = control_characters(value, allowed=allowed)
    if found:
        codes = ", ".join(f"U+{ord(char):04X}" for char in found)
        raise ValueError(f"must not contain control characters (found {codes})")
    return value


_CONTROL_CODES: Final = (*range(0x00, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)


def text_pattern(*, allowed: str = "") -> str:
    """A JSON Schema pattern stating :func:`refuse_control_characters` with ``allowed``: no
    control character but those."""
    codes = [code for code in _CONTROL_CODES if chr(code) not in allowed]
    ranges: list[list[int]] = []
    for code in codes:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    excluded = "".join(
        f"\\u{low:04x}" if low == high else f"\\u{low:04x}-\\u{high:04x}" for low, high in ranges
    )
    return f"^[^{excluded}]*$"


def one_line(value: str) -> str:
    """``value`` with every run of control characters replaced by one space: a label that
    is safe to write on one line of a header, a text message or a calendar entry."""
    return _CONTROL_RUN.sub(" ", value)
