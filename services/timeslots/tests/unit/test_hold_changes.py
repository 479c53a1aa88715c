"""What each event read from ``booking.events`` does to a slot's holds (no I/O): a booking
holds its place from its creation to its end; a waitlist offer holds the freed place from
the offer until it is taken, lapses or is declined."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from booking_contracts.catalogue import (
    Actor,
    BookingCancelled,
    BookingCreated,
    BookingExpired,
    BookingRescheduled,
    Contact,
    WaitlistEntryEnd,
    WaitlistLeft,
    WaitlistOfferLapsed,
    WaitlistOfferMade,
    WaitlistOfferTaken,
)
from booking_contracts.money import Money
from timeslots.consumers import HoldEvent, hold_change
from timeslots.domain import Hold, HoldChange, Move, Release

SLOT, OTHER, ROOM = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
BOOKING, ENTRY = uuid.uuid4(), uuid.uuid4()
STARTS = datetime(2030, 3, 4, 9, tzinfo=UTC)
ENTRY_FIELDS = {"entry_id": ENTRY, "slot_id": SLOT, "room_id": ROOM, "user_id": "waiter-1"}
BOOKING_FIELDS = {"booking_id": BOOKING, "user_id": "user-1", "room_id": ROOM}

OFFER = WaitlistOfferMade(
    **ENTRY_FIELDS,
    offer_expires_at=STARTS - timedelta(hours=1),
    starts_at=STARTS,
    ends_at=STARTS + timedelta(hours=1),
    room_name="Room 7",
    room_time_zone="Europe/Berlin",
    contact=Contact(email="waiter-1@example.com"),
)
CASES: list[tuple[HoldEvent, HoldChange | None]] = [
    (
        BookingCreated(
            **BOOKING_FIELDS,
            slot_id=SLOT,
            starts_at=STARTS,
            ends_at=STARTS + timedelta(hours=1),
            price=Money.of("15.00", "EUR"),
            hold_expires_at=STARTS - timedelta(days=1),
        ),
        Hold(BOOKING, SLOT),
    ),
    (
        BookingCancelled(**BOOKING_FIELDS, slot_id=SLOT, cancelled_by=Actor.USER),
        Release(BOOKING, SLOT),
    ),
    (BookingExpired(**BOOKING_FIELDS, slot_id=SLOT), Release(BOOKING, SLOT)),
    (
        BookingRescheduled(
            **BOOKING_FIELDS,
            old_slot_id=SLOT,
            new_slot_id=OTHER,
            old_starts_at=STARTS,
            new_starts_at=STARTS + timedelta(hours=1),
            new_ends_at=STARTS + timedelta(hours=2),
            room_time_zone="Europe/Berlin",
            price_difference=Money.of("0.00", "EUR"),
        ),
        Move(BOOKING, SLOT, OTHER),
    ),
    (OFFER, Hold(ENTRY, SLOT)),
    (WaitlistOfferTaken(**ENTRY_FIELDS, booking_id=BOOKING), Release(ENTRY, SLOT)),
    (WaitlistOfferLapsed(**ENTRY_FIELDS), Release(ENTRY, SLOT)),
    (
        WaitlistLeft(**ENTRY_FIELDS, reason=WaitlistEntryEnd.LEFT, declined_offer=True),
        Release(ENTRY, SLOT),
    ),
    (WaitlistLeft(**ENTRY_FIELDS, reason=WaitlistEntryEnd.LEFT), None),
    (WaitlistLeft(**ENTRY_FIELDS, reason=WaitlistEntryEnd.SKIPPED), None),
]


@pytest.mark.parametrize(("event", "change"), CASES, ids=lambda v: type(v).__name__)
def test_each_event_changes_the_hold_of_its_booking_or_offer(
    event: HoldEvent, change: HoldChange | None
) -> None:
    assert hold_change(event) == change
