"""Money cannot be gamed by moving a booking: the refund counts from the start that was paid
for, a move never gets a pricier slot for free, a refund is refunded only once the payment
service says so, and opposite moves never deadlock."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from booking.models import allowed_refund_settlements
from booking_contracts import topics
from booking_contracts.catalogue import (
    PaymentSucceeded,
    RefundFailed,
    RefundSucceeded,
    SlotsGenerated,
    SlotSnapshot,
    SlotStatus,
)
from booking_contracts.envelope import Envelope
from booking_contracts.money import Money
from tests.support.triggers import allowed_changes

from .conftest import ADMIN, START, Service, types, user

HOUR = timedelta(hours=1)


async def _move(service: Service, booking: dict[str, Any], slot: SlotSnapshot, who: str) -> Any:
    return await service.http.post(
        f"/bookings/{booking['id']}/reschedule",
        json={"slot_id": str(slot.slot_id)},
        headers=user(who),
    )


async def _cancel(service: Service, booking: dict[str, Any], who: dict[str, str]) -> Any:
    return await service.http.post(f"/bookings/{booking['id']}/cancel", headers=who)


async def _quote(service: Service, booking: dict[str, Any], who: str) -> dict[str, Any]:
    response = await service.http.get(f"/bookings/{booking['id']}/refund-quote", headers=user(who))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _confirmed_at(
    service: Service, slot: SlotSnapshot, who: str, *, now: datetime
) -> dict[str, Any]:
    """A booking of ``slot`` made and paid at ``now`` (the clock stays there)."""
    service.clock.now = now
    return await service.confirmed(slot, who)


async def _refunds_requested(
    service: Service, booking: dict[str, Any], *, at_least: int, settle_s: float = 0.0
) -> list[dict[str, Any]]:
    events = await service.events(booking["id"], at_least=at_least, settle_s=settle_s)
    return [e["data"] for e in events if e["type"] == "RefundRequested.v1"]


async def _payment_status(service: Service, booking: dict[str, Any], expected: str) -> None:
    async def probe() -> bool:
        row = await service.row(
            "SELECT payment_status FROM bookings WHERE id = $1", uuid.UUID(booking["id"])
        )
        return row is not None and row["payment_status"] == expected

    await service.until(probe)


async def _applied(service: Service, envelope: Envelope) -> None:
    """Wait until the booking service has handled the event (its id is in the inbox)."""
    await service.until(
        lambda: service.row("SELECT 1 AS done FROM inbox WHERE event_id = $1", envelope.id)
    )


async def _report(
    service: Service, refund: dict[str, Any], *, failed: str | None = None
) -> Envelope:
    """The payment service's answer to a ``RefundRequested`` (its ``data``)."""
    common = {
        "booking_id": refund["booking_id"],
        "payment_id": refund["payment_id"],
        "refund_id": refund["refund_id"],
        "amount": Money.of(refund["amount"]["amount"], refund["amount"]["currency"]),
    }
    event = RefundSucceeded(**common) if failed is None else RefundFailed(**common, reason=failed)
    (envelope,) = await service.publish(event, source="/payments")
    return envelope


# --- 1. the refund counts from the start that was paid for -----------------------------


async def test_moving_a_booking_later_does_not_raise_what_cancelling_refunds(
    service: Service,
) -> None:
    room = await service.room()
    (soon,) = await service.slots(room, price="40.00")
    (later,) = await service.slots(room, starts_at=soon.starts_at + 48 * HOUR, price="40.00")
    try:
        booking = await _confirmed_at(service, soon, "mover-later", now=soon.starts_at - 2 * HOUR)
        moved = await _move(service, booking, later, "mover-later")
        quote = await _quote(service, booking, "mover-later")
        cancelled = await _cancel(service, booking, user("mover-later"))
    finally:
        service.clock.now = START
    events = await service.events(booking["id"], at_least=4, settle_s=1.0)

    assert moved.status_code == 200
    assert quote["percent"] == "0"
    assert cancelled.json()["refund"] is None
    assert cancelled.json()["payment_status"] == "paid"
    assert "RefundRequested.v1" not in types(events)
    assert "before the start it was paid for" in quote["reason"]
    assert moved.json()["refund_basis_starts_at"] == booking["starts_at"]


async def test_moving_a_booking_earlier_does_not_lower_what_cancelling_refunds(
    service: Service,
) -> None:
    room = await service.room()
    (far,) = await service.slots(room, price="40.00")
    now = far.starts_at - 48 * HOUR
    (near,) = await service.slots(room, starts_at=now + 3 * HOUR, price="40.00")
    try:
        booking = await _confirmed_at(service, far, "mover-earlier", now=now)
        moved = await _move(service, booking, near, "mover-earlier")
        quote = await _quote(service, booking, "mover-earlier")
        cancelled = await _cancel(service, booking, user("mover-earlier"))
    finally:
        service.clock.now = START
    (refund,) = await _refunds_requested(service, booking, at_least=5)

    assert moved.status_code == 200
    assert quote["percent"] == "100"
    assert cancelled.json()["refund"] == {"amount": "40.00", "currency": "EUR"}
    assert refund["amount"] == {"amount": "40.00", "currency": "EUR"}


# --- 2. a move never gets a pricier slot for free --------------------------------------


async def test_a_move_to_a_pricier_slot_or_another_currency_is_refused_naming_both_prices(
    service: Service,
) -> None:
    room = await service.room()
    (paid,) = await service.slots(room, price="30.00")
    (pricier,) = await service.slots(room, price="45.00")
    dollars = SlotSnapshot(
        slot_id=uuid.uuid4(),
        room_id=room,
        starts_at=service.day(),
        ends_at=service.day(),
        price=Money.of("10.00", "USD"),
        max_bookings=1,
        status=SlotStatus.OPEN,
        revision=1,
    )
    dollars = dollars.model_copy(update={"ends_at": dollars.starts_at + HOUR})
    await service.publish(SlotsGenerated(room_id=room, slots=[dollars]))
    await service.until(lambda: service.row("SELECT * FROM slots WHERE id = $1", dollars.slot_id))
    booking = await service.confirmed(paid, "bargain-hunter")

    to_pricier = await _move(service, booking, pricier, "bargain-hunter")
    to_dollars = await _move(service, booking, dollars, "bargain-hunter")
    after = await service.http.get(f"/bookings/{booking['id']}", headers=user("bargain-hunter"))
    events = await service.events(booking["id"], at_least=2, settle_s=1.0)

    assert to_pricier.status_code == 409
    assert to_pricier.json()["type"] == "urn:problem:price_not_covered"
    assert "30.00 EUR" in to_pricier.json()["detail"]
    assert "45.00 EUR" in to_pricier.json()["detail"]
    assert to_dollars.status_code == 409
    assert "10.00 USD" in to_dollars.json()["detail"]
    assert (after.json()["slot_id"], after.json()["price"]) == (
        str(paid.slot_id),
        {"amount": "30.00", "currency": "EUR"},
    )
    assert [await service.booked(s.slot_id) for s in (paid, pricier, dollars)] == [1, 0, 0]
    assert types(events) == ["BookingCreated.v1", "BookingConfirmed.v1"]


async def test_a_move_to_a_cheaper_slot_refunds_the_difference_once(service: Service) -> None:
    room = await service.room()
    (paid,) = await service.slots(room, price="30.00")
    (cheaper,) = await service.slots(room, price="20.00")
    booking = await service.confirmed(paid, "saver")

    moved = await _move(service, booking, cheaper, "saver")
    retried = await _move(service, booking, cheaper, "saver")
    (difference,) = await _refunds_requested(service, booking, at_least=4, settle_s=1.0)
    cancelled = await _cancel(service, booking, user("saver"))
    refunds = await _refunds_requested(service, booking, at_least=6)

    assert moved.status_code == 200
    body = moved.json()
    assert body["price"] == {"amount": "20.00", "currency": "EUR"}
    assert body["refund"] == {"amount": "10.00", "currency": "EUR"}
    assert body["payment_status"] == "refund_pending"
    assert retried.status_code == 422
    assert difference["amount"] == {"amount": "10.00", "currency": "EUR"}
    assert difference["payment_id"] == booking["payment_id"]
    assert "cheaper slot" in difference["reason"]
    # cancelling refunds the new price in full: what was paid comes back, and no more
    assert cancelled.json()["refund"] == {"amount": "30.00", "currency": "EUR"}
    assert [r["amount"]["amount"] for r in refunds] == ["10.00", "20.00"]
    assert refunds[0]["refund_id"] != refunds[1]["refund_id"]


# --- 3. a refund is refunded when the payment service says so --------------------------


async def test_a_refund_is_pending_until_the_payment_service_reports_it_made(
    service: Service,
) -> None:
    room = await service.room()
    (slot,) = await service.slots(room, price="40.00")
    booking = await service.confirmed(slot, "refund-waiter")
    cancelled = await _cancel(service, booking, user("refund-waiter"))
    (refund,) = await _refunds_requested(service, booking, at_least=4)

    await _report(service, refund)
    await _payment_status(service, booking, "refunded")
    await _applied(service, await _report(service, refund))  # reported again
    await _applied(service, await _report(service, refund, failed="late"))  # after success
    shown = await service.http.get(f"/bookings/{booking['id']}", headers=user("refund-waiter"))

    assert cancelled.json()["payment_status"] == "refund_pending"
    assert shown.json()["payment_status"] == "refunded"
    assert shown.json()["refund"] == {"amount": "40.00", "currency": "EUR"}
    assert shown.json()["refund_failure_reason"] is None


async def test_a_failed_partial_refund_is_shown_to_admins_until_it_succeeds(
    service: Service,
) -> None:
    room = await service.room()
    (slot,) = await service.slots(room, price="40.00")
    booking = await service.confirmed(slot, "unlucky")
    service.clock.now = slot.starts_at - 12 * HOUR  # 50 %
    try:
        cancelled = await _cancel(service, booking, user("unlucky"))
    finally:
        service.clock.now = START
    (refund,) = await _refunds_requested(service, booking, at_least=4)

    await _report(service, refund, failed="the card account was closed")
    await _payment_status(service, booking, "refund_failed")
    by_admin = await service.http.get(f"/bookings/{booking['id']}", headers=ADMIN)
    by_owner = await service.http.get(f"/bookings/{booking['id']}", headers=user("unlucky"))
    to_look_at = await service.http.get(
        "/bookings", params={"payment_status": "refund_failed"}, headers=ADMIN
    )
    await _report(service, refund)  # the payment service retried it, and it went through
    await _payment_status(service, booking, "refunded")
    settled = await service.http.get(f"/bookings/{booking['id']}", headers=ADMIN)
    no_longer = await service.http.get(
        "/bookings", params={"payment_status": "refund_failed"}, headers=ADMIN
    )

    assert cancelled.json()["refund"] == {"amount": "20.00", "currency": "EUR"}
    assert cancelled.json()["payment_status"] == "refund_pending"
    assert by_admin.json()["payment_status"] == "refund_failed"
    assert by_admin.json()["refund_failure_reason"] == "the card account was closed"
    assert by_owner.json()["payment_status"] == "refund_failed"
    assert by_owner.json()["refund_failure_reason"] is None
    assert booking["id"] in {b["id"] for b in to_look_at.json()["items"]}
    assert {b["payment_status"] for b in to_look_at.json()["items"]} == {"refund_failed"}
    assert settled.json()["refund_failure_reason"] is None
    assert booking["id"] not in {b["id"] for b in no_longer.json()["items"]}


async def test_a_refund_outcome_for_an_unknown_refund_or_booking_is_dead_lettered(
    service: Service,
) -> None:
    room = await service.room()
    (slot,) = await service.slots(room, price="40.00")
    booking = await service.confirmed(slot, "ghost-refund")
    cancelled = await _cancel(service, booking, user("ghost-refund"))
    (refund,) = await _refunds_requested(service, booking, at_least=4)

    unknown_refund = await _report(service, refund | {"refund_id": str(uuid.uuid4())})
    unknown_booking = await _report(service, refund | {"booking_id": str(uuid.uuid4())})
    other_amount = await _report(
        service, refund | {"amount": {"amount": "1.00", "currency": "EUR"}}
    )
    ids = {str(e.id).encode() for e in (unknown_refund, unknown_booking, other_amount)}
    dead = await service.broker.read(
        topics.dead_letter_topic(topics.PAYMENT_EVENTS),
        at_least=3,
        where=lambda record: any(i in (record.value or b"") for i in ids),
    )
    row = await service.row(
        "SELECT payment_status FROM bookings WHERE id = $1", uuid.UUID(booking["id"])
    )

    assert cancelled.json()["payment_status"] == "refund_pending"
    reasons = sorted(dict(r.headers)["dlq_reason"].decode() for r in dead)
    assert len(reasons) == 3
    assert sum("was never asked for" in r for r in reasons) == 1
    assert sum("does not exist" in r for r in reasons) == 1
    assert sum("not 1.00 EUR" in r for r in reasons) == 1
    assert row == {"payment_status": "refund_pending"}


async def test_a_second_payment_delivered_twice_is_refunded_once(service: Service) -> None:
    room = await service.room()
    (slot,) = await service.slots(room, price="40.00")
    booking = await service.confirmed(slot, "double-payer")
    twice = PaymentSucceeded(
        booking_id=booking["id"], payment_id="pay-twice", amount=Money.of("40.00", "EUR")
    )

    await service.publish(twice, source="/payments")
    (again,) = await service.publish(twice, source="/payments")  # a new event id
    await _applied(service, again)
    refunds = await _refunds_requested(service, booking, at_least=3, settle_s=1.0)
    shown = await service.http.get(f"/bookings/{booking['id']}", headers=user("double-payer"))

    assert [r["payment_id"] for r in refunds] == ["pay-twice"]
    assert shown.json()["status"] == "confirmed"
    assert shown.json()["payment_status"] == "refund_pending"
    assert shown.json()["refund"] == {"amount": "40.00", "currency": "EUR"}


async def test_the_database_refuses_other_refund_settlements_and_a_new_paid_start(
    service: Service,
) -> None:
    room = await service.room()
    (slot,) = await service.slots(room, price="40.00")
    booking = await service.confirmed(slot, "db-probe")
    await _cancel(service, booking, user("db-probe"))
    (refund,) = await _refunds_requested(service, booking, at_least=4)
    refund_id = uuid.UUID(refund["refund_id"])
    allowed = await allowed_changes(
        service.db,
        "refunds",
        ["requested", "succeeded", "failed"],
        "UPDATE refunds SET status = $2::text, failure_reason = "
        "CASE WHEN $2::text = 'failed' THEN 'x' END WHERE id = $1",
        refund_id,
    )

    assert allowed == set(allowed_refund_settlements())
    with pytest.raises(asyncpg.CheckViolationError, match="paid for never changes"):
        await service.db.execute(
            "UPDATE bookings SET refund_basis_starts_at = starts_at + interval '1 day' "
            "WHERE id = $1",
            uuid.UUID(booking["id"]),
        )


async def test_the_database_records_a_stray_payment_once_and_settles_its_refund_forward(
    service: Service,
) -> None:
    payment_id = f"pay-stray-{uuid.uuid4()}"
    insert = (
        "INSERT INTO stray_payments (payment_id, booking_id, amount, currency, reason, "
        "refund_id, refund_status) VALUES ($1, $2, 1.00, 'EUR', 'probe', $3, $4)"
    )
    settle = (
        "UPDATE stray_payments SET refund_status = $2, settled_at = now() WHERE payment_id = $1"
    )

    with pytest.raises(asyncpg.CheckViolationError, match="starts requested"):
        await service.db.execute(insert, payment_id, uuid.uuid4(), uuid.uuid4(), "succeeded")
    await service.db.execute(insert, payment_id, uuid.uuid4(), uuid.uuid4(), "requested")
    with pytest.raises(asyncpg.UniqueViolationError):  # the same payment, recorded again
        await service.db.execute(insert, payment_id, uuid.uuid4(), uuid.uuid4(), "requested")
    await service.db.execute(settle, payment_id, "succeeded")
    with pytest.raises(asyncpg.CheckViolationError, match="from succeeded to requested"):
        await service.db.execute(settle, payment_id, "requested")


# --- 8. opposite moves take turns ------------------------------------------------------


async def test_bookings_swapping_slots_at_once_never_deadlock(service: Service) -> None:
    room = await service.room()
    first, second = await service.slots(room, 2, max_bookings=6)
    here = [await service.confirmed(first, f"swapper-a{i}") for i in range(3)]
    there = [await service.confirmed(second, f"swapper-b{i}") for i in range(3)]
    where = {b["id"]: first for b in here} | {b["id"]: second for b in there}

    outcomes: Counter[int] = Counter()
    for _ in range(4):
        moves = [
            (b, second if where[b["id"]] is first else first, b["user_id"]) for b in here + there
        ]
        responses = await asyncio.gather(*(_move(service, b, to, who) for b, to, who in moves))
        for (b, to, _), response in zip(moves, responses, strict=True):
            outcomes[response.status_code] += 1
            if response.status_code == 200:
                where[b["id"]] = to

    assert set(outcomes) <= {200, 409}, outcomes
    assert await service.booked(first.slot_id) == sum(s is first for s in where.values())
    assert await service.booked(second.slot_id) == sum(s is second for s in where.values())
    for booking_id, slot in where.items():
        row = await service.row("SELECT slot_id FROM bookings WHERE id = $1", uuid.UUID(booking_id))
        assert row == {"slot_id": slot.slot_id}
