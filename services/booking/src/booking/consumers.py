"""Kafka handlers: slot inventory and each room's rules from the timeslot service, payments
and refund outcomes from the payment service.

Each handler runs in the consumer's transaction, after the event id was claimed in the inbox,
so a redelivered event has no second effect. Payments that succeeded are applied a batch at a
time (one statement for the many bookings they confirm).

Money is never kept: a payment no booking takes (for an unknown booking, or of another amount
or currency than the booking's price) is recorded as a stray payment and returned in full
(``RefundRequested``, once per payment id), logged at WARNING and counted in
``payments_unapplied_total{cause}`` once the transaction commits; the outcome of that refund
settles the stray payment. Events that can never apply (a refund outcome for an unknown
booking or refund; a payment that returns nothing, or that contradicts the payment applied
to its booking) raise a ``BookingError``, which the consumer is told is permanent: they go to
the dead-letter topic with the reason and the partition moves on.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from booking import handlers
from booking.handlers import Store
from booking_contracts.catalogue import (
    PaymentFailed,
    PaymentSucceeded,
    RefundFailed,
    RefundSucceeded,
    RoomDeactivated,
    RoomRulesSet,
    RoomUpserted,
    SlotChanged,
    SlotsGenerated,
)
from booking_contracts.envelope import Envelope
from platform_runtime.messaging import ConsumerMetrics, EventConsumer, EventContext
from platform_runtime.outbox import Outbox

INVENTORY_CONSUMER = "booking-inventory"
PAYMENTS_CONSUMER = "booking-payments"


S = TypeVar("S")


def register_inventory(
    consumer: EventConsumer[S],
    store_of: Callable[[S], Store],
    outbox: Outbox,
    clock: Callable[[], datetime],
) -> None:
    @consumer.on(RoomUpserted)
    async def room_upserted(event: RoomUpserted, ctx: EventContext[S]) -> None:
        await store_of(ctx.session).upsert_room(
            event.room, version=event.room_version or 0, as_of=ctx.envelope.time
        )

    @consumer.on(RoomDeactivated)
    async def room_deactivated(event: RoomDeactivated, ctx: EventContext[S]) -> None:
        await store_of(ctx.session).deactivate_room(
            event.room_id, version=event.room_version or 0, as_of=ctx.envelope.time
        )

    @consumer.on(RoomRulesSet)
    async def room_rules_set(event: RoomRulesSet, ctx: EventContext[S]) -> None:
        await store_of(ctx.session).set_room_rules(
            event.room_id,
            event.rules,
            version=event.room_version,
            as_of=ctx.envelope.time,
        )

    @consumer.on(SlotsGenerated)
    async def slots_generated(event: SlotsGenerated, ctx: EventContext[S]) -> None:
        await store_of(ctx.session).upsert_slots(event.slots)
        # a slot regenerated with more places: its line gets them first
        await handlers.offer_new_capacity(
            store_of(ctx.session), outbox, [s.slot_id for s in event.slots], now=clock()
        )

    @consumer.on(SlotChanged)
    async def slot_changed(event: SlotChanged, ctx: EventContext[S]) -> None:
        await store_of(ctx.session).upsert_slots([event.slot])
        await handlers.offer_new_capacity(
            store_of(ctx.session), outbox, [event.slot.slot_id], now=clock()
        )


def register_payments(
    consumer: EventConsumer[S],
    store_of: Callable[[S], Store],
    outbox: Outbox,
    clock: Callable[[], datetime],
    metrics: ConsumerMetrics | None = None,
) -> None:
    unapplied = None
    if metrics is not None:
        unapplied = metrics.counter(
            "payments_unapplied",
            "Payments no booking took, recorded and returned in full, by cause",
            ["cause"],
        )
        for cause in handlers.UnappliedCause:
            unapplied.labels(cause.value)  # each cause is reported from 0 on

    @consumer.on_many(PaymentSucceeded)
    async def payments_succeeded(tx: S, payments: list[tuple[Envelope, PaymentSucceeded]]) -> None:
        store = store_of(tx)
        returned = await handlers.payments_succeeded(store, outbox, payments)
        if returned and unapplied is not None:
            counter = unapplied

            def count() -> None:  # once committed: a batch applied again counts once
                for payment in returned:
                    counter.labels(payment.cause.value).inc()

            store.after_commit(count)

    @consumer.on(PaymentFailed)
    async def payment_failed(event: PaymentFailed, ctx: EventContext[S]) -> None:
        await handlers.payment_failed(store_of(ctx.session), outbox, event, now=clock())

    @consumer.on(RefundSucceeded)
    async def refund_succeeded(event: RefundSucceeded, ctx: EventContext[S]) -> None:
        await handlers.refund_settled(store_of(ctx.session), event, now=clock())

    @consumer.on(RefundFailed)
    async def refund_failed(event: RefundFailed, ctx: EventContext[S]) -> None:
        await handlers.refund_settled(store_of(ctx.session), event, now=clock())
