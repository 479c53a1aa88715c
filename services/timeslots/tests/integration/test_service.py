"""The timeslots service against real PostgreSQL and Kafka: migrations, health, metrics, and
the JWT secret it starts with."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from platform_runtime.migrations import upgrade
from tests.support.fixtures import CreateDatabase
from tests.support.migrations import check_migration_history
from tests.support.platform import Replica
from tests.support.service import (
    ServiceKit,
    check_a_migrated_service_is_ready,
    check_the_worker_purges_its_inbox,
)
from tests.support.threads import in_thread
from timeslots.cli import ALEMBIC_INI
from timeslots.main import create_app
from timeslots.models import metadata
from timeslots.settings import TimeslotsSettings

KIT = ServiceKit("timeslots", ALEMBIC_INI, TimeslotsSettings, create_app)


async def test_migration_history_upgrades_downgrades_and_matches_the_models(
    create_database: CreateDatabase,
) -> None:
    assert Path(ALEMBIC_INI).is_file()
    await check_migration_history(await create_database("timeslots"), ALEMBIC_INI, metadata)


async def test_a_migrated_service_is_ready_and_reports_metrics(
    create_database: CreateDatabase, kafka_bootstrap: str
) -> None:
    await check_a_migrated_service_is_ready(KIT, create_database, kafka_bootstrap)


async def test_the_worker_purges_inbox_rows_older_than_the_retention(
    create_database: CreateDatabase, kafka_bootstrap: str
) -> None:
    await check_the_worker_purges_its_inbox(KIT, create_database, kafka_bootstrap)


REFUSAL = (
    "timeslots refuses to start: its API would accept tokens signed with the public "
    "development JWT secret, so set TIMESLOTS_JWT_SECRET to a secret of your own (at least 32 "
    "random bytes), or TIMESLOTS_DEVELOPMENT=true on a development machine"
)


def api_process(log: Path, **settings: str) -> Replica:
    """``timeslots serve --role api`` with only these ``TIMESLOTS_*`` settings."""
    others = {k: v for k, v in os.environ.items() if not k.startswith("TIMESLOTS_")}
    return Replica(service="timeslots", index=0, env=others | settings, log=log, role="api")


async def test_the_service_refuses_to_start_with_the_development_secret_and_says_why(
    tmp_path: Path,
) -> None:
    process = api_process(tmp_path / "refused.log")
    process.start()
    assert process.process is not None
    try:
        code = await in_thread(process.process.wait, 60)
    finally:
        process.terminate()

    assert code == 1
    assert REFUSAL in process.log.read_text()


@pytest.mark.parametrize(
    "settings",
    [
        {"TIMESLOTS_DEVELOPMENT": "true"},
        {"TIMESLOTS_JWT_SECRET": "an-own-secret-of-at-least-thirty-two-bytes"},
    ],
    ids=["development", "own-secret"],
)
async def test_the_service_starts_in_development_or_with_a_secret_of_its_own(
    create_database: CreateDatabase, tmp_path: Path, settings: dict[str, str]
) -> None:
    url = await create_database("timeslots")
    await in_thread(upgrade, ALEMBIC_INI, url)
    process = api_process(tmp_path / "started.log", TIMESLOTS_DATABASE_URL=url, **settings)
    process.start()
    try:
        await process.wait_ready()
    finally:
        process.terminate()

    assert REFUSAL not in process.log.read_text()
