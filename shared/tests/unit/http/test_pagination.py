"""Pagination cursors round-trip and refuse anything the service did not hand out."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import pytest

from shared.http.pagination import InvalidCursor, decode_id, decode_time_and_id, encode_cursor


def _raw(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def test_a_time_and_id_cursor_round_trips() -> None:
    moment, item = datetime(2030, 1, 2, 9, 30, tzinfo=UTC), uuid.uuid4()

    assert decode_time_and_id(encode_cursor(moment, item)) == (moment, item)
    assert decode_time_and_id(None) is None


def test_an_id_cursor_round_trips() -> None:
    item = uuid.uuid4()

    assert decode_id(encode_cursor(item)) == item
    assert decode_id(None) is None


@pytest.mark.parametrize(
    "cursor",
    [
        "!!",
        "gA",  # decodes to a byte that is not UTF-8
        _raw("no separator"),
        _raw(f"2030-01-02T09:30:00|{uuid.uuid4()}"),  # naive time
        _raw("2030-01-02T09:30:00+00:00|not-a-uuid"),
    ],
)
def test_a_cursor_the_service_did_not_hand_out_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor, match="not one this service handed out"):
        decode_time_and_id(cursor)
    with pytest.raises(InvalidCursor):
        decode_id(cursor)
