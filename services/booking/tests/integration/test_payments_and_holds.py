"""Payment events confirm, refund or cancel; a payment no booking takes is returned in full;
unpaid holds expire; all of it exactly once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

from booking import handlers
from booking.store import SqlStore
from booking_contracts import topics
from booking_contracts.catalogue import PaymentSucceeded, RefundRequested, RefundSucceeded
from booking_contracts.envelope import Envelope
from booking_contracts.money import Money
from platform_runtime.http.context import runtime_of
from platform_tooling.standins import REFUND_FAILURE, decide_refund

from .conftest import START, Service, types, user


async def test_a_payment_confirms_the_booking_and_announces_what_reminders_need(
    service: Service,
) -> None:
    room = await service.room(name="Studio 3", time_zone="America/New_York")
    (slot,) = await service.slots(room)
    booking = await service.booking(slot)

    await service.pay(booking)
    row = await service.status(booking["id"], "confirmed")
    read = await service.http.get(f"/bookings/{booking['id']}", headers=user("user-1"))
    events = await service.events(booking["id"], at_least=2)

    assert row["payment_status"] == "paid"
    assert read.json()["payment_id"] == f"pay-{booking['id']}"
    assert read.json()["hold_expires_at"] is None
    assert types(events) == ["BookingCreated.v1", "BookingConfirmed.v1"]
    confirmed = events[1]["data"]
    assert confirmed["room_name"] == "Studio 3"
    assert confirmed["room_time_zone"] == "America/New_York"
    assert confirmed["contact"] == {"email": "user-1@example.com", "phone": None}
    assert confirmed["starts_at"] == booking["starts_at"]


async def test_the_same_payment_delivered_again_changes_nothing(service: Service) -> None:
    room = await service.room()
    (slot,) = await service.slots(room)
    booking = await service.booking(slot)
    first = await service.pay(booking)

    await service.status(booking["id"], "confirmed")
    await service.pay(booking)  # same payment, new event id (a payment-service retry)
    await service.publish_raw(topics.PAYMENT_EVENTS, first)  # the very same record again
    events = await service.events(booking["id"], at_least=2, settle_s=1.5)

    assert types(events) == ["BookingCreated.v1", "BookingConfirmed.v1"]


async def test_a_payment_for_an_expired_booking_is_refunded_not_confirmed(
    service: Service,
) -> None:
    room = await service.room()
    (slot,) = await service.slots(room)
    booking = await service.booking(slot)
    service.clock.now = START + timedelta(minutes=16)
    try:
        await service.status(booking["id"], "expired")
    finally:
        service.clock.now = START

    await service.pay(booking)
    events = await service.events(booking["id"], at_least=3)
    await service.pay(booking)  # and once more: still one refund
    again = await service.events(booking["id"], at_least=3, settle_s=1.5)

    assert types(events) == ["BookingCreated.v1", "BookingExpired.v1", "RefundRequested.v1"]
    refund = events[2]["data"]
    assert refund["amount"] == booking["price"]
    assert refund["payment_id"] == f"pay-{booking['id']}"
    assert "expired" in refund["reason"]
    assert len(again) == 3
    assert await service.booked(slot.slot_id) == 0


async def test_a_payment_for_a_cancelled_booking_is_refunded(service: Service) -> None:
    room = await service.room()
    (slot,) = await service.slots(room)
    booking = await service.booking(slot)
    await service.http.post(f"/bookings/{booking['id']}/cancel", headers=user("user-1"))

    await service.pay(booking)
    events = await service.events(booking["id"], at_least=3)
    row = await service.status(booking["id"], "cancelled")

    assert types(events) == ["BookingCreated.v1", "BookingCancelled.v1", "RefundRequested.v1"]
    assert row["payment_status"] == "refund_pending"


async def test_a_second_payment_of_a_paid_booking_is_refunded(service: Service) -> None:
    room = await service.room()
    (slot,) = await service.slots(room)
    booking = await service.confirmed(slot)

    await service.publish(
        PaymentSucceeded(
            booking_id=booking["id"],
            payment_id="pay-again",
            amount=Money.of(booking["price"]["amount"], "EUR"),
        ),
        source="/payments",
    )
    events = await service.events(booking["id"], at_least=3)

    assert types(events)[-1] == "RefundRequested.v1"
    assert events[-1]["data"]["payment_id"] == "pay-again"
    assert "already paid" in events[-1]["data"]["reason"]


async def _applied(service: Service, envelope: Envelope) -> None:
    """Wait until the booking service has handled the event (its id is in the inbox)."""
    await service.until(
        lambda: service.row("SELECT 1 AS done FROM inbox WHERE event_id = $1", envelope.id)
    )


async def _dead_letters(service: Service, *envelopes: Envelope) -> list[Any]:
    """The records of these events on the payments' dead-letter topic (none, we hope)."""
    ids = [str(envelope.id).encode() for envelope in envelopes]
    return await service.broker.read(
        topics.dead_letter_topic(topics.PAYMENT_EVENTS),
        at_least=0,
        timeout_s=5.0,
        settle_s=1.0,
        where=lambda record: any(i in (record.value or b"") for i in ids),
    )


async def _stray(service: Service, payment_id: str, refund_status: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        row = await service.row("SELECT * FROM stray_payments WHERE payment_id = $1", payment_id)
        return row if row and row["refund_status"] == refund_status else None

    return await service.until(probe)


def _unapplied(service: Service, cause: str) -> float:
    """Payments no booking took, as ``payments_unapplied_total`` counts them."""
    registry = runtime_of(service.app).metrics.registry
    return registry.get_sample_value("payments_unapplied_total", {"cause": cause}) or 0.0


async def _answer(service: Service, refund: dict[str, Any], *, failed: bool = False) -> Envelope:
    """The payment stand-in's answer to a ``RefundRequested`` (its ``data``), published."""
    requested = RefundRequested.model_validate(refund)
    user_id = "unrefundable-x" if failed else None
    (envelope,) = await service.publish(decide_refund(requested, user_id), source="/payments")
    await _applied(service, envelope)
    return envelope


async def test_a_payment_of_the_wrong_amount_is_returned_in_full_and_the_next_applied(
    service: Service,
) -> None:
    room = await service.room()
    first, second = await service.slots(room, 2)
    wrong = await service.booking(first)
    right = await service.booking(second)
    counted = _unapplied(service, "wrong_amount")

    stray = await service.pay(wrong, amount="0.01")
    await service.pay(right)
    await service.status(right["id"], "confirmed")
    events = await service.events(wrong["id"], at_least=2)
    again = await service.pay(wrong, amount="0.01")  # the same payment, a new event id
    await service.publish_raw(topics.PAYMENT_EVENTS, stray)  # the very same record again
    await _applied(service, again)
    after = await service.events(wrong["id"], at_least=2, settle_s=1.5)
    row = await service.row(
        "SELECT status, payment_status, payment_id FROM bookings WHERE id = $1",
        uuid.UUID(wrong["id"]),
    )
    recorded = await _stray(service, f"pay-{wrong['id']}", "requested")
    await _answer(service, events[1]["data"])
    settled = await _stray(service, f"pay-{wrong['id']}", "succeeded")

    assert types(events) == ["BookingCreated.v1", "RefundRequested.v1"]
    refund = events[1]["data"]
    assert refund["booking_id"] == wrong["id"]
    assert refund["payment_id"] == f"pay-{wrong['id']}"
    assert refund["amount"] == {"amount": "0.01", "currency": "EUR"}
    assert "does not match the price 20.00 EUR" in refund["reason"]
    assert types(after) == ["BookingCreated.v1", "RefundRequested.v1"]
    assert row == {"status": "pending", "payment_status": "pending", "payment_id": None}
    assert await _dead_letters(service, stray, again) == []
    assert recorded["refund_id"] == uuid.UUID(refund["refund_id"])
    assert recorded["booking_id"] == uuid.UUID(wrong["id"])
    assert (recorded["amount"], recorded["currency"]) == (Decimal("0.01"), "EUR")
    assert recorded["reason"] == refund["reason"]
    assert settled["settled_at"] is not None
    assert settled["failure_reason"] is None
    assert _unapplied(service, "wrong_amount") == counted + 1


async def test_a_payment_for_an_unknown_booking_is_returned_in_full(service: Service) -> None:
    ghost: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "price": {"amount": "15.00", "currency": "EUR"},
    }
    counted = _unapplied(service, "unknown_booking")

    stray = await service.pay(ghost)
    (refund,) = [e["data"] for e in await service.events(ghost["id"], at_least=1)]
    again = await service.pay(ghost)  # the same payment, a new event id
    await _applied(service, again)
    after = await service.events(ghost["id"], at_least=1, settle_s=1.5)
    await _answer(service, refund, failed=True)
    failed = await _stray(service, f"pay-{ghost['id']}", "failed")
    (other,) = await service.publish(
        RefundSucceeded(
            booking_id=refund["booking_id"],
            payment_id=refund["payment_id"],
            refund_id=refund["refund_id"],
            amount=Money.of("1.00", "EUR"),
        ),
        source="/payments",
    )
    dead = await service.broker.read(
        topics.dead_letter_topic(topics.PAYMENT_EVENTS),
        at_least=1,
        where=lambda record: str(other.id).encode() in (record.value or b""),
    )
    await _answer(service, refund)  # the payment service retried it, and it went through
    settled = await _stray(service, f"pay-{ghost['id']}", "succeeded")
    await _answer(service, refund, failed=True)  # a late failure after success: no change
    still = await _stray(service, f"pay-{ghost['id']}", "succeeded")

    assert refund["booking_id"] == ghost["id"]
    assert refund["amount"] == {"amount": "15.00", "currency": "EUR"}
    assert "does not exist" in refund["reason"]
    assert len(after) == 1
    assert await _dead_letters(service, stray, again) == []
    assert failed["failure_reason"] == REFUND_FAILURE
    assert b"not 1.00 EUR" in dict(dead[0].headers)["dlq_reason"]
    assert settled["failure_reason"] is None
    assert still == settled
    assert _unapplied(service, "unknown_booking") == counted + 1
    assert (
        await service.row("SELECT id FROM bookings WHERE id = $1", uuid.UUID(ghost["id"])) is None
    )


async def test_a_failed_payment_cancels_the_pending_booking_and_frees_its_place(
    service: Service,
) -> None:
    room = await service.room()
    (slot,) = await service.slots(room)
    booking = await service.booking(slot)

    await service.fail_payment(booking)
    row = await service.status(booking["id"], "cancelled")
    events = await service.events(booking["id"], at_least=2)

    assert row["cancelled_by"] == "system"
    assert row["cancellation_reason"] == "payment failed: card declined"
    assert await service.booked(slot.slot_id) == 0
    assert types(events) == ["BookingCreated.v1", "BookingCancelled.v1"]
    assert events[1]["data"]["refund"] is None


async def test_a_failed_payment_after_confirmation_changes_nothing(service: Service) -> None:
    room = await service.room()
    (slot,) = await service.slots(room)
    booking = await service.confirmed(slot)

    await service.fail_payment(booking)
    events = await service.events(booking["id"], at_least=2, settle_s=1.5)

    assert types(events) == ["BookingCreated.v1", "BookingConfirmed.v1"]
    assert await service.booked(slot.slot_id) == 1


async def test_an_unpaid_hold_expires_and_frees_its_place_for_someone_else(
    service: Service,
) -> None:
    room = await service.room()
    (slot,) = await service.slots(room)
    booking = await service.booking(slot, "slow-payer")
    service.clock.now = START + timedelta(minutes=15)
    try:
        await service.status(booking["id"], "expired")
        other = await service.book(slot, "quick-payer")
    finally:
        service.clock.now = START
    events = await service.events(booking["id"], at_least=2)

    assert other.status_code == 201
    assert types(events) == ["BookingCreated.v1", "BookingExpired.v1"]
    assert await service.booked(slot.slot_id) == 1


async def test_sweepers_running_at_once_expire_each_hold_once(service: Service) -> None:
    room = await service.room()
    slots = await service.slots(room, 30)
    bookings = [await service.booking(slot, f"sweep-{i}") for i, slot in enumerate(slots)]
    runtime = runtime_of(service.app)
    later = START + timedelta(hours=1)

    async def sweep() -> int:
        async with runtime.sessions.begin() as session:
            return await handlers.expire_holds(
                SqlStore(session), runtime.outbox, now=later, limit=7
            )

    due = await service.row(
        "SELECT count(*) AS n FROM bookings WHERE status = 'pending' AND hold_expires_at <= $1",
        later,
    )
    swept = 0
    while True:
        counts = await asyncio.gather(*(sweep() for _ in range(4)))
        swept += sum(counts)
        if not any(counts):
            break
    expired = [
        await service.row("SELECT status FROM bookings WHERE id = $1", uuid.UUID(b["id"]))
        for b in bookings
    ]
    announced = await service.broker.read(
        topics.BOOKING_EVENTS,
        at_least=30,
        settle_s=1.0,
        where=lambda r: (
            b"BookingExpired" in (r.value or b"")
            and any(b["id"].encode() == r.key for b in bookings)
        ),
    )

    assert due is not None
    assert swept == due["n"] >= 30
    assert expired == [{"status": "expired"}] * 30
    assert len(announced) == 30
    assert [await service.booked(slot.slot_id) for slot in slots] == [0] * 30
