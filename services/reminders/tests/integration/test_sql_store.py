"""The SQL store keeps the contract its twin held in the process is tested against (the
same cases run on the twin in ``tests/unit/test_memory_store.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from platform_runtime.db import make_engine, make_session_factory
from platform_runtime.migrations import upgrade
from platform_runtime.transactions import SqlTransactions, Stores
from reminders.cli import ALEMBIC_INI
from reminders.models import inbox
from reminders.store import SqlStore
from tests.support.fixtures import CreateDatabase
from tests.support.stores.reminders import AnyStores, StoreContract
from tests.support.threads import in_thread


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stores(create_database: CreateDatabase) -> AsyncIterator[AnyStores]:
    """The store on a migrated database of the module's own (each case uses bookings of
    its own)."""
    url = await create_database("reminders_store")
    await in_thread(upgrade, ALEMBIC_INI, url)
    engine = make_engine(url, pool_size=2)
    try:
        yield Stores(SqlTransactions(make_session_factory(engine), inbox), SqlStore)
    finally:
        await engine.dispose()


class TestSqlStore(StoreContract):
    pass
