"""``timeslots generate`` against a real, migrated PostgreSQL database."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import time
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
import pytest_asyncio
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from booking_contracts.catalogue import RoomType
from booking_contracts.money import Money
from platform_runtime.db import make_engine, make_session_factory
from platform_runtime.migrations import upgrade
from platform_runtime.outbox import Outbox
from tests.support.fixtures import CreateDatabase
from tests.support.threads import in_thread
from timeslots import domain, handlers, models
from timeslots.cli import ALEMBIC_INI, main
from timeslots.store import SqlStore

# 2030-01-07 is a Monday: a week of 09:00-12:00 on weekdays in 30-minute slots is 5 x 6.
WEEK = ["--from", "2030-01-07", "--to", "2030-01-13"]
NEXT_WEEK = ["--from", "2030-01-14", "--to", "2030-01-20"]
SLOTS_A_WEEK = 30


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def database(create_database: CreateDatabase) -> AsyncIterator[tuple[str, AsyncEngine]]:
    url = await create_database("timeslots_cli")
    await in_thread(upgrade, ALEMBIC_INI, url)
    engine = make_engine(url, pool_size=2)
    yield url, engine
    await engine.dispose()


@pytest.fixture
def database_url(database: tuple[str, AsyncEngine], monkeypatch: pytest.MonkeyPatch) -> str:
    url = database[0]
    monkeypatch.setenv("TIMESLOTS_DATABASE_URL", url)
    return url


async def add_room(
    engine: AsyncEngine,
    *,
    schedule: bool = True,
    active: bool = True,
    currency: str = "EUR",
    rate: str = "30.00",
) -> UUID:
    outbox = Outbox(models.outbox, source="/timeslots")
    async with make_session_factory(engine)() as session, session.begin():
        store = SqlStore(session)
        room = await handlers.create_room(
            store,
            outbox,
            domain.NewRoom(
                name=f"Room {uuid.uuid4().hex[:6]}",
                capacity=2,
                room_type=RoomType.MEETING,
                hourly_rate=Money.of(rate, currency),
                time_zone="Europe/Berlin",
            ),
            defaults=domain.RuleDefaults(),
        )
        if schedule:
            await handlers.put_schedule(
                store,
                room.id,
                handlers.NewSchedule(
                    open_weekdays=[1, 2, 3, 4, 5],
                    weekday_hours={day: [(time(9), time(12))] for day in range(1, 6)},
                    slot_minutes=30,
                    buffer_minutes=0,
                    max_bookings=1,
                ),
            )
        if not active:
            await handlers.set_room_active(store, outbox, room.id, active=False)
    return room.id


async def generate(*argv: str) -> int:
    """Run ``timeslots generate ARGV`` as an operator would (its own event loop)."""

    def run() -> int:
        with pytest.raises(SystemExit) as exit_info:
            main(["generate", *argv])
        code = exit_info.value.code
        assert isinstance(code, int)
        return code

    return await in_thread(run)


async def slots_of(engine: AsyncEngine, room_id: UUID) -> list[tuple[Decimal, str]]:
    t = models.timeslots
    statement = select(t.c.price, t.c.currency).where(t.c.room_id == room_id)
    async with engine.connect() as conn:
        return [(row.price, row.currency) for row in await conn.execute(statement)]


async def announced(engine: AsyncEngine, room_id: UUID) -> list[dict[str, Any]]:
    """The ``SlotsGenerated`` envelopes waiting in the outbox for the relay."""
    o = models.outbox
    statement = (
        select(o.c.topic, o.c.payload)
        .where(o.c.key == str(room_id), o.c.event_type == "SlotsGenerated.v1")
        .order_by(o.c.id)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(statement)).all()
    assert {row.topic for row in rows} <= {"timeslots.events"}
    return [row.payload for row in rows]


@pytest.mark.usefixtures("root_logger", "database_url")
async def test_generate_fills_a_room_once_and_announces_the_slots(
    database: tuple[str, AsyncEngine], capsys: pytest.CaptureFixture[str]
) -> None:
    engine = database[1]
    room = await add_room(engine)

    assert await generate("--room", str(room), *WEEK, "--json") == 0

    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["rooms"] == 1
    assert summary["rooms_failed"] == 0
    assert summary["slots_created"] == SLOTS_A_WEEK
    assert summary["slots_skipped"] == 0
    assert summary["results"] == [{"room_id": str(room), "created": SLOTS_A_WEEK, "skipped": 0}]
    assert summary["slots_per_second"] > 0
    assert "\r" not in captured.err
    assert "\x1b" not in captured.err
    assert captured.err.startswith(f"generate rooms: 1/1, {SLOTS_A_WEEK} slots created, ")
    slots = await slots_of(engine, room)
    assert slots == [(Decimal("15.0000"), "EUR")] * SLOTS_A_WEEK  # half an hour at 30.00/h
    events = await announced(engine, room)
    assert [e["source"] for e in events] == ["/timeslots"]
    assert len(events[0]["data"]["slots"]) == SLOTS_A_WEEK

    # The same run again creates nothing and announces nothing.
    assert await generate("--room", str(room), *WEEK, "--json") == 0

    again = json.loads(capsys.readouterr().out)
    assert (again["slots_created"], again["slots_skipped"]) == (0, SLOTS_A_WEEK)
    assert len(await slots_of(engine, room)) == SLOTS_A_WEEK
    assert len(await announced(engine, room)) == 1


@pytest.mark.usefixtures("root_logger", "database_url")
async def test_failing_rooms_are_reported_and_the_others_still_get_their_slots(
    database: tuple[str, AsyncEngine], capsys: pytest.CaptureFixture[str]
) -> None:
    engine = database[1]
    good = await add_room(engine)
    yen = await add_room(engine, currency="JPY", rate="3000")
    no_schedule = await add_room(engine, schedule=False)
    inactive = await add_room(engine, active=False)
    unknown = uuid.uuid4()
    rooms = [no_schedule, good, inactive, unknown, yen]

    code = await generate(
        *(arg for room in rooms for arg in ("--room", str(room))),
        *NEXT_WEEK,
        "--price-override",
        "12.50",
    )

    assert code == 1
    out = capsys.readouterr().out
    assert out.startswith(
        "Slot generation 2030-01-14..2030-01-20, price override 12.50\n"
        "  rooms:          5 (1 ok, 4 failed)\n"
        f"  slots created:  {SLOTS_A_WEEK}\n"
        "  slots skipped:  0 (already existed)\n"
    )
    assert "  slots/s:        " in out
    failures = out.split("Failed rooms:\n", 1)[1].splitlines()
    assert failures == [
        f"  {no_schedule}: room {no_schedule} has no schedule; set one first",
        f"  {inactive}: room {inactive} is inactive; activate it to add slots",
        f"  {unknown}: room {unknown} does not exist",
        f"  {yen}: price override 12.50 has more decimal places than JPY allows",
    ]
    assert await slots_of(engine, good) == [(Decimal("12.5000"), "EUR")] * SLOTS_A_WEEK
    for room in (no_schedule, inactive, yen):
        assert await slots_of(engine, room) == []
        assert await announced(engine, room) == []


@pytest.mark.usefixtures("root_logger", "database_url")
async def test_all_rooms_means_every_active_room(
    database: tuple[str, AsyncEngine], capsys: pytest.CaptureFixture[str]
) -> None:
    engine = database[1]
    async with engine.begin() as conn:  # rooms of the other tests would fail or be counted
        await conn.execute(models.timeslots.delete())
        await conn.execute(models.rooms.delete())
    first, second = await add_room(engine), await add_room(engine, currency="USD")
    inactive = await add_room(engine, active=False)

    assert await generate("--all-rooms", *WEEK, "--json") == 0

    summary = json.loads(capsys.readouterr().out)
    assert sorted(r["room_id"] for r in summary["results"]) == sorted([str(first), str(second)])
    assert summary["slots_created"] == 2 * SLOTS_A_WEEK
    assert await slots_of(engine, second) == [(Decimal("15.0000"), "USD")] * SLOTS_A_WEEK
    assert await slots_of(engine, inactive) == []
    async with engine.connect() as conn:
        total = await conn.scalar(select(func.count()).select_from(models.timeslots))
    assert total == 2 * SLOTS_A_WEEK
