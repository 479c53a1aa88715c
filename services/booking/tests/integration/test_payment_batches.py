"""Payments applied a batch at a time end exactly as if applied one by one."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from booking import domain, handlers
from booking.store import SqlStore
from booking_contracts.catalogue import PaymentSucceeded
from booking_contracts.envelope import Envelope
from booking_contracts.money import Money
from platform_runtime.http.context import runtime_of
from platform_runtime.messaging import BatchItemError

from .conftest import Service, types, user

BROKERS = ("memory", "kafka")
"""The in-memory broker and the real one: this module is about delivery too (batches: how the
consumer cuts a partition's records into transactions)."""


def payment(
    booking: dict[str, Any], *, payment_id: str | None = None, amount: str | None = None
) -> tuple[Envelope, PaymentSucceeded]:
    price = booking["price"]
    event = PaymentSucceeded(
        booking_id=booking["id"],
        payment_id=payment_id or f"pay-{booking['id']}",
        amount=Money.of(amount or price["amount"], price["currency"]),
    )
    return Envelope.wrap(event, source="/payments", correlation_id=f"order-{booking['id']}"), event


async def apply(
    service: Service, payments: list[tuple[Envelope, PaymentSucceeded]]
) -> list[handlers.Unapplied]:
    runtime = runtime_of(service.app)
    async with runtime.sessions.begin() as session:
        return await handlers.payments_succeeded(SqlStore(session), runtime.outbox, payments)


async def test_a_batch_confirms_each_booking_and_answers_each_payment_on_its_own(
    service: Service,
) -> None:
    room = await service.room(name="Batch room", time_zone="Asia/Tokyo")
    slots = await service.slots(room, 4)
    first, second, cancelled, paid_twice = [
        await service.booking(slot, f"batch-{i}") for i, slot in enumerate(slots)
    ]
    await service.http.post(f"/bookings/{cancelled['id']}/cancel", headers=user("batch-2"))
    batch = [
        payment(first),
        payment(paid_twice),
        payment(cancelled),  # refunded: the booking is cancelled
        payment(second),
        payment(paid_twice, payment_id="pay-again"),  # refunded: paid earlier in this batch
        payment(first),  # the same payment again (a new event id): nothing more
    ]

    await apply(service, batch)

    for booking, paid in ((first, "paid"), (second, "paid"), (paid_twice, "refund_pending")):
        row = await service.status(booking["id"], "confirmed")
        assert (row["payment_status"], row["payment_id"]) == (paid, f"pay-{booking['id']}")
    events = {b["id"]: await service.events(b["id"], at_least=2) for b in (first, second)}
    for booking in (first, second):
        assert types(events[booking["id"]]) == ["BookingCreated.v1", "BookingConfirmed.v1"]
        confirmed = events[booking["id"]][1]
        assert confirmed["correlationid"] == f"order-{booking['id']}"
        assert confirmed["data"]["room_time_zone"] == "Asia/Tokyo"
    causes = {str(envelope.id) for envelope, _ in batch[:1] + batch[3:4]}
    assert {events[b["id"]][1]["causationid"] for b in (first, second)} == causes
    twice = await service.events(paid_twice["id"], at_least=3)
    assert types(twice) == ["BookingCreated.v1", "BookingConfirmed.v1", "RefundRequested.v1"]
    assert twice[2]["data"]["payment_id"] == "pay-again"
    assert twice[2]["causationid"] == str(batch[4][0].id)
    refunded = await service.row(
        "SELECT status, payment_status FROM bookings WHERE id = $1", uuid.UUID(cancelled["id"])
    )
    assert refunded == {"status": "cancelled", "payment_status": "refund_pending"}


async def test_a_payment_that_cannot_apply_is_named_and_nothing_of_the_batch_is_kept(
    service: Service,
) -> None:
    room = await service.room()
    good, paid = [await service.booking(slot, "batch-x") for slot in await service.slots(room, 2)]
    await service.pay(paid)
    await service.status(paid["id"], "confirmed")

    with pytest.raises(BatchItemError) as raised:  # its own payment, reported as another amount
        await apply(service, [payment(good), payment(paid, amount="0.01")])

    assert raised.value.index == 1
    assert isinstance(raised.value.error, domain.BookingError)
    assert "contradicts the same payment" in str(raised.value.error)
    row = await service.row("SELECT status FROM bookings WHERE id = $1", uuid.UUID(good["id"]))
    assert row == {"status": "pending"}


async def test_a_batch_returns_the_payments_no_booking_takes_once_and_confirms_the_rest(
    service: Service,
) -> None:
    room = await service.room()
    good, wrong = [await service.booking(slot, "batch-y") for slot in await service.slots(room, 2)]
    ghost: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "price": {"amount": "5.00", "currency": "EUR"},
    }
    batch = [payment(wrong, amount="0.50"), payment(good), payment(ghost)]

    returned = await apply(service, batch)
    again = await apply(service, batch)  # the same payments, delivered again

    assert [(u.payment_id, u.cause) for u in returned] == [
        (f"pay-{wrong['id']}", handlers.UnappliedCause.WRONG_AMOUNT),
        (f"pay-{ghost['id']}", handlers.UnappliedCause.UNKNOWN_BOOKING),
    ]
    assert again == []
    await service.status(good["id"], "confirmed")
    await service.status(wrong["id"], "pending")
    strays = await service.db.fetch(
        "SELECT payment_id, amount FROM stray_payments WHERE payment_id = ANY($1) ORDER BY amount",
        [f"pay-{wrong['id']}", f"pay-{ghost['id']}"],
    )
    assert [(r["payment_id"], str(r["amount"])) for r in strays] == [
        (f"pay-{wrong['id']}", "0.5000"),
        (f"pay-{ghost['id']}", "5.0000"),
    ]


@pytest.mark.parametrize("amount", ["0.00", "-5.00"])
async def test_a_payment_of_nothing_that_no_booking_takes_is_named_not_returned(
    service: Service, amount: str
) -> None:
    room = await service.room()
    (slot,) = await service.slots(room)
    booking = await service.booking(slot, "batch-z")
    ghost: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "price": {"amount": "5.00", "currency": "EUR"},
    }

    with pytest.raises(BatchItemError) as wrong:
        await apply(service, [payment(booking, amount=amount)])
    with pytest.raises(BatchItemError) as unknown:
        await apply(service, [payment(ghost, amount=amount)])

    assert isinstance(wrong.value.error, handlers.PaymentMismatch)
    assert "returns nothing" in str(wrong.value.error)
    assert isinstance(unknown.value.error, domain.BookingNotFound)
    strays = await service.db.fetchval(
        "SELECT count(*) FROM stray_payments WHERE booking_id = ANY($1)",
        [uuid.UUID(booking["id"]), uuid.UUID(ghost["id"])],
    )
    assert strays == 0
