"""Control characters in text people typed, and one-line labels of text that came by event."""

from __future__ import annotations

import pytest

from platform_runtime.text import (
    LINE_BREAKS,
    control_characters,
    one_line,
    refuse_control_characters,
)


@pytest.mark.parametrize(
    "text",
    [
        "Room 7",
        "Salle Étoile — 3ᵉ",
        "会議室",
        # Persian with a zero-width non-joiner: a format character, which such names need
        "\u0646\u0627\u0645\u200c\u0627\u062a\u0627\u0642",
        "emoji 🙂 ok",
        "",
    ],
)
def test_text_without_control_characters_passes_unchanged(text: str) -> None:
    assert control_characters(text) == []
    assert refuse_control_characters(text) == text
    assert one_line(text) == text


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("a\r\nb", ["\r", "\n"]),
        ("nul\x00", ["\x00"]),
        ("\x1b[31mred\x1b[0m", ["\x1b"]),
        ("tab\there", ["\t"]),
        ("del\x7f and c1\x85", ["\x7f", "\x85"]),
        ("line\u2028para\u2029", ["\u2028", "\u2029"]),
    ],
)
def test_every_kind_of_control_character_is_found_once_in_order(
    text: str, found: list[str]
) -> None:
    assert control_characters(text) == found


def test_a_refusal_names_the_characters_by_code_point() -> None:
    with pytest.raises(ValueError, match=r"control characters \(found U\+000D, U\+000A\)"):
        refuse_control_characters("Room 9\r\nBcc: everyone@example.com")


def test_line_breaks_and_tabs_pass_where_allowed_and_nothing_else_does() -> None:
    allowed = "\t" + LINE_BREAKS
    text = "First floor.\r\nAccess:\tramp\u2028end"

    assert refuse_control_characters(text, allowed=allowed) == text
    with pytest.raises(ValueError, match=r"U\+0007"):
        refuse_control_characters(text + "\a", allowed=allowed)


def test_one_line_turns_each_run_of_control_characters_into_one_space() -> None:
    assert one_line("Room 9\r\nBcc: x\r\n\r\nbody\x00\t!") == "Room 9 Bcc: x body !"
