"""Pagination cursors round-trip and refuse anything the service did not hand out."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.http.pagination import InvalidCursor, decode_id, decode_time_and_id, encode_cursor


def _raw(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def test_a_time_and_id_cursor_round_trips() -> None:
    moment, item = datetime(2030, 1, 2, 9, 30, tzinfo=UTC), uuid.uuid4()

    assert decode_time_and_id(encode_cursor(moment, item)) == (moment, item)
    assert decode_time_and_id(None) is None


def test_a_time_cursor_comes_back_in_utc() -> None:
    moment, item = datetime(2030, 1, 2, 10, 30, tzinfo=timezone(timedelta(hours=1))), uuid.uuid4()

    decoded = decode_time_and_id(encode_cursor(moment, item))

    assert decoded is not None
    assert decoded[0] == moment
    assert decoded[0].utcoffset() == timedelta(0)


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
        _raw(f"0001-01-01T00:00:00+01:00|{uuid.uuid4()}"),  # no such instant in UTC
        _raw(f"9999-12-31T23:30:00-01:00|{uuid.uuid4()}"),  # nor this one
    ],
)
def test_a_cursor_the_service_did_not_hand_out_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor, match="not one this service handed out"):
        decode_time_and_id(cursor)
    with pytest.raises(InvalidCursor):
        decode_id(cursor)
