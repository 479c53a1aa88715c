"""Which of a booking's events is the newer: the booking's version decides, not the clocks.

Every booking event carries the booking's version after its change (``booking_version``,
counted by the booking service's database); its envelope time is written by the clock of
whichever booking replica wrote it. A reschedule of a higher version is applied even when
that clock is behind; one of a lower version changes nothing, however late its time. Events
written before versions existed (no ``booking_version``) keep the order of their times, below
every versioned one.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, TypeVar

from booking_contracts.catalogue import BookingConfirmed, BookingRescheduled
from booking_contracts.envelope import Envelope, Event
from reminders.consumers import CONSUMER

from .conftest import Service

BROKERS = ("memory", "kafka")
"""The in-memory broker and the real one: this module is about delivery too (order: the booking's
version decides, however the broker delivers)."""

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)

E = TypeVar("E", bound=Event)


def versioned(event: E, version: int | None) -> E:
    """The event as the booking service writes it, with the booking's version after it
    (validated: a field of another name is refused)."""
    return type(event).model_validate(event.model_dump() | {"booking_version": version})


async def read(service: Service, *envelopes: Envelope) -> None:
    """Wait until the service has handled these events (its inbox has them)."""

    async def handled() -> bool:
        rows = await service.db.fetch(
            "SELECT event_id FROM inbox WHERE consumer = $1 AND event_id = ANY($2::uuid[])",
            CONSUMER,
            [e.id for e in envelopes],
        )
        return len(rows) == len(envelopes)

    await service.until(handled)


async def state(service: Service, booking_id: uuid.UUID) -> dict[str, Any]:
    row = await service.db.fetchrow(
        "SELECT final, version, as_of, starts_at FROM booking_states WHERE booking_id = $1",
        booking_id,
    )
    assert row is not None
    return dict(row)


async def live(service: Service, booking_id: uuid.UUID) -> list[tuple[str, datetime, datetime]]:
    """The live reminders: (kind, scheduled for, the booking's start)."""
    return [
        (r["kind"], r["scheduled_for"], r["starts_at"])
        for r in await service.reminders(booking_id)
        if r["status"] in ("pending", "queued")
    ]


def reminders_for(start: datetime) -> list[tuple[str, datetime, datetime]]:
    return [("email_24h", start - 24 * HOUR, start), ("email_1h", start - HOUR, start)]


async def confirmed(
    service: Service, start: datetime, *, version: int | None
) -> tuple[BookingConfirmed, Envelope]:
    """A booking confirmed now (its reminders scheduled), with this version."""
    booking = versioned(service.confirmed(start), version)
    envelope = await service.publish(booking)
    await read(service, envelope)
    assert await live(service, booking.booking_id) == reminders_for(start)
    return booking, envelope


def moved(
    service: Service, booking: BookingConfirmed, to: datetime, *, version: int | None
) -> BookingRescheduled:
    return versioned(service.rescheduled(booking, to), version)


async def test_a_confirmation_stores_its_version(service: Service) -> None:
    start = service.day()
    service.clock.set(start - 72 * HOUR)

    booking, envelope = await confirmed(service, start, version=2)

    assert await state(service, booking.booking_id) == {
        "final": False,
        "version": 2,
        "as_of": envelope.time,
        "starts_at": start,
    }


async def test_a_reschedule_of_a_higher_version_is_applied_though_its_clock_is_behind(
    service: Service,
) -> None:
    """The reschedule was written by a replica whose clock is ten minutes behind the one
    that wrote the confirmation: its envelope time is earlier, its version higher."""
    start = service.day()
    service.clock.set(start - 72 * HOUR)
    booking, confirmation = await confirmed(service, start, version=2)
    later = start + 48 * HOUR
    behind = confirmation.time - 10 * MINUTE

    await service.publish(moved(service, booking, later, version=3), at=behind)

    await service.until(lambda: _starting(service, booking.booking_id, later))
    assert await live(service, booking.booking_id) == reminders_for(later)
    assert await state(service, booking.booking_id) == {
        "final": False,
        "version": 3,
        "as_of": behind,
        "starts_at": later,
    }


async def test_a_reschedule_of_a_lower_version_changes_nothing_however_late_its_time(
    service: Service,
) -> None:
    """Moved twice (versions 3, then 4); the first move is read again afterwards, with a
    later envelope time (a replica whose clock is ahead, a replay): the booking keeps its
    newer start and reminders. So does a second copy of version 4 with another time."""
    start = service.day()
    service.clock.set(start - 72 * HOUR)
    booking, confirmation = await confirmed(service, start, version=2)
    first_move, second_move = start + 24 * HOUR, start + 48 * HOUR
    t0 = confirmation.time
    await service.publish(moved(service, booking, first_move, version=3), at=t0 + MINUTE)
    newest = await service.publish(
        moved(service, booking, second_move, version=4), at=t0 + 2 * MINUTE
    )
    await service.until(lambda: _starting(service, booking.booking_id, second_move))

    late = await service.publish(moved(service, booking, first_move, version=3), at=t0 + HOUR)
    again = await service.publish(
        moved(service, booking, start + 72 * HOUR, version=4), at=t0 + 2 * HOUR
    )
    await read(service, late, again)

    assert await live(service, booking.booking_id) == reminders_for(second_move)
    assert await state(service, booking.booking_id) == {
        "final": False,
        "version": 4,
        "as_of": newest.time,
        "starts_at": second_move,
    }


async def test_unversioned_events_keep_the_time_order_and_a_versioned_one_wins_over_them(
    service: Service,
) -> None:
    """Events written before versions existed are ordered by their times; the first
    versioned event is newer than all of them, whatever its time, and from then on an
    unversioned one never wins."""
    start = service.day()
    service.clock.set(start - 72 * HOUR)
    booking, confirmation = await confirmed(service, start, version=None)
    t0 = confirmation.time
    m1, m2, m3 = start + 24 * HOUR, start + 48 * HOUR, start + 72 * HOUR

    await service.publish(moved(service, booking, m1, version=None), at=t0 + 10 * MINUTE)
    await service.until(lambda: _starting(service, booking.booking_id, m1))
    older = await service.publish(moved(service, booking, m2, version=None), at=t0 + MINUTE)
    await read(service, older)
    assert await live(service, booking.booking_id) == reminders_for(m1)  # time order kept
    assert (await state(service, booking.booking_id))["version"] == 0

    # versioned, written by a replica whose clock is an hour behind every event so far
    await service.publish(moved(service, booking, m3, version=3), at=t0 - HOUR)
    await service.until(lambda: _starting(service, booking.booking_id, m3))
    unversioned = await service.publish(moved(service, booking, m1, version=None), at=t0 + HOUR)
    await read(service, unversioned)

    assert await live(service, booking.booking_id) == reminders_for(m3)
    assert await state(service, booking.booking_id) == {
        "final": False,
        "version": 3,
        "as_of": t0 - HOUR,
        "starts_at": m3,
    }


async def test_an_ended_booking_stays_ended_whatever_is_read_after_the_end(
    service: Service,
) -> None:
    """Cancelled (version 3) by a replica whose clock is behind; then a reschedule of a
    higher version and a later time, a copy of the confirmation, and an unversioned
    cancellation with a later time: the booking stays ended, with no live reminder, and
    keeps the greatest order key it has seen."""
    start = service.day()
    service.clock.set(start - 72 * HOUR)
    booking, confirmation = await confirmed(service, start, version=2)
    t0 = confirmation.time
    cancelled = versioned(service.cancelled(booking), 3)
    await service.publish(cancelled, at=t0 - HOUR)
    await service.statuses(booking.booking_id, {"email_24h": "cancelled", "email_1h": "cancelled"})

    after = [
        await service.publish(moved(service, booking, start + 24 * HOUR, version=5), at=t0 + HOUR),
        await service.publish(booking, at=t0 + 2 * HOUR),
        await service.publish(versioned(cancelled, None), at=t0 + 3 * HOUR),
    ]
    await read(service, *after)

    assert await live(service, booking.booking_id) == []
    assert len(await service.reminders(booking.booking_id)) == 2
    assert await state(service, booking.booking_id) == {
        "final": True,
        "version": 3,
        "as_of": t0 - HOUR,
        "starts_at": start,
    }


async def test_an_end_read_before_the_confirmation_keeps_its_version(service: Service) -> None:
    start = service.day()
    service.clock.set(start - 72 * HOUR)
    booking = versioned(service.confirmed(start), 2)
    ended = await service.publish(versioned(service.cancelled(booking), 3))
    await read(service, ended)

    late = await service.publish(booking, at=ended.time + HOUR)
    await read(service, late)

    assert await service.reminders(booking.booking_id) == []
    assert await state(service, booking.booking_id) == {
        "final": True,
        "version": 3,
        "as_of": ended.time,
        "starts_at": None,
    }


async def _starting(
    service: Service, booking_id: uuid.UUID, start: datetime
) -> list[tuple[str, datetime, datetime]]:
    rows = await live(service, booking_id)
    return rows if rows and all(starts_at == start for _, _, starts_at in rows) else []
