"""The SQL store keeps the contract its twin held in the process is tested against (the
same cases run on the twin in ``tests/unit/test_memory_store.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from booking.cli import ALEMBIC_INI
from booking.models import inbox
from booking.store import SqlStore
from platform_runtime.db import make_engine, make_session_factory
from platform_runtime.migrations import upgrade
from platform_runtime.transactions import SqlTransactions, Stores
from tests.support.fixtures import CreateDatabase
from tests.support.stores.booking import AnyStores, FullContract
from tests.support.threads import in_thread

TABLES = (
    "rooms",
    "slots",
    "bookings",
    "refunds",
    "stray_payments",
    "quota_counts",
    "booking_quotas",
    "waitlist_entries",
)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def engine(create_database: CreateDatabase) -> AsyncIterator[AsyncEngine]:
    """A migrated database of the module's own."""
    url = await create_database("booking_store")
    await in_thread(upgrade, ALEMBIC_INI, url)
    engine = make_engine(url, pool_size=2)
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def stores(engine: AsyncEngine) -> AnyStores:
    """The store on that database, emptied for each case."""
    async with engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {', '.join(TABLES)} CASCADE"))
    return Stores(SqlTransactions(make_session_factory(engine), inbox), SqlStore)


class TestSqlStore(FullContract):
    pass
