"""What PostgreSQL itself refuses, whoever writes: overlaps, orphans, unsafe isolation."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest
import pytest_asyncio

from platform_runtime.db import asyncpg_dsn, make_engine, make_session_factory
from platform_runtime.migrations import upgrade
from tests.support.fixtures import CreateDatabase
from tests.support.threads import in_thread
from timeslots import domain
from timeslots.cli import ALEMBIC_INI
from timeslots.store import SqlStore

ROOM = """
INSERT INTO rooms (id, name, capacity, room_type, hourly_rate, currency, time_zone)
VALUES ($1, 'r', 1, 'office', 10, 'EUR', 'UTC')
"""
SLOT = """
INSERT INTO timeslots (room_id, starts_at, ends_at, price, currency)
VALUES ($1, $2::text::timestamptz, $3::text::timestamptz, 5, 'EUR')
"""


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def database_url(create_database: CreateDatabase) -> str:
    url = await create_database("timeslots_rules")
    await in_thread(upgrade, ALEMBIC_INI, url)
    return url


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(asyncpg_dsn(database_url), min_size=2, max_size=4)
    yield pool
    await pool.close()


async def _room(pool: asyncpg.Pool) -> uuid.UUID:
    room = uuid.uuid4()
    await pool.execute(ROOM, room)
    await pool.execute(SLOT, room, "2030-01-01T10:00Z", "2030-01-01T11:00Z")
    return room


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2030-01-01T10:30Z", "2030-01-01T10:45Z"),  # inside
        ("2030-01-01T09:30Z", "2030-01-01T10:01Z"),  # across the start
        ("2030-01-01T10:59Z", "2030-01-01T12:00Z"),  # across the end
        ("2030-01-01T09:00Z", "2030-01-01T12:00Z"),  # around
    ],
)
async def test_an_overlapping_slot_is_refused(pool: asyncpg.Pool, start: str, end: str) -> None:
    room = await _room(pool)

    with pytest.raises(asyncpg.ExclusionViolationError, match="overlaps slot") as info:
        await pool.execute(SLOT, room, start, end)

    assert info.value.constraint_name == "timeslots_no_overlap"


async def test_back_to_back_slots_and_other_rooms_are_fine(pool: asyncpg.Pool) -> None:
    room, other = await _room(pool), await _room(pool)

    await pool.execute(SLOT, room, "2030-01-01T11:00Z", "2030-01-01T11:30Z")
    await pool.execute(SLOT, room, "2030-01-01T09:30Z", "2030-01-01T10:00Z")
    await pool.execute(SLOT, other, "2030-01-01T11:00Z", "2030-01-01T12:00Z")

    assert await pool.fetchval("SELECT count(*) FROM timeslots WHERE room_id = $1", room) == 3


async def test_new_slots_overlapping_each_other_in_one_statement_are_refused(
    pool: asyncpg.Pool,
) -> None:
    room = await _room(pool)

    with pytest.raises(asyncpg.ExclusionViolationError):
        await pool.execute(
            """
            INSERT INTO timeslots (room_id, starts_at, ends_at, price, currency)
            VALUES ($1, '2030-01-02T09:00Z', '2030-01-02T12:00Z', 5, 'EUR'),
                   ($1, '2030-01-02T10:00Z', '2030-01-02T10:30Z', 5, 'EUR'),
                   ($1, '2030-01-02T13:00Z', '2030-01-02T14:00Z', 5, 'EUR')
            """,
            room,
        )


async def test_moving_a_slot_onto_another_is_refused(pool: asyncpg.Pool) -> None:
    room = await _room(pool)
    await pool.execute(SLOT, room, "2030-01-01T12:00Z", "2030-01-01T13:00Z")

    with pytest.raises(asyncpg.ExclusionViolationError):
        await pool.execute(
            "UPDATE timeslots SET ends_at = '2030-01-01T12:30Z' "
            "WHERE room_id = $1 AND starts_at = '2030-01-01T10:00Z'",
            room,
        )


async def test_two_transactions_racing_for_overlapping_slots_cannot_both_commit(
    pool: asyncpg.Pool,
) -> None:
    room = await _room(pool)
    first, second = await pool.acquire(), await pool.acquire()
    try:
        one, two = first.transaction(), second.transaction()
        await one.start()
        await two.start()
        await first.execute(SLOT, room, "2030-01-03T10:00Z", "2030-01-03T11:00Z")
        blocked = asyncio.create_task(
            second.execute(SLOT, room, "2030-01-03T10:30Z", "2030-01-03T11:30Z")
        )
        await asyncio.sleep(0.3)
        assert not blocked.done(), "the second writer of the room waits for the first"
        await one.commit()
        with pytest.raises(asyncpg.ExclusionViolationError):
            await blocked
        await two.rollback()
    finally:
        await pool.release(first)
        await pool.release(second)


async def test_slots_need_an_existing_room_and_a_room_with_slots_stays(
    pool: asyncpg.Pool,
) -> None:
    room = await _room(pool)

    with pytest.raises(asyncpg.ForeignKeyViolationError, match="does not exist"):
        await pool.execute(SLOT, uuid.uuid4(), "2030-01-01T10:00Z", "2030-01-01T11:00Z")
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="deactivate it instead"):
        await pool.execute("DELETE FROM rooms WHERE id = $1", room)


async def test_writing_slots_outside_read_committed_is_refused(pool: asyncpg.Pool) -> None:
    room = await _room(pool)

    async with pool.acquire() as connection:
        with pytest.raises(asyncpg.ObjectNotInPrerequisiteStateError, match="READ COMMITTED"):
            async with connection.transaction(isolation="repeatable_read"):
                await connection.execute(SLOT, room, "2030-01-05T10:00Z", "2030-01-05T11:00Z")


async def test_a_writer_that_skips_the_checks_still_gets_a_clear_overlap_error(
    pool: asyncpg.Pool, database_url: str
) -> None:
    room = await _room(pool)
    engine = make_engine(database_url)
    try:
        async with make_session_factory(engine)() as session, session.begin():
            with pytest.raises(domain.SlotOverlap, match="nothing was added"):
                await SqlStore(session).insert_custom(
                    room_id=room,
                    currency="EUR",
                    slots=[
                        (
                            datetime(2030, 1, 1, 10, 30, tzinfo=UTC),
                            datetime(2030, 1, 1, 11, 30, tzinfo=UTC),
                            Decimal(5),
                            1,
                        )
                    ],
                )
    finally:
        await engine.dispose()
