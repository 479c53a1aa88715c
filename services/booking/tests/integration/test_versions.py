"""Versions, not clocks, order what the booking service writes and what it keeps of rooms."""

from __future__ import annotations

import uuid
from datetime import timedelta

from booking_contracts import topics
from booking_contracts.catalogue import RoomDeactivated
from booking_contracts.envelope import Envelope, Event

from .conftest import START, Service, types, user

BROKERS = ("memory", "kafka")
"""The in-memory broker and the real one: this module is about delivery too (order: versions, not
clocks, decide what the service keeps, however the broker delivers)."""


def _written_at(event: Event, shift: timedelta) -> Envelope:
    """``event`` in an envelope stamped by a replica whose clock is ``shift`` off."""
    envelope = Envelope.wrap(event, source="/timeslots")
    return envelope.model_copy(update={"time": envelope.time + shift})


async def test_every_event_of_a_booking_carries_a_higher_version_than_the_one_before(
    service: Service,
) -> None:
    room = await service.room()
    (dear,) = await service.slots(room, price="30.00")
    (cheaper,) = await service.slots(room, price="25.00")
    booking = await service.confirmed(dear)
    moved = await service.http.post(
        f"/bookings/{booking['id']}/reschedule",
        json={"slot_id": str(cheaper.slot_id)},
        headers=user("user-1"),
    )
    cancelled = await service.http.post(
        f"/bookings/{booking['id']}/cancel", json={}, headers=user("user-1")
    )
    events = await service.events(booking["id"], at_least=6)
    row = await service.row("SELECT version FROM bookings WHERE id = $1", uuid.UUID(booking["id"]))

    assert (moved.status_code, cancelled.status_code) == (200, 200)
    assert types(events) == [
        "BookingCreated.v1",
        "BookingConfirmed.v1",
        "BookingRescheduled.v1",
        "RefundRequested.v1",  # the 5.00 the move made cheaper
        "BookingCancelled.v1",
        "RefundRequested.v1",  # the 25.00 the booking still cost
    ]
    versions = [e["data"]["booking_version"] for e in events]
    assert versions[0] == 1
    assert versions == sorted(set(versions))  # each higher than the one before
    assert row == {"version": versions[-1]}


async def test_the_database_counts_a_bookings_versions_whatever_a_writer_says(
    service: Service,
) -> None:
    room = await service.room()
    (slot,) = await service.slots(room)
    booking = await service.booking(slot)
    booking_id = uuid.UUID(booking["id"])

    await service.db.execute("UPDATE bookings SET version = 1000 WHERE id = $1", booking_id)
    await service.db.execute("UPDATE bookings SET version = 1 WHERE id = $1", booking_id)
    row = await service.row("SELECT version FROM bookings WHERE id = $1", booking_id)

    assert row == {"version": 3}


async def test_room_events_are_ordered_by_version_not_by_the_clocks_of_their_writers(
    service: Service,
) -> None:
    room_id = uuid.uuid4()
    first = service.room_event(room_id, name="First").model_copy(update={"room_version": 1})
    closed = RoomDeactivated(room_id=room_id, deactivated_at=START, room_version=2)
    renamed = service.room_event(room_id, name="Second", active=False).model_copy(
        update={"room_version": 3}
    )

    # The deactivation comes from a replica whose clock is an hour behind the first's.
    await service.publish_raw(topics.TIMESLOTS_EVENTS, _written_at(first, timedelta()))
    await service.publish_raw(topics.TIMESLOTS_EVENTS, _written_at(closed, -timedelta(hours=1)))
    await service.until(
        lambda: service.row("SELECT 1 FROM rooms WHERE id = $1 AND version = 2", room_id)
    )
    after_close = await service.row("SELECT name, active FROM rooms WHERE id = $1", room_id)
    # The first snapshot again, replayed a day later (its envelope time is the latest of all).
    await service.publish_raw(topics.TIMESLOTS_EVENTS, _written_at(first, timedelta(days=1)))
    await service.publish_raw(topics.TIMESLOTS_EVENTS, _written_at(renamed, -timedelta(hours=2)))
    await service.until(
        lambda: service.row("SELECT 1 FROM rooms WHERE id = $1 AND version = 3", room_id)
    )
    row = await service.row("SELECT name, active, version FROM rooms WHERE id = $1", room_id)

    assert after_close == {"name": "First", "active": False}
    assert row == {"name": "Second", "active": False, "version": 3}


async def test_a_versioned_room_event_wins_over_a_state_from_events_without_versions(
    service: Service,
) -> None:
    room_id = uuid.uuid4()
    legacy = service.room_event(room_id, name="Old")  # written before versions existed
    closed = RoomDeactivated(room_id=room_id, deactivated_at=START, room_version=2)

    await service.publish_raw(topics.TIMESLOTS_EVENTS, _written_at(legacy, timedelta(hours=1)))
    await service.until(lambda: service.row("SELECT 1 FROM rooms WHERE id = $1", room_id))
    await service.publish_raw(topics.TIMESLOTS_EVENTS, _written_at(closed, timedelta()))
    await service.until(
        lambda: service.row("SELECT 1 FROM rooms WHERE id = $1 AND version = 2", room_id)
    )
    row = await service.row("SELECT name, active FROM rooms WHERE id = $1", room_id)

    assert row == {"name": "Old", "active": False}
