"""Pytest fixtures for tests against the real infrastructure (loaded by the root conftest)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import asyncpg
import pytest
import pytest_asyncio

from tests.support import infra
from tests.support.broker import SecureBroker, secure_broker
from tests.support.brokers import Broker, KafkaBroker, MemoryBroker


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    with infra.postgres_dsn() as dsn:
        yield dsn


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    with infra.kafka_bootstrap() as bootstrap:
        yield bootstrap


CreateDatabase = Callable[[str], Awaitable[str]]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def create_database(postgres_dsn: str) -> AsyncIterator[CreateDatabase]:
    """Factory: a new empty database named after its purpose; returns its asyncpg SQLAlchemy URL.

    Every database made here is dropped when the test session ends.
    """
    created: list[str] = []

    async def create(purpose: str) -> str:
        name = f"t_{purpose}_{uuid.uuid4().hex[:10]}".lower()
        admin = await asyncpg.connect(f"{postgres_dsn}/postgres")
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        created.append(name)
        return f"{postgres_dsn.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"

    yield create
    admin = await asyncpg.connect(f"{postgres_dsn}/postgres")
    try:
        for name in created:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, put back as it was after the test (the CLI and tests configure it)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def unique() -> Callable[[str], str]:
    """``unique("orders")`` -> ``orders-3f2a…``: topic and group names no other test uses."""

    def make(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:12]}"

    return make


@pytest.fixture(scope="session")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """A broker of its own (own ports and state directory) that lets in only clients with TLS
    and the right SCRAM-SHA-512 login; started on first use, stopped when the session ends."""
    broker = secure_broker(tmp_path_factory.mktemp("secure-kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


BROKERS = ("memory",)
"""Which brokers a test module's service runs on, unless the module says otherwise with a
``BROKERS`` of its own: ``"memory"`` (an in-memory broker of the module's own) and/or
``"kafka"`` (the real broker). A module about delivery itself (order, batches, duplicates,
poison) runs on both: each of its tests once per broker."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "broker" in metafunc.fixturenames:
        kinds = getattr(metafunc.module, "BROKERS", BROKERS)
        metafunc.parametrize("broker", kinds, indirect=True, scope="module")


@pytest.fixture(scope="module")
def broker(request: pytest.FixtureRequest) -> Broker:
    """The broker the service of a test module runs on (see ``BROKERS``): an in-memory one
    of the module's own, so its consumer groups are its own too, or the real broker."""
    if request.param == "kafka":
        return KafkaBroker(request.getfixturevalue("kafka_bootstrap"))
    return MemoryBroker()
