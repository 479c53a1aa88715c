"""The reminders service against real PostgreSQL and Kafka: migrations, health, metrics."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg

from platform_runtime.db import asyncpg_dsn
from platform_runtime.migrations import downgrade, upgrade
from reminders.cli import ALEMBIC_INI
from reminders.main import create_app
from reminders.models import metadata
from reminders.settings import RemindersSettings
from tests.support.fixtures import CreateDatabase
from tests.support.migrations import check_migration_history
from tests.support.service import (
    ServiceKit,
    check_a_migrated_service_is_ready,
    check_the_worker_purges_its_inbox,
)
from tests.support.threads import in_thread

KIT = ServiceKit("reminders", ALEMBIC_INI, RemindersSettings, create_app)


async def test_migration_history_upgrades_downgrades_and_matches_the_models(
    create_database: CreateDatabase,
) -> None:
    assert Path(ALEMBIC_INI).is_file()
    await check_migration_history(await create_database("reminders"), ALEMBIC_INI, metadata)


async def test_booking_states_written_before_versions_are_unversioned(
    create_database: CreateDatabase,
) -> None:
    """Migration 0004 gives every booking state a version: 0 for the rows already there
    (any versioned event is newer); its downgrade drops it."""
    url = await create_database("reminders")
    booking_id = uuid.uuid4()
    await in_thread(upgrade, ALEMBIC_INI, url, "0003")
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(
            "INSERT INTO booking_states (booking_id, final, as_of) VALUES ($1, true, now())",
            booking_id,
        )
        await in_thread(upgrade, ALEMBIC_INI, url, "0004")
        version = "SELECT version FROM booking_states WHERE booking_id = $1"
        assert await conn.fetchval(version, booking_id) == 0

        await in_thread(downgrade, ALEMBIC_INI, url, "0003")
        columns = await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'booking_states'"
        )
        assert "version" not in {c["column_name"] for c in columns}
        assert await conn.fetchval("SELECT count(*) FROM booking_states") == 1
    finally:
        await conn.close()


async def test_a_migrated_service_is_ready_and_reports_metrics(
    create_database: CreateDatabase, kafka_bootstrap: str
) -> None:
    await check_a_migrated_service_is_ready(KIT, create_database, kafka_bootstrap)


async def test_the_worker_purges_inbox_rows_older_than_the_retention(
    create_database: CreateDatabase, kafka_bootstrap: str
) -> None:
    await check_the_worker_purges_its_inbox(KIT, create_database, kafka_bootstrap)
