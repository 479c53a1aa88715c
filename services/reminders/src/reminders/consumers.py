"""Kafka handlers of the reminders service: booking events, each applied by its use case in
:mod:`reminders.handlers`, in the consumer's transaction after the inbox claimed the event.
Events with impossible facts are dead-lettered with the reason (the consumer is told
``ImpossibleBooking`` is permanent) and the partition moves on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from booking_contracts.catalogue import (
    BookingCancelled,
    BookingCompleted,
    BookingConfirmed,
    BookingExpired,
    BookingNoShow,
    BookingRescheduled,
)
from booking_contracts.envelope import Envelope
from reminders import handlers
from reminders.domain import Schedule
from shared.messaging import EventConsumer, EventContext

if TYPE_CHECKING:
    from prometheus_client import Counter
    from sqlalchemy.ext.asyncio import AsyncSession

CONSUMER = "reminders-bookings"


def register(consumer: EventConsumer, schedule: Schedule, scheduled: Counter) -> None:
    @consumer.on_many(BookingConfirmed)
    async def confirmed(
        session: AsyncSession, confirmations: list[tuple[Envelope, BookingConfirmed]]
    ) -> None:
        await handlers.confirm_bookings(
            session, confirmations, schedule=schedule, scheduled=scheduled
        )

    @consumer.on(BookingRescheduled)
    async def rescheduled(event: BookingRescheduled, ctx: EventContext) -> None:
        await handlers.reschedule(ctx.session, event, as_of=ctx.envelope.time, schedule=schedule)

    async def ended(
        event: BookingCancelled | BookingCompleted | BookingNoShow | BookingExpired,
        ctx: EventContext,
    ) -> None:
        await handlers.end(
            ctx.session,
            event.booking_id,
            version=event.booking_version or 0,
            as_of=ctx.envelope.time,
        )

    consumer.on(BookingCancelled)(ended)
    consumer.on(BookingCompleted)(ended)
    consumer.on(BookingNoShow)(ended)
    consumer.on(BookingExpired)(ended)
