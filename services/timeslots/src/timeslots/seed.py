"""``timeslots seed``: a few rooms to start from on a development machine.

Four rooms in four time zones (Berlin, New York, Tokyo, Sydney), each with a schedule of its
own and a month of slots from tomorrow, written as the API writes them (the events go out
through the outbox, so the booking service learns the rooms and slots from the timeslot
worker as usual). Running it again changes nothing: a room with a seed room's name is kept
(its schedule set again) and slots it has are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from platform_runtime.outbox import Outbox
from timeslots import handlers, schemas
from timeslots.models import rooms
from timeslots.store import SqlStore

SEED_DAYS = 30

ROOMS: tuple[dict[str, Any], ...] = (
    {
        "room": {
            "name": "Treatment room 1",
            "capacity": 1,
            "room_type": "treatment",
            "hourly_rate": {"amount": "60.00", "currency": "EUR"},
            "time_zone": "Europe/Berlin",
        },
        "schedule": {
            "open_weekdays": [1, 2, 3, 4, 5],
            "hours": [{"start": "09:00", "end": "17:00"}],
            "slot_minutes": 60,
            "max_bookings": 1,
        },
    },
    {
        "room": {
            "name": "Studio B (group classes)",
            "capacity": 12,
            "room_type": "meeting",
            "hourly_rate": {"amount": "25.00", "currency": "USD"},
            "time_zone": "America/New_York",
        },
        "schedule": {
            "open_weekdays": [1, 2, 3, 4, 5, 6],
            "hours": [{"start": "07:00", "end": "10:00"}, {"start": "17:00", "end": "21:00"}],
            "slot_minutes": 60,
            "max_bookings": 12,
        },
    },
    {
        "room": {
            "name": "Meeting room Shibuya",
            "capacity": 8,
            "room_type": "meeting",
            "hourly_rate": {"amount": "3000", "currency": "JPY"},
            "time_zone": "Asia/Tokyo",
        },
        "schedule": {
            "open_weekdays": [1, 2, 3, 4, 5],
            "hours": [{"start": "09:00", "end": "18:00"}],
            "slot_minutes": 30,
            "buffer_minutes": 0,
            "max_bookings": 1,
        },
    },
    {
        "room": {
            "name": "Consultation room Sydney",
            "capacity": 2,
            "room_type": "consultation",
            "hourly_rate": {"amount": "90.00", "currency": "AUD"},
            "time_zone": "Australia/Sydney",
        },
        "schedule": {
            "open_weekdays": [1, 2, 3, 4],
            "hours": [{"start": "08:30", "end": "12:30"}],
            "weekday_hours": {"4": [{"start": "13:00", "end": "19:00"}]},
            "slot_minutes": 45,
            "buffer_minutes": 15,
            "max_bookings": 1,
        },
    },
)
"""The seed rooms as the API takes them (``POST /rooms``, ``PUT /rooms/{id}/schedule``)."""


@dataclass(frozen=True, slots=True)
class SeededRoom:
    room_id: UUID
    name: str
    time_zone: str
    created: bool
    """False: a room of this name was there already (kept)."""
    slots_created: int
    slots_skipped: int

    def line(self) -> str:
        made = "created" if self.created else "kept"
        return (
            f"{self.name} ({self.time_zone}): room {self.room_id} {made}, "
            f"{self.slots_created} slots created, {self.slots_skipped} there already"
        )


async def seed(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    *,
    today: date,
    days: int = SEED_DAYS,
    limits: handlers.Limits = handlers.Limits(),
) -> list[SeededRoom]:
    """The seed rooms with their schedules and slots from ``today + 1`` for ``days`` days,
    each room in a transaction of its own."""
    seeded = []
    for spec in ROOMS:
        body = schemas.RoomIn.model_validate(spec["room"])
        schedule = schemas.ScheduleIn.model_validate(spec["schedule"])
        async with sessions() as session, session.begin():
            store = SqlStore(session)
            room_id = await session.scalar(
                select(rooms.c.id).where(rooms.c.name == body.name).order_by(rooms.c.created_at)
            )
            created = room_id is None
            if room_id is None:
                room_id = (
                    await handlers.create_room(
                        store, outbox, body.command(), defaults=limits.rule_defaults
                    )
                ).id
            await handlers.put_schedule(store, room_id, schedule.command())
            generation = await handlers.generate(
                store,
                outbox,
                room_id,
                date_from=today + timedelta(days=1),
                date_to=today + timedelta(days=days),
                limits=limits,
            )
        seeded.append(
            SeededRoom(
                room_id,
                body.name,
                body.time_zone,
                created,
                generation.created,
                generation.skipped,
            )
        )
    return seeded
