"""The store twin held in the process keeps the contract of the SQL store, as far as it goes
so far (the same cases run against PostgreSQL in ``tests/integration/test_sql_store.py``)."""

from __future__ import annotations

import pytest

from booking.memory import BookingState, MemoryStore
from platform_runtime.memorydb import MemoryDatabase
from platform_runtime.transactions import Stores
from tests.support.stores.booking import AnyStores, FullContract


@pytest.fixture
def stores() -> AnyStores:
    return Stores(MemoryDatabase(BookingState()), MemoryStore)


class TestMemoryStore(FullContract):
    pass
