"""The SQL store keeps the contract its twin held in the process is tested against (the
same cases run on the twin in ``tests/unit/test_memory_store.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from booking.cli import ALEMBIC_INI
from booking.models import inbox
from booking.store import SqlStore
from tests.support.fixtures import CreateDatabase
from tests.support.stores import emptied, migrated
from tests.support.stores.booking import AnyStores, FullContract

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
    async with migrated(create_database, "booking_store", ALEMBIC_INI) as engine:
        yield engine


@pytest_asyncio.fixture(loop_scope="session")
async def stores(engine: AsyncEngine) -> AnyStores:
    """The store on that database, emptied for each case (they list and search everything)."""
    return await emptied(engine, TABLES, inbox, SqlStore)


class TestSqlStore(FullContract):
    pass
