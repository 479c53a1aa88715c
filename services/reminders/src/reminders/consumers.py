"""Kafka handlers of the reminders service: booking events and waitlist offers, each applied
by its use case in :mod:`reminders.handlers`, in the consumer's transaction after the inbox
claimed the event.
Events with impossible facts are dead-lettered with the reason (the consumer is told
``ImpossibleBooking`` is permanent) and the partition moves on.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from booking_contracts.catalogue import (
    BookingCancelled,
    BookingCompleted,
    BookingConfirmed,
    BookingExpired,
    BookingNoShow,
    BookingRescheduled,
    WaitlistExpired,
    WaitlistLeft,
    WaitlistOfferLapsed,
    WaitlistOfferMade,
    WaitlistOfferTaken,
)
from booking_contracts.envelope import Envelope
from booking_contracts.money import utc_now
from platform_runtime.messaging import EventConsumer, EventContext
from reminders import handlers
from reminders.domain import Schedule
from reminders.handlers import Store

if TYPE_CHECKING:
    from prometheus_client import Counter

CONSUMER = "reminders-bookings"

S = TypeVar("S")


def register(
    consumer: EventConsumer[S],
    store_of: Callable[[S], Store],
    schedule: Schedule,
    scheduled: Counter,
    clock: Callable[[], datetime] = utc_now,
) -> None:
    @consumer.on_many(BookingConfirmed)
    async def confirmed(tx: S, confirmations: list[tuple[Envelope, BookingConfirmed]]) -> None:
        await handlers.confirm_bookings(
            store_of(tx), confirmations, schedule=schedule, scheduled=scheduled
        )

    @consumer.on(BookingRescheduled)
    async def rescheduled(event: BookingRescheduled, ctx: EventContext[S]) -> None:
        await handlers.reschedule(
            store_of(ctx.session), event, as_of=ctx.envelope.time, schedule=schedule
        )

    async def ended(
        event: BookingCancelled | BookingCompleted | BookingNoShow | BookingExpired,
        ctx: EventContext[S],
    ) -> None:
        await handlers.end(
            store_of(ctx.session),
            event.booking_id,
            version=event.booking_version or 0,
            as_of=ctx.envelope.time,
        )

    consumer.on(BookingCancelled)(ended)
    consumer.on(BookingCompleted)(ended)
    consumer.on(BookingNoShow)(ended)
    consumer.on(BookingExpired)(ended)

    @consumer.on(WaitlistOfferMade)
    async def offer_made(event: WaitlistOfferMade, ctx: EventContext[S]) -> None:
        await handlers.offer_made(
            store_of(ctx.session), event, as_of=ctx.envelope.time, now=clock()
        )

    async def offer_over(
        event: WaitlistOfferTaken | WaitlistOfferLapsed | WaitlistLeft | WaitlistExpired,
        ctx: EventContext[S],
    ) -> None:
        await handlers.offer_over(store_of(ctx.session), event.entry_id)

    consumer.on(WaitlistOfferTaken)(offer_over)
    consumer.on(WaitlistOfferLapsed)(offer_over)
    consumer.on(WaitlistLeft)(offer_over)
    consumer.on(WaitlistExpired)(offer_over)
