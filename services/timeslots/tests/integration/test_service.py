"""The timeslots service against real PostgreSQL and Kafka: migrations, health, metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.fixtures import CreateDatabase
from tests.support.migrations import check_migration_history
from tests.support.service import bearer, running
from timeslots.cli import ALEMBIC_INI
from timeslots.main import create_app
from timeslots.models import metadata
from timeslots.settings import TimeslotsSettings


async def test_migration_history_upgrades_downgrades_and_matches_the_models(
    create_database: CreateDatabase,
) -> None:
    assert Path(ALEMBIC_INI).is_file()
    await check_migration_history(await create_database("timeslots"), ALEMBIC_INI, metadata)


async def test_a_migrated_service_is_ready_and_reports_metrics(
    create_database: CreateDatabase, kafka_bootstrap: str
) -> None:
    from shared.migrations import upgrade

    url = await create_database("timeslots")
    await asyncio.to_thread(upgrade, ALEMBIC_INI, url)
    settings = TimeslotsSettings(database_url=url, kafka_bootstrap_servers=kafka_bootstrap)

    async with running(create_app(settings)) as client:
        live = await client.get("/health/live")
        ready = await client.get("/health/ready")
        metrics = await client.get("/metrics")
        missing = await client.get("/no-such-thing", headers=bearer())

    assert live.status_code == 200
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "kafka": "ok"}
    assert "outbox_backlog" in metrics.text
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
