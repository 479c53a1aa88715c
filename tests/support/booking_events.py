"""Booking and waitlist events as the booking service publishes them, for the tests of the
services that read them."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from booking_contracts.catalogue import (
    Actor,
    BookingCancelled,
    BookingConfirmed,
    BookingRescheduled,
    Contact,
    WaitlistOfferMade,
)
from booking_contracts.money import Money

HOUR = timedelta(hours=1)


def confirmed(
    starts_at: datetime,
    *,
    phone: str | None = None,
    booking_id: uuid.UUID | None = None,
    time_zone: str = "Europe/Berlin",
    room_name: str = "Room 7",
    minutes: int = 60,
) -> BookingConfirmed:
    booking_id = booking_id or uuid.uuid4()
    return BookingConfirmed(
        booking_id=booking_id,
        user_id="user-1",
        slot_id=uuid.uuid4(),
        room_id=uuid.uuid4(),
        room_name=room_name,
        room_time_zone=time_zone,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=minutes),
        contact=Contact(email=f"{booking_id}@example.com", phone=phone),
        payment_id=f"pay-{booking_id}",
        price=Money.of("20.00", "EUR"),
    )


def cancelled(booking: BookingConfirmed) -> BookingCancelled:
    return BookingCancelled(
        booking_id=booking.booking_id,
        user_id=booking.user_id,
        slot_id=booking.slot_id,
        room_id=booking.room_id,
        cancelled_by=Actor.USER,
    )


def rescheduled(booking: BookingConfirmed, new_start: datetime) -> BookingRescheduled:
    return BookingRescheduled(
        booking_id=booking.booking_id,
        user_id=booking.user_id,
        room_id=booking.room_id,
        old_slot_id=booking.slot_id,
        new_slot_id=uuid.uuid4(),
        old_starts_at=booking.starts_at,
        new_starts_at=new_start,
        new_ends_at=new_start + HOUR,
        room_time_zone=booking.room_time_zone,
        price_difference=Money.of("0.00", "EUR"),
    )


def offer(starts_at: datetime, *, expires_at: datetime) -> WaitlistOfferMade:
    """An offer of a place in New York, held until ``expires_at``."""
    entry_id = uuid.uuid4()
    return WaitlistOfferMade(
        entry_id=entry_id,
        slot_id=uuid.uuid4(),
        room_id=uuid.uuid4(),
        user_id="waiter-1",
        offer_expires_at=expires_at,
        starts_at=starts_at,
        ends_at=starts_at + HOUR,
        room_name="Studio 3",
        room_time_zone="America/New_York",
        contact=Contact(email=f"{entry_id}@example.com"),
    )
