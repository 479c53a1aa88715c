"""Booking events -> reminders: schedule on confirmation, move on reschedule, cancel at the end.

Each handler runs in the consumer's transaction, after the event id was claimed in the inbox,
so a redelivered event has no second effect. What a booking's reminders are follows from the
*time of the event* (its envelope's ``time``), not from when it is read, so an event read
late has the same result as one read at once; ``booking_states`` makes duplicates and
events out of order harmless. Events with impossible facts (an unknown time zone, an end
before the start) raise :class:`~reminders.domain.ImpossibleBooking`: the consumer
dead-letters them with the reason and moves on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from reminders import store
from reminders.domain import Schedule, check_booking
from shared.events.catalogue import (
    BookingCancelled,
    BookingCompleted,
    BookingConfirmed,
    BookingExpired,
    BookingNoShow,
    BookingRescheduled,
)
from shared.messaging import EventConsumer, EventContext

if TYPE_CHECKING:
    from prometheus_client import Counter

log = logging.getLogger(__name__)

CONSUMER = "reminders-bookings"


def register(consumer: EventConsumer, schedule: Schedule, scheduled: Counter) -> None:
    @consumer.on(BookingConfirmed)
    async def confirmed(event: BookingConfirmed, ctx: EventContext) -> None:
        check_booking(
            starts_at=event.starts_at, ends_at=event.ends_at, time_zone=event.room_time_zone
        )
        facts = store.BookingFacts(
            booking_id=event.booking_id,
            user_id=event.user_id,
            contact_email=str(event.contact.email),
            contact_phone=event.contact.phone,
            starts_at=event.starts_at,
            ends_at=event.ends_at,
            room_name=event.room_name,
            room_time_zone=event.room_time_zone,
        )
        as_of = ctx.envelope.time
        if not await store.remember_booking(ctx.session, facts, as_of=as_of):
            log.info("booking %s is known already: nothing to schedule", event.booking_id)
            return
        planned = schedule.plan(
            starts_at=event.starts_at, has_phone=event.contact.phone is not None, as_of=as_of
        )
        await store.add_reminders(ctx.session, facts, planned)
        for channel in planned:
            scheduled.labels(channel.value).inc()

    @consumer.on(BookingRescheduled)
    async def rescheduled(event: BookingRescheduled, ctx: EventContext) -> None:
        check_booking(
            starts_at=event.new_starts_at,
            ends_at=event.new_ends_at,
            time_zone=event.room_time_zone,
        )
        as_of = ctx.envelope.time
        facts = await store.move_booking(
            ctx.session,
            event.booking_id,
            starts_at=event.new_starts_at,
            ends_at=event.new_ends_at,
            room_time_zone=event.room_time_zone,
            as_of=as_of,
        )
        if facts is None:
            log.info("reschedule of booking %s is stale or for no live booking", event.booking_id)
            return
        planned = schedule.plan(
            starts_at=facts.starts_at, has_phone=facts.contact_phone is not None, as_of=as_of
        )
        await store.replan(ctx.session, facts, planned)

    async def ended(
        event: BookingCancelled | BookingCompleted | BookingNoShow | BookingExpired,
        ctx: EventContext,
    ) -> None:
        await store.end_booking(ctx.session, event.booking_id, as_of=ctx.envelope.time)
        await store.cancel_live(ctx.session, event.booking_id)

    consumer.on(BookingCancelled)(ended)
    consumer.on(BookingCompleted)(ended)
    consumer.on(BookingNoShow)(ended)
    consumer.on(BookingExpired)(ended)
