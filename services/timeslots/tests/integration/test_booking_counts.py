"""Booking events from the broker keep the slots' booked counts exact, whatever their order and
however the consumer batches them."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from booking_contracts import topics
from booking_contracts.catalogue import (
    Actor,
    BookingCancelled,
    BookingCreated,
    BookingExpired,
    BookingRescheduled,
    Contact,
    WaitlistEntryEnd,
    WaitlistExpired,
    WaitlistLeft,
    WaitlistOfferLapsed,
    WaitlistOfferMade,
    WaitlistOfferTaken,
)
from booking_contracts.envelope import Envelope, Event
from booking_contracts.money import Money
from platform_runtime.db import make_engine, make_session_factory
from platform_runtime.messaging import BatchItemError, PermanentEventError
from platform_tooling.polling import until
from timeslots import consumers
from timeslots.consumers import BookingEvent
from timeslots.models import slot_holds, timeslots
from timeslots.store import SqlStore

from .conftest import ADMIN, USER, Service

BROKERS = ("memory", "kafka")
"""The in-memory broker and the real one: this module is about delivery too (order, repeats and
batches of booking events)."""

PRICE = Money.of("15.00", "EUR")


async def _slots(
    service: Service, *, max_bookings: int = 2, until: str = "11:00"
) -> tuple[str, list[dict[str, Any]]]:
    """A new room's 30-minute slots of 2030-03-04, from 09:00 to ``until``."""
    room = await service.room(
        schedule={"hours": [{"start": "09:00", "end": until}], "max_bookings": max_bookings}
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


def _expired(booking_id: uuid.UUID, slot: dict[str, Any]) -> BookingExpired:
    return BookingExpired(
        booking_id=booking_id, user_id="user-1", slot_id=slot["id"], room_id=slot["room_id"]
    )


def _rescheduled(
    booking_id: uuid.UUID, old: dict[str, Any], new: dict[str, Any]
) -> BookingRescheduled:
    return BookingRescheduled(
        booking_id=booking_id,
        user_id="user-1",
        room_id=old["room_id"],
        old_slot_id=old["id"],
        new_slot_id=new["id"],
        old_starts_at=datetime.fromisoformat(old["starts_at"]),
        new_starts_at=datetime.fromisoformat(new["starts_at"]),
        new_ends_at=datetime.fromisoformat(new["ends_at"]),
        room_time_zone="Europe/Berlin",
        price_difference=Money.of("0.00", "EUR"),
    )


async def _publish(service: Service, *envelopes: Envelope) -> None:
    for envelope in envelopes:
        await service.broker.publish(
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
    expired = _expired(booking, slots[2])

    await _publish(service, _wrap(expired), _wrap(_created(booking, slots[2])))
    await _publish(service, _wrap(_created(uuid.uuid4(), slots[3])))

    await _eventually(service, {slots[2]["id"]: 0, slots[3]["id"]: 1})


async def test_a_rescheduled_booking_moves_its_place(service: Service) -> None:
    _, slots = await _slots(service)
    booking = uuid.uuid4()
    moved = _rescheduled(booking, slots[0], slots[3])

    await _publish(service, _wrap(_created(booking, slots[0])), _wrap(moved), _wrap(moved))
    await _eventually(service, {slots[0]["id"]: 0, slots[3]["id"]: 1})
    await _publish(service, _wrap(_cancelled(booking, slots[3])))
    await _eventually(service, {slots[0]["id"]: 0, slots[3]["id"]: 0})


def _entry(slot: dict[str, Any], entry_id: uuid.UUID) -> dict[str, Any]:
    return {"entry_id": entry_id, "slot_id": slot["id"], "room_id": slot["room_id"]} | {
        "user_id": "waiter-1"
    }


def _offer(slot: dict[str, Any], entry_id: uuid.UUID) -> WaitlistOfferMade:
    starts = datetime.fromisoformat(slot["starts_at"])
    return WaitlistOfferMade(
        **_entry(slot, entry_id),
        offer_expires_at=starts - timedelta(hours=1),
        starts_at=starts,
        ends_at=starts + timedelta(minutes=30),
        room_name="Room 7",
        room_time_zone="Europe/Berlin",
        contact=Contact(email="waiter-1@example.com"),
    )


async def _places_left(service: Service, room_id: str, slot_id: str) -> int:
    """What the availability search offers of the slot (0: not listed)."""
    response = await service.http.get(
        f"/rooms/{room_id}/availability", params={"date": "2030-03-04"}, headers=USER
    )
    listed = {item["slot_id"]: item["places_left"] for item in response.json()["items"]}
    return int(listed.get(slot_id, 0))


async def _holds_are(
    sessions: async_sessionmaker[AsyncSession], expected: dict[uuid.UUID, bool]
) -> None:
    """Wait until each holder's hold is as given (True: released, False: held): the events
    that decide them have been read, whatever the count went through meanwhile."""
    statement = select(slot_holds.c.holder_id, slot_holds.c.released).where(
        slot_holds.c.holder_id.in_(list(expected))
    )

    async def seen() -> dict[uuid.UUID, bool] | None:
        async with sessions() as session:
            holds = {row.holder_id: row.released for row in await session.execute(statement)}
        return holds if holds == expected else None

    await until(seen, what=f"holds {expected}")


async def test_a_place_held_for_a_waiter_is_not_offered_until_the_offer_lapses(
    service: Service, sessions: async_sessionmaker[AsyncSession]
) -> None:
    room_id, slots = await _slots(service)
    slot, entry = slots[0], uuid.uuid4()
    first, second = uuid.uuid4(), uuid.uuid4()
    await _publish(service, _wrap(_created(first, slot)), _wrap(_created(second, slot)))
    await _eventually(service, {slot["id"]: 2})

    await _publish(service, _wrap(_cancelled(first, slot)), _wrap(_offer(slot, entry)))
    await _holds_are(sessions, {first: True, second: False, entry: False})
    counted, listed = (
        await _booked(service, slot["id"]),
        await _places_left(service, room_id, slot["id"]),
    )
    await _publish(service, _wrap(WaitlistOfferLapsed(**_entry(slot, entry))))
    await _holds_are(sessions, {first: True, second: False, entry: True})

    assert (counted, listed) == (2, 0)  # held for the waiter: booking it would be refused
    assert await _booked(service, slot["id"]) == 1
    assert await _places_left(service, room_id, slot["id"]) == 1


async def test_an_offer_taken_holds_one_place_whichever_of_its_two_events_comes_first(
    service: Service, sessions: async_sessionmaker[AsyncSession]
) -> None:
    _, slots = await _slots(service, max_bookings=1)
    settled: dict[uuid.UUID, bool] = {}
    for slot, reverse in ((slots[1], False), (slots[2], True)):
        entry, booking = uuid.uuid4(), uuid.uuid4()
        taken = WaitlistOfferTaken(**_entry(slot, entry), booking_id=booking)
        both = [_wrap(taken), _wrap(_created(booking, slot))]
        await _publish(service, _wrap(_offer(slot, entry)))
        await _holds_are(sessions, {entry: False})

        await _publish(service, *(both[::-1] if reverse else both))
        settled |= {entry: True, booking: False}

    await _holds_are(sessions, settled)
    assert await _booked(service, slots[1]["id"]) == 1
    assert await _booked(service, slots[2]["id"]) == 1


async def test_a_declined_offer_frees_its_place_and_a_waiter_leaving_the_line_changes_nothing(
    service: Service, sessions: async_sessionmaker[AsyncSession]
) -> None:
    _, slots = await _slots(service)
    slot, offered, waiting, late = slots[3], uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await _publish(service, _wrap(_created(uuid.uuid4(), slot)), _wrap(_offer(slot, offered)))
    await _eventually(service, {slot["id"]: 2})

    await _publish(
        service,
        _wrap(WaitlistLeft(**_entry(slot, waiting), reason=WaitlistEntryEnd.LEFT)),
        _wrap(WaitlistExpired(**_entry(slot, late))),
        _wrap(
            WaitlistLeft(**_entry(slot, offered), reason=WaitlistEntryEnd.LEFT, declined_offer=True)
        ),
    )
    await _eventually(service, {slot["id"]: 1})

    async with sessions() as session:
        kept = select(slot_holds.c.holder_id).where(slot_holds.c.slot_id == uuid.UUID(slot["id"]))
        holders = set((await session.scalars(kept)).all())
    assert offered in holders  # released, remembered
    assert not {waiting, late} & holders  # never held a place: nothing written


async def test_a_booking_of_an_unknown_slot_is_dead_lettered_and_the_next_one_applied(
    service: Service,
) -> None:
    _, slots = await _slots(service)
    ghost = _created(uuid.uuid4(), slots[0] | {"id": str(uuid.uuid4())})
    poison = _wrap(ghost)

    await _publish(service, poison, _wrap(_created(uuid.uuid4(), slots[1])))
    await _eventually(service, {slots[1]["id"]: 1})
    dead = await service.broker.read(
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


# --- batches: the consumer applies a lane's consecutive booking events with one handler ---

MIXED_BATCH: list[tuple[str, str, int] | tuple[str, str, int, int]] = [
    ("created", "A", 0),
    ("created", "B", 0),
    ("created", "C", 1),
    ("cancelled", "A", 0),
    ("created", "B", 0),  # the same booking announced again: still one place
    ("expired", "D", 2),  # a release seen before its creation...
    ("created", "D", 2),  # ...so the creation takes no place
    ("rescheduled", "C", 1, 3),
    ("created", "E", 1),
    ("rescheduled", "C", 3, 4),  # the same booking a third and a fourth time
    ("cancelled", "C", 4),
    ("created", "F", 5),
    ("rescheduled", "F", 0, 2),  # from a slot it does not hold: it stays where it is
    ("rescheduled", "G", 3, 4),  # a move seen before its creation takes the new slot...
    ("created", "G", 3),  # ...and the creation is then known
    ("cancelled", "H", 5),  # H holds slot 6 (before the batch), wherever the event says
]
"""Booking events by booking letter and slot index (H was created in slot 6 before)."""

MIXED_COUNTS = {0: 1, 1: 1, 2: 0, 3: 0, 4: 1, 5: 1, 6: 0, 7: 0}
"""The booked count of each slot after ``MIXED_BATCH``, worked out by hand."""


def _events(
    steps: Sequence[tuple[Any, ...]], slots: list[dict[str, Any]], bookings: dict[str, uuid.UUID]
) -> list[BookingEvent]:
    """``steps`` as events about ``slots``; a booking letter is a new booking id the first time."""
    events: list[BookingEvent] = []
    for kind, letter, *at in steps:
        booking = bookings.setdefault(letter, uuid.uuid4())
        slot = slots[at[0]]
        if kind == "created":
            events.append(_created(booking, slot))
        elif kind == "cancelled":
            events.append(_cancelled(booking, slot))
        elif kind == "expired":
            events.append(_expired(booking, slot))
        else:
            events.append(_rescheduled(booking, slot, slots[at[1]]))
    return events


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sessions(service: Service) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Transactions on the service's database, beside the service."""
    engine = make_engine(service.database_url, pool_size=4)
    yield make_session_factory(engine)
    await engine.dispose()


async def _handle_batch(
    sessions: async_sessionmaker[AsyncSession], events: Sequence[BookingEvent]
) -> None:
    """What the consumer does with a lane's run of booking events: one handler call in one
    transaction."""
    async with sessions.begin() as session:
        await consumers.on_booking_events(
            SqlStore(session), [(_wrap(event), event) for event in events]
        )


async def _holds(
    sessions: async_sessionmaker[AsyncSession],
    slots: list[dict[str, Any]],
    bookings: dict[str, uuid.UUID],
) -> dict[str, tuple[int, bool]]:
    """Booking letter -> (index of the slot it holds, released)."""
    letters = {booking: letter for letter, booking in bookings.items()}
    index = {uuid.UUID(slot["id"]): i for i, slot in enumerate(slots)}
    statement = select(slot_holds).where(slot_holds.c.holder_id.in_(letters))
    async with sessions() as session:
        rows = (await session.execute(statement)).all()
    return {letters[row.holder_id]: (index[row.slot_id], row.released) for row in rows}


async def _counts(service: Service, slots: list[dict[str, Any]]) -> dict[int, int]:
    return {i: await _booked(service, slot["id"]) for i, slot in enumerate(slots)}


async def test_a_mixed_batch_ends_as_its_events_applied_one_by_one(
    service: Service, sessions: async_sessionmaker[AsyncSession]
) -> None:
    _, batch_slots = await _slots(service, until="13:00")
    _, single_slots = await _slots(service, until="13:00")
    batch_bookings: dict[str, uuid.UUID] = {}
    single_bookings: dict[str, uuid.UUID] = {}
    await _handle_batch(sessions, _events([("created", "H", 6)], batch_slots, batch_bookings))
    await _handle_batch(sessions, _events([("created", "H", 6)], single_slots, single_bookings))

    await _handle_batch(sessions, _events(MIXED_BATCH, batch_slots, batch_bookings))
    for event in _events(MIXED_BATCH, single_slots, single_bookings):
        async with sessions.begin() as session:
            store = SqlStore(session)
            match event:
                case BookingCreated():
                    await store.hold(event.booking_id, event.slot_id)
                case BookingCancelled() | BookingExpired():
                    await store.release(event.booking_id, event.slot_id)
                case BookingRescheduled():
                    await store.move_hold(event.booking_id, event.old_slot_id, event.new_slot_id)

    assert await _counts(service, batch_slots) == MIXED_COUNTS
    assert await _counts(service, single_slots) == MIXED_COUNTS
    assert await _holds(sessions, batch_slots, batch_bookings) == await _holds(
        sessions, single_slots, single_bookings
    )


async def _publish_together(service: Service, *envelopes: Envelope) -> None:
    """Publish ``envelopes`` in order at once under one key: one partition, where the
    consumer finds them all in one poll (one lane, one batch)."""
    values = [envelope.to_json_bytes() for envelope in envelopes]
    await service.broker.publish(topics.BOOKING_EVENTS, values, key=uuid.uuid4().bytes)


async def test_a_mixed_batch_from_the_broker_ends_in_the_right_counts(service: Service) -> None:
    _, slots = await _slots(service, until="13:00")
    bookings: dict[str, uuid.UUID] = {}
    await _publish(service, *map(_wrap, _events([("created", "H", 6)], slots, bookings)))
    await _eventually(service, {slots[6]["id"]: 1})
    envelopes = [_wrap(event) for event in _events(MIXED_BATCH, slots, bookings)]
    envelopes.insert(3, envelopes[1])  # a redelivered event

    await _publish_together(service, *envelopes)

    await _eventually(service, {slots[i]["id"]: count for i, count in MIXED_COUNTS.items()})


async def test_the_first_event_of_a_batch_naming_an_unknown_slot_is_the_one_refused(
    service: Service, sessions: async_sessionmaker[AsyncSession]
) -> None:
    _, slots = await _slots(service)
    ghost, other_ghost = {"id": str(uuid.uuid4())}, {"id": str(uuid.uuid4())}
    batch: list[BookingEvent] = [
        _created(uuid.uuid4(), slots[0]),
        _created(uuid.uuid4(), slots[1]),
        _rescheduled(uuid.uuid4(), slots[1], slots[0] | ghost),
        _created(uuid.uuid4(), slots[0] | other_ghost),
    ]

    with pytest.raises(BatchItemError) as refused:
        await _handle_batch(sessions, batch)

    assert refused.value.index == 2
    assert isinstance(refused.value.error, PermanentEventError)
    assert str(refused.value.error) == f"slot {ghost['id']} is not a slot of this service"


async def test_an_unknown_slot_in_the_middle_of_a_batch_is_dead_lettered_alone(
    service: Service,
) -> None:
    _, slots = await _slots(service)
    batch = [
        _wrap(_created(uuid.uuid4(), slots[0])),
        _wrap(_created(uuid.uuid4(), slots[1])),
        _wrap(_created(uuid.uuid4(), slots[0] | {"id": str(uuid.uuid4())})),
        _wrap(_created(uuid.uuid4(), slots[1])),
        _wrap(_created(uuid.uuid4(), slots[2])),
    ]
    poison = batch[2]
    ids = {str(envelope.id).encode() for envelope in batch}

    await _publish_together(service, *batch)

    await _eventually(service, {slots[0]["id"]: 1, slots[1]["id"]: 2, slots[2]["id"]: 1})
    dead = await service.broker.read(
        topics.dead_letter_topic(topics.BOOKING_EVENTS),
        at_least=1,
        settle_s=1.0,
        where=lambda record: any(event_id in (record.value or b"") for event_id in ids),
    )
    assert [Envelope.model_validate_json(record.value or b"").id for record in dead] == [poison.id]
    assert dict(dead[0].headers)["dlq_kind"] == b"rejected"


async def test_two_batches_on_the_same_slots_in_opposite_orders_both_commit_and_count_all(
    service: Service, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Two lanes at once: neither deadlocks, and the one that waited counts the other's holds."""
    _, slots = await _slots(service, until="13:00")
    ids = [uuid.UUID(slot["id"]) for slot in slots]
    for _ in range(3):
        forward = [_created(uuid.uuid4(), slot) for slot in slots]
        backward = [_created(uuid.uuid4(), slot) for slot in reversed(slots)]

        await asyncio.gather(_handle_batch(sessions, forward), _handle_batch(sessions, backward))

    async with sessions() as session:
        statement = select(timeslots.c.id, timeslots.c.booked_count).where(timeslots.c.id.in_(ids))
        counts = {row.id: row.booked_count for row in await session.execute(statement)}
    assert counts == dict.fromkeys(ids, 6)
