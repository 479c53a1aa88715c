"""The check every migration history must pass on a real database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Connection

from platform_runtime.db import make_engine
from platform_runtime.migrations import downgrade, upgrade
from tests.support.threads import in_thread


def _diff(connection: Connection, metadata: MetaData) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def check_migration_history(url: str, alembic_ini: Path, metadata: MetaData) -> None:
    """Upgrade to head, downgrade to base, upgrade again; then no autogenerate diff remains."""
    await in_thread(upgrade, alembic_ini, url, "head")
    await in_thread(downgrade, alembic_ini, url, "base")
    engine = make_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) <= {"alembic_version"}, "downgrade left tables"
        await in_thread(upgrade, alembic_ini, url, "head")
        async with engine.connect() as conn:
            assert set(metadata.tables) <= await conn.run_sync(_tables)
            diff = await conn.run_sync(_diff, metadata)
        assert diff == [], f"models and migrations differ: {diff}"
    finally:
        await engine.dispose()
