"""Booking events from Kafka keep the slots' booked counts exact, whatever their order."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.events import topics
from shared.events.catalogue import (
    Actor,
    BookingCancelled,
    BookingCreated,
    BookingExpired,
    BookingRescheduled,
)
from shared.events.envelope import Envelope, Event
from shared.events.money import Money
from tests.support.kafka import produce, read_topic

from .conftest import ADMIN, USER, Service

PRICE = Money.of("15.00", "EUR")


async def _slots(service: Service, *, max_bookings: int = 2) -> tuple[str, list[dict[str, Any]]]:
    room = await service.room(
        schedule={"hours": [{"start": "09:00", "end": "11:00"}], "max_bookings": max_bookings}
    )
    await service.generate(room["id"], "2030-03-04", "2030-03-04")
    return room["id"], await service.slots(room["id"], date="2030-03-04")


def _created(booking_id: uuid.UUID, slot: dict[str, Any]) -> BookingCreated:
    starts = datetime.fromisoformat(slot["starts_at"])
    return BookingCreated(
        booking_id=booking_id,
        user_id="user-1",
        slot_id=slot["id"],
        room_id=slot["room_id"],
        starts_at=starts,
        ends_at=starts + timedelta(minutes=30),
        price=PRICE,
        hold_expires_at=datetime(2030, 1, 1, tzinfo=UTC),
    )


def _cancelled(booking_id: uuid.UUID, slot: dict[str, Any]) -> BookingCancelled:
    return BookingCancelled(
        booking_id=booking_id,
        user_id="user-1",
        slot_id=slot["id"],
        room_id=slot["room_id"],
        cancelled_by=Actor.USER,
    )


async def _publish(service: Service, *envelopes: Envelope) -> None:
    for envelope in envelopes:
        await produce(
            service.kafka,
            topics.BOOKING_EVENTS,
            [envelope.to_json_bytes()],
            key=envelope.subject.encode() if envelope.subject else None,
        )


def _wrap(event: Event) -> Envelope:
    return Envelope.wrap(event, source="/booking")


async def _booked(service: Service, slot_id: str) -> int:
    response = await service.http.get(f"/slots/{slot_id}", headers=USER)
    count: int = response.json()["booked_count"]
    return count


async def _eventually(service: Service, expected: dict[str, int], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        counts = {slot_id: await _booked(service, slot_id) for slot_id in expected}
        if counts == expected or time.monotonic() > deadline:
            assert counts == expected
            return
        await asyncio.sleep(0.1)


async def test_created_and_cancelled_bookings_move_the_count_and_a_full_slot_is_not_offered(
    service: Service,
) -> None:
    room_id, slots = await _slots(service)
    first, second = uuid.uuid4(), uuid.uuid4()

    await _publish(service, _wrap(_created(first, slots[0])), _wrap(_created(second, slots[0])))
    await _eventually(service, {slots[0]["id"]: 2})
    full = await service.http.get(
        f"/rooms/{room_id}/availability", params={"date": "2030-03-04"}, headers=USER
    )
    await _publish(service, _wrap(_cancelled(first, slots[0])))
    await _eventually(service, {slots[0]["id"]: 1})
    again = await service.http.get(
        f"/rooms/{room_id}/availability", params={"date": "2030-03-04"}, headers=USER
    )

    assert slots[0]["id"] not in {item["slot_id"] for item in full.json()["items"]}
    offered = {item["slot_id"]: item["places_left"] for item in again.json()["items"]}
    assert offered[slots[0]["id"]] == 1


async def test_a_repeated_event_counts_once(service: Service) -> None:
    _, slots = await _slots(service)
    created = _wrap(_created(uuid.uuid4(), slots[1]))
    other = _wrap(_created(uuid.uuid4(), slots[2]))

    await _publish(service, created, created, created, other)

    await _eventually(service, {slots[1]["id"]: 1, slots[2]["id"]: 1})


async def test_the_same_booking_announced_twice_with_new_event_ids_holds_one_place(
    service: Service,
) -> None:
    _, slots = await _slots(service)
    booking = uuid.uuid4()

    await _publish(service, _wrap(_created(booking, slots[0])), _wrap(_created(booking, slots[0])))
    await _publish(service, _wrap(_created(uuid.uuid4(), slots[1])))

    await _eventually(service, {slots[0]["id"]: 1, slots[1]["id"]: 1})


async def test_a_release_seen_before_its_creation_leaves_the_place_free(service: Service) -> None:
    _, slots = await _slots(service)
    booking = uuid.uuid4()
    expired = BookingExpired(
        booking_id=booking, user_id="user-1", slot_id=slots[2]["id"], room_id=slots[2]["room_id"]
    )

    await _publish(service, _wrap(expired), _wrap(_created(booking, slots[2])))
    await _publish(service, _wrap(_created(uuid.uuid4(), slots[3])))

    await _eventually(service, {slots[2]["id"]: 0, slots[3]["id"]: 1})


async def test_a_rescheduled_booking_moves_its_place(service: Service) -> None:
    _, slots = await _slots(service)
    booking = uuid.uuid4()
    moved = BookingRescheduled(
        booking_id=booking,
        user_id="user-1",
        room_id=slots[0]["room_id"],
        old_slot_id=slots[0]["id"],
        new_slot_id=slots[3]["id"],
        old_starts_at=datetime.fromisoformat(slots[0]["starts_at"]),
        new_starts_at=datetime.fromisoformat(slots[3]["starts_at"]),
        new_ends_at=datetime.fromisoformat(slots[3]["ends_at"]),
        room_time_zone="Europe/Berlin",
        price_difference=Money.of("0.00", "EUR"),
    )

    await _publish(service, _wrap(_created(booking, slots[0])), _wrap(moved), _wrap(moved))
    await _eventually(service, {slots[0]["id"]: 0, slots[3]["id"]: 1})
    await _publish(service, _wrap(_cancelled(booking, slots[3])))
    await _eventually(service, {slots[0]["id"]: 0, slots[3]["id"]: 0})


async def test_a_booking_of_an_unknown_slot_is_dead_lettered_and_the_next_one_applied(
    service: Service,
) -> None:
    _, slots = await _slots(service)
    ghost = _created(uuid.uuid4(), slots[0] | {"id": str(uuid.uuid4())})
    poison = _wrap(ghost)

    await _publish(service, poison, _wrap(_created(uuid.uuid4(), slots[1])))
    await _eventually(service, {slots[1]["id"]: 1})
    dead = await read_topic(
        service.kafka,
        topics.dead_letter_topic(topics.BOOKING_EVENTS),
        at_least=1,
        where=lambda record: str(poison.id).encode() in (record.value or b""),
    )

    assert len(dead) == 1
    headers = dict(dead[0].headers)
    assert headers["dlq_kind"] == b"rejected"
    assert b"is not a slot of this service" in headers["dlq_reason"]


async def test_blocking_a_booked_slot_keeps_its_bookings(service: Service) -> None:
    _, slots = await _slots(service, max_bookings=1)
    await _publish(service, _wrap(_created(uuid.uuid4(), slots[0])))
    await _eventually(service, {slots[0]["id"]: 1})

    blocked = await service.http.post(f"/slots/{slots[0]['id']}/block", headers=ADMIN)

    assert blocked.json()["status"] == "blocked"
    assert blocked.json()["booked_count"] == 1
