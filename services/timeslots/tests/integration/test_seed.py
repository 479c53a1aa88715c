"""``timeslots seed``: rooms in four time zones with a month of slots, once however often run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from platform_runtime.db import make_engine
from platform_runtime.migrations import upgrade
from tests.support.fixtures import CreateDatabase
from tests.support.threads import in_thread
from timeslots.cli import ALEMBIC_INI, main
from timeslots.seed import ROOMS


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def database(create_database: CreateDatabase) -> AsyncIterator[tuple[str, AsyncEngine]]:
    url = await create_database("timeslots_seed")
    await in_thread(upgrade, ALEMBIC_INI, url)
    engine = make_engine(url, pool_size=2)
    yield url, engine
    await engine.dispose()


def seed(url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    monkeypatch.setenv("TIMESLOTS_DATABASE_URL", url)
    with pytest.raises(SystemExit) as exit_info:
        main(["seed", "--days", "14"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


async def test_seed_makes_rooms_in_four_zones_with_slots_in_their_local_hours_once(
    database: tuple[str, AsyncEngine],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, engine = database

    first = await in_thread(seed, url, monkeypatch, capsys)
    again = await in_thread(seed, url, monkeypatch, capsys)
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                text(
                    "SELECT r.name, r.time_zone, count(t.id) AS slots, min(t.starts_at) AS first "
                    "FROM rooms r JOIN timeslots t ON t.room_id = r.id GROUP BY r.name, "
                    "r.time_zone ORDER BY r.name"
                )
            )
        ).all()
        announced = await connection.scalar(
            text("SELECT count(*) FROM outbox WHERE event_type LIKE 'SlotsGenerated%'")
        )

    assert len(first.splitlines()) == len(ROOMS) == 4
    assert all(
        " created, " in line and " 0 slots created" not in line for line in first.splitlines()
    )
    assert all("kept, 0 slots created" in line for line in again.splitlines())
    assert {row.time_zone for row in rows} == {
        "Europe/Berlin",
        "America/New_York",
        "Asia/Tokyo",
        "Australia/Sydney",
    }
    opening = {"Europe/Berlin": "09:00", "Asia/Tokyo": "09:00", "Australia/Sydney": "08:30"}
    for row in rows:
        assert row.slots > 0
        local = row.first.astimezone(ZoneInfo(row.time_zone)).strftime("%H:%M")
        assert local == opening.get(row.time_zone, "07:00"), row
    assert announced >= len(ROOMS)  # the booking service hears of every slot
