"""The store twin held in the process keeps the contract of the SQL store (the same cases
run against PostgreSQL in ``tests/integration/test_sql_store.py``)."""

from __future__ import annotations

import pytest

from platform_runtime.memorydb import MemoryDatabase
from platform_runtime.transactions import Stores
from tests.support.stores.timeslots import AnyStores, StoreContract
from timeslots.memory import MemoryStore, TimeslotsState


@pytest.fixture
def stores() -> AnyStores:
    return Stores(MemoryDatabase(TimeslotsState()), MemoryStore)


class TestMemoryStore(StoreContract):
    pass
