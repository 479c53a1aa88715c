"""The booking service against real PostgreSQL and Kafka: migrations, health, metrics."""

from __future__ import annotations

from pathlib import Path

from booking.cli import ALEMBIC_INI
from booking.main import create_app
from booking.models import metadata
from booking.settings import BookingSettings
from shared.migrations import upgrade
from shared.settings import Role
from tests.support.fixtures import CreateDatabase
from tests.support.migrations import check_migration_history
from tests.support.service import check_service_starts_ready, check_worker_purges_old_inbox_rows
from tests.support.threads import in_thread


async def test_migration_history_upgrades_downgrades_and_matches_the_models(
    create_database: CreateDatabase,
) -> None:
    assert Path(ALEMBIC_INI).is_file()
    await check_migration_history(await create_database("booking"), ALEMBIC_INI, metadata)


async def test_a_migrated_service_is_ready_and_reports_metrics(
    create_database: CreateDatabase, kafka_bootstrap: str
) -> None:
    url = await create_database("booking")
    await in_thread(upgrade, ALEMBIC_INI, url)

    await check_service_starts_ready(
        create_app(
            BookingSettings(
                database_url=url, kafka_bootstrap_servers=kafka_bootstrap, development=True
            )
        )
    )


async def test_the_worker_purges_inbox_rows_older_than_the_retention(
    create_database: CreateDatabase, kafka_bootstrap: str
) -> None:
    url = await create_database("booking")
    await in_thread(upgrade, ALEMBIC_INI, url)
    settings = BookingSettings(
        database_url=url,
        kafka_bootstrap_servers=kafka_bootstrap,
        role=Role.WORKER,
        inbox_purge_interval_s=0.1,
    )

    await check_worker_purges_old_inbox_rows(create_app(settings), url)
