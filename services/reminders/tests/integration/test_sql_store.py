"""The SQL store keeps the contract its twin held in the process is tested against (the
same cases run on the twin in ``tests/unit/test_memory_store.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from reminders.cli import ALEMBIC_INI
from reminders.models import inbox
from reminders.store import SqlStore
from tests.support.fixtures import CreateDatabase
from tests.support.stores import emptied, migrated
from tests.support.stores.reminders import AnyStores, StoreContract


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stores(create_database: CreateDatabase) -> AsyncIterator[AnyStores]:
    """The store on a migrated database of the module's own (each case uses bookings of
    its own)."""
    async with migrated(create_database, "reminders_store", ALEMBIC_INI) as engine:
        yield await emptied(engine, ["reminders"], inbox, SqlStore)


class TestSqlStore(StoreContract):
    pass
