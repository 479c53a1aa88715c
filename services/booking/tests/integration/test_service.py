"""The booking service against real PostgreSQL and Kafka: migrations, health, metrics."""

from __future__ import annotations

from pathlib import Path

from booking.cli import ALEMBIC_INI
from booking.main import create_app
from booking.models import metadata
from booking.settings import BookingSettings
from tests.support.fixtures import CreateDatabase
from tests.support.migrations import check_migration_history
from tests.support.service import (
    ServiceKit,
    check_a_migrated_service_is_ready,
    check_the_worker_purges_its_inbox,
)

KIT = ServiceKit("booking", ALEMBIC_INI, BookingSettings, create_app)


async def test_migration_history_upgrades_downgrades_and_matches_the_models(
    create_database: CreateDatabase,
) -> None:
    assert Path(ALEMBIC_INI).is_file()
    await check_migration_history(await create_database("booking"), ALEMBIC_INI, metadata)


async def test_a_migrated_service_is_ready_and_reports_metrics(
    create_database: CreateDatabase, kafka_bootstrap: str
) -> None:
    await check_a_migrated_service_is_ready(KIT, create_database, kafka_bootstrap)


async def test_the_worker_purges_inbox_rows_older_than_the_retention(
    create_database: CreateDatabase, kafka_bootstrap: str
) -> None:
    await check_the_worker_purges_its_inbox(KIT, create_database, kafka_bootstrap)
