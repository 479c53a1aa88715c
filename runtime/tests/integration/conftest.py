"""A tiny service-shaped schema to exercise the kernel against real PostgreSQL and Kafka."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import ClassVar
from uuid import UUID

import pytest_asyncio
from sqlalchemy import Column, Integer, String, Table, Uuid
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from booking_contracts.envelope import Event, EventCatalogue
from platform_runtime.db import make_engine, make_session_factory, service_metadata
from platform_runtime.inbox import inbox_table
from platform_runtime.kafka import KafkaPublisher, ensure_topics
from platform_runtime.outbox import Outbox, outbox_table
from tests.support.fixtures import CreateDatabase

metadata = service_metadata()
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
effects = Table(
    "effects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_id", Uuid, nullable=False),
    Column("note", String(200), nullable=False),
)


class KernelTestEvent(Event):
    """An event only these tests publish; its topic is chosen per test."""

    name: ClassVar[str] = "KernelTestEvent"
    topic: ClassVar[str] = "kernel-tests"  # overridden per test through a subclass
    order_id: UUID
    note: str

    def aggregate_id(self) -> str:
        return str(self.order_id)


EventCatalogue.register(KernelTestEvent)


@dataclass
class Db:
    url: str
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    outbox: Outbox


@pytest_asyncio.fixture(loop_scope="session")
async def db(create_database: CreateDatabase) -> AsyncIterator[Db]:
    url = await create_database("kernel")
    engine = make_engine(url, pool_size=5)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield Db(
        url=url,
        engine=engine,
        sessions=make_session_factory(engine),
        outbox=Outbox(outbox, source="/kernel-tests"),
    )
    await engine.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def topic(unique: Callable[[str], str], kafka_bootstrap: str) -> str:
    """A new topic for this test; the kernel's test event is published to it."""
    name = unique("kernel")
    KernelTestEvent.topic = name
    await ensure_topics(kafka_bootstrap, [name])
    return name


@pytest_asyncio.fixture(loop_scope="session")
async def publisher(kafka_bootstrap: str) -> AsyncIterator[KafkaPublisher]:
    publisher = KafkaPublisher(kafka_bootstrap, client_id="kernel-tests")
    yield publisher
    await publisher.stop()
