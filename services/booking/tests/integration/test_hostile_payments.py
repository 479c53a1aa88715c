"""Payments as a careless or hostile producer sends them, against the running booking
service: an amount written to explode is dead-lettered and the service goes on; a lower-case
currency, as payment providers send it, confirms."""

from __future__ import annotations

import json
import uuid
from typing import Any

from booking_contracts import topics

from .conftest import Service

BROKERS = ("memory", "kafka")
"""The in-memory broker and the real one: this module is about delivery too (poison: a payment
written to explode is dead-lettered and the partition moves on)."""


def _payment(booking: dict[str, Any], amount: str, currency: str) -> tuple[str, bytes]:
    event_id = str(uuid.uuid4())
    envelope = {
        "id": event_id,
        "source": "/payments",
        "type": "PaymentSucceeded.v1",
        "subject": booking["id"],
        "correlationid": "c" * 600_000,  # copied into every event it causes, were it kept
        "data": {
            "booking_id": booking["id"],
            "payment_id": f"pay-{booking['id']}",
            "amount": {"amount": amount, "currency": currency},
        },
    }
    return event_id, json.dumps(envelope).encode()


async def test_an_amount_written_to_explode_is_dead_lettered_and_the_service_goes_on(
    service: Service,
) -> None:
    room = await service.room()
    first, second = await service.slots(room, 2)
    target = await service.booking(first)
    after = await service.booking(second)
    poison_id, poison = _payment(target, "1E+900000000", "EUR")  # 263 bytes, 900 M digits
    _, fine = _payment(after, after["price"]["amount"], after["price"]["currency"])

    await service.broker.publish(topics.PAYMENT_EVENTS, [poison, fine], key=b"one-partition")
    confirmed = await service.status(after["id"], "confirmed")
    dead = await service.broker.read(
        topics.dead_letter_topic(topics.PAYMENT_EVENTS),
        at_least=1,
        where=lambda record: poison_id.encode() in (record.value or b""),
    )

    assert confirmed["status"] == "confirmed"
    reason = dict(dead[0].headers)["dlq_reason"]
    assert b"is not a decimal string" in reason
    assert len(reason) < 4000
    row = await service.row("SELECT status FROM bookings WHERE id = $1", uuid.UUID(target["id"]))
    assert row == {"status": "pending"}


async def test_a_lower_case_currency_confirms_and_an_insane_correlation_id_is_not_copied(
    service: Service,
) -> None:
    room = await service.room()
    (slot,) = await service.slots(room)
    booking = await service.booking(slot)
    price = booking["price"]
    _, payment = _payment(booking, price["amount"], price["currency"].lower())

    await service.broker.publish(topics.PAYMENT_EVENTS, [payment], key=booking["id"].encode())
    confirmed = await service.status(booking["id"], "confirmed")
    events = await service.events(booking["id"], at_least=2)

    assert confirmed["payment_status"] == "paid"
    announced = [e for e in events if e["type"] == "BookingConfirmed.v1"]
    assert announced
    assert len(announced[0].get("correlationid") or "") <= 128
