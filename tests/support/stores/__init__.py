"""The contract cases of each service's store (one module per service), and what their SQL
side shares: a migrated database of the test module's own, emptied before each case."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from platform_runtime.db import make_engine, make_session_factory
from platform_runtime.migrations import upgrade
from platform_runtime.transactions import SqlTransactions, Stores
from tests.support.fixtures import CreateDatabase
from tests.support.threads import in_thread


@asynccontextmanager
async def migrated(
    create_database: CreateDatabase, purpose: str, alembic_ini: Path
) -> AsyncIterator[AsyncEngine]:
    """An engine on a new database migrated to head."""
    url = await create_database(purpose)
    await in_thread(upgrade, alembic_ini, url)
    engine = make_engine(url, pool_size=2)
    try:
        yield engine
    finally:
        await engine.dispose()


async def emptied(
    engine: AsyncEngine,
    tables: Sequence[str],
    inbox: Table,
    store: Callable[[AsyncSession], Any],
) -> Stores[AsyncSession, Any]:
    """The SQL store on ``engine``'s database, ``tables`` emptied first."""
    async with engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {', '.join(tables)} CASCADE"))
    return Stores(SqlTransactions(make_session_factory(engine), inbox), store)
