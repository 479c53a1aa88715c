"""The SQL store keeps the contract its twin held in the process is tested against (the
same cases run on the twin in ``tests/unit/test_memory_store.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.fixtures import CreateDatabase
from tests.support.stores import emptied, migrated
from tests.support.stores.timeslots import AnyStores, StoreContract
from timeslots.cli import ALEMBIC_INI
from timeslots.models import inbox
from timeslots.store import SqlStore

TABLES = ("slot_holds", "timeslots", "schedules", "rooms", "outbox")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def engine(create_database: CreateDatabase) -> AsyncIterator[AsyncEngine]:
    """A migrated database of the module's own."""
    async with migrated(create_database, "timeslots_store", ALEMBIC_INI) as engine:
        yield engine


@pytest_asyncio.fixture(loop_scope="session")
async def stores(engine: AsyncEngine) -> AnyStores:
    """The store on that database, emptied for each case (they list and search everything)."""
    return await emptied(
        engine, ("slot_holds", "timeslots", "schedules", "rooms", "outbox"), inbox, SqlStore
    )


class TestSqlStore(StoreContract):
    pass
