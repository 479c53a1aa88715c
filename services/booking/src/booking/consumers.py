"""Kafka handlers: slot inventory from the timeslot service, payments and refund outcomes from
the payment service.

Each handler runs in the consumer's transaction, after the event id was claimed in the inbox,
so a redelivered event has no second effect. Payments that succeeded are applied a batch at a
time (one statement for the many bookings they confirm). Events that can never apply (a
payment for an unknown booking, or of the wrong amount; a refund outcome for an unknown
booking or refund) raise a ``BookingError``, which the consumer is told is permanent: they go
to the dead-letter topic with the reason and the partition moves on.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from booking import handlers, store
from shared.events.catalogue import (
    PaymentFailed,
    PaymentSucceeded,
    RefundFailed,
    RefundSucceeded,
    RoomDeactivated,
    RoomUpserted,
    SlotChanged,
    SlotsGenerated,
)
from shared.events.envelope import Envelope
from shared.messaging import EventConsumer, EventContext
from shared.outbox import Outbox

INVENTORY_CONSUMER = "booking-inventory"
PAYMENTS_CONSUMER = "booking-payments"


def register_inventory(consumer: EventConsumer) -> None:
    @consumer.on(RoomUpserted)
    async def room_upserted(event: RoomUpserted, ctx: EventContext) -> None:
        await store.upsert_room(ctx.session, event.room, as_of=ctx.envelope.time)

    @consumer.on(RoomDeactivated)
    async def room_deactivated(event: RoomDeactivated, ctx: EventContext) -> None:
        await store.deactivate_room(ctx.session, event.room_id, as_of=ctx.envelope.time)

    @consumer.on(SlotsGenerated)
    async def slots_generated(event: SlotsGenerated, ctx: EventContext) -> None:
        await store.upsert_slots(ctx.session, event.slots)

    @consumer.on(SlotChanged)
    async def slot_changed(event: SlotChanged, ctx: EventContext) -> None:
        await store.upsert_slots(ctx.session, [event.slot])


def register_payments(
    consumer: EventConsumer, outbox: Outbox, clock: Callable[[], datetime]
) -> None:
    @consumer.on_many(PaymentSucceeded)
    async def payments_succeeded(
        session: AsyncSession, payments: list[tuple[Envelope, PaymentSucceeded]]
    ) -> None:
        await handlers.payments_succeeded(session, outbox, payments)

    @consumer.on(PaymentFailed)
    async def payment_failed(event: PaymentFailed, ctx: EventContext) -> None:
        await handlers.payment_failed(ctx.session, outbox, event, now=clock())

    @consumer.on(RefundSucceeded)
    async def refund_succeeded(event: RefundSucceeded, ctx: EventContext) -> None:
        await handlers.refund_settled(ctx.session, event, now=clock())

    @consumer.on(RefundFailed)
    async def refund_failed(event: RefundFailed, ctx: EventContext) -> None:
        await handlers.refund_settled(ctx.session, event, now=clock())
