"""Kafka handlers: booking events keep each slot's booked count in step with the bookings.

The booking service decides bookings; this service only mirrors how many places each slot
has taken, for its availability search. Each handler records the booking's hold on a slot
and recounts the slots it touched, so duplicates, repeats and releases seen before their
creation all end in the same count.
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from shared.events.catalogue import (
    BookingCancelled,
    BookingCreated,
    BookingExpired,
    BookingRescheduled,
)
from shared.messaging import EventConsumer, EventContext, PermanentEventError
from timeslots import store

CONSUMER_NAME = "timeslots-booking-counts"


def register(consumer: EventConsumer) -> None:
    consumer.on(BookingCreated)(on_booking_created)
    consumer.on(BookingCancelled)(on_place_released)
    consumer.on(BookingExpired)(on_place_released)
    consumer.on(BookingRescheduled)(on_booking_rescheduled)


async def on_booking_created(event: BookingCreated, ctx: EventContext) -> None:
    await _known_slot(ctx.session, event.slot_id)
    await store.hold(ctx.session, event.booking_id, event.slot_id)


async def on_place_released(event: BookingCancelled | BookingExpired, ctx: EventContext) -> None:
    await _known_slot(ctx.session, event.slot_id)
    await store.release(ctx.session, event.booking_id, event.slot_id)


async def on_booking_rescheduled(event: BookingRescheduled, ctx: EventContext) -> None:
    await _known_slot(ctx.session, event.old_slot_id)
    await _known_slot(ctx.session, event.new_slot_id)
    await store.move_hold(ctx.session, event.booking_id, event.old_slot_id, event.new_slot_id)


async def _known_slot(session: AsyncSession, slot_id: UUID) -> None:
    if not await store.slot_exists(session, slot_id):
        raise PermanentEventError(f"slot {slot_id} is not a slot of this service")
