"""The store twin held in the process keeps the contract of the SQL store (the same cases
run against PostgreSQL in ``tests/integration/test_sql_store.py``)."""

from __future__ import annotations

import pytest

from platform_runtime.memorydb import MemoryDatabase
from platform_runtime.transactions import Stores
from reminders.memory import MemoryStore, RemindersState
from tests.support.stores.reminders import AnyStores, StoreContract


@pytest.fixture
def stores() -> AnyStores:
    db = MemoryDatabase(RemindersState())
    return Stores(db, MemoryStore)


class TestMemoryStore(StoreContract):
    pass
