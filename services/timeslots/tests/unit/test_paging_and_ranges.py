"""Pure helpers of the API: search ranges and pagination cursors."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest

from timeslots import domain, store
from timeslots.handlers import search_range


def test_one_date_is_a_one_day_range() -> None:
    assert search_range(on=date(2030, 1, 2), date_from=None, date_to=None, max_days=31) == (
        date(2030, 1, 2),
        date(2030, 1, 2),
    )


def test_a_range_of_exactly_the_maximum_is_allowed_and_one_day_more_is_not() -> None:
    assert search_range(
        on=None, date_from=date(2030, 1, 1), date_to=date(2030, 1, 31), max_days=31
    ) == (date(2030, 1, 1), date(2030, 1, 31))
    with pytest.raises(domain.InvalidRange, match="32 days, more than 31"):
        search_range(on=None, date_from=date(2030, 1, 1), date_to=date(2030, 2, 1), max_days=31)


@pytest.mark.parametrize(
    ("on", "date_from", "date_to", "reason"),
    [
        (date(2030, 1, 1), date(2030, 1, 1), None, "not both"),
        (None, date(2030, 1, 1), None, "both `from` and `to`"),
        (None, None, date(2030, 1, 1), "both `from` and `to`"),
        (None, date(2030, 1, 2), date(2030, 1, 1), "ends before it starts"),
    ],
)
def test_an_ambiguous_or_reversed_range_is_refused(
    on: date | None, date_from: date | None, date_to: date | None, reason: str
) -> None:
    with pytest.raises(domain.InvalidRange, match=reason):
        search_range(on=on, date_from=date_from, date_to=date_to, max_days=31)


def test_a_slot_cursor_round_trips() -> None:
    moment, slot_id = datetime(2030, 1, 2, 9, 30, tzinfo=UTC), uuid.uuid4()

    cursor = store.encode_cursor(moment, slot_id)

    assert store.decode_slot_cursor(cursor) == (moment, slot_id)
    assert store.decode_slot_cursor(None) is None


def test_a_room_cursor_round_trips() -> None:
    room_id = uuid.uuid4()

    assert store.decode_room_cursor(store.encode_cursor(room_id)) == room_id
    assert store.decode_room_cursor(None) is None


@pytest.mark.parametrize(
    "cursor",
    [
        "!!",
        store.encode_cursor("no separator"),
        store.encode_cursor(datetime(2030, 1, 2, 9, 30), uuid.uuid4()),  # naive
        store.encode_cursor("2030-01-02T09:30:00+00:00", "not-a-uuid"),
        "gA",  # not UTF-8
    ],
)
def test_a_cursor_the_service_did_not_hand_out_is_refused(cursor: str) -> None:
    with pytest.raises(store.InvalidCursor):
        store.decode_slot_cursor(cursor)
    with pytest.raises(store.InvalidCursor):
        store.decode_room_cursor(cursor)
