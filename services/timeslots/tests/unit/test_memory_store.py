"""The store twin held in the process keeps the contract of the SQL store (the same cases
run against PostgreSQL in ``tests/integration/test_sql_store.py``)."""

from __future__ import annotations

import pytest

from platform_runtime.transactions import Stores
from tests.support.stores.timeslots import AnyStores, StoreContract
from timeslots.memory import MemoryStore, memory_database


@pytest.fixture
def stores() -> AnyStores:
    return Stores(memory_database(), MemoryStore)


class TestMemoryStore(StoreContract):
    pass
