"""Pagination cursors round-trip; every string of the documented shape is a position, any
other string is refused."""

from __future__ import annotations

import base64
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from platform_runtime.http.pagination import (
    ID_PATTERN,
    TIME_AND_ID_PATTERN,
    InvalidCursor,
    decode_id,
    decode_time_and_id,
    encode_cursor,
)


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
        "gA",
        "A" * 31,  # one short
        "A" * 33,
        "A" * 31 + "=",  # padding is not part of a cursor
        "A" * 31 + "+",  # base64, not base64url
        _raw(f"2030-01-02T09:30:00+00:00|{uuid.uuid4()}"),  # the old text cursors
    ],
)
def test_a_cursor_of_another_shape_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor, match="is not the `next_cursor` of a page"):
        decode_time_and_id(cursor)
    with pytest.raises(InvalidCursor):
        decode_id(cursor)


@pytest.mark.parametrize(
    ("cursor", "moment"),
    [
        ("A" * 32, datetime(1970, 1, 1, tzinfo=UTC)),
        ("_" * 11 + "w" + "A" * 20, datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        ("f" + "_" * 31, datetime.max.replace(tzinfo=UTC)),  # past year 9999: the latest
        ("g" + "A" * 31, datetime.min.replace(tzinfo=UTC)),  # before year 1: the earliest
    ],
)
def test_every_cursor_of_the_documented_shape_is_a_position(cursor: str, moment: datetime) -> None:
    decoded = decode_time_and_id(cursor)

    assert decoded is not None
    assert decoded[0] == moment


def test_every_id_cursor_of_the_documented_shape_is_an_id() -> None:
    assert decode_id("A" * 22) == uuid.UUID(int=0)
    assert decode_id("_" * 22) == uuid.UUID(int=2**128 - 1)


def test_cursors_have_the_documented_shape() -> None:
    moment, item = datetime(2030, 1, 2, 9, 30, tzinfo=UTC), uuid.uuid4()

    assert re.fullmatch(TIME_AND_ID_PATTERN, encode_cursor(moment, item))
    assert re.fullmatch(ID_PATTERN, encode_cursor(item))
