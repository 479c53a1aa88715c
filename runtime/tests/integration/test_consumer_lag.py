"""Consumer lag against a real Kafka broker: what a group has not committed yet, per topic,
measured on its own and exported by a running service on ``/metrics``."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable

import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.structs import OffsetAndMetadata

from booking_contracts.envelope import Envelope
from platform_runtime.db import make_engine
from platform_runtime.kafka import ensure_topics
from platform_runtime.lag import consumer_lag
from platform_runtime.messaging import EventContext
from platform_runtime.service import ServiceRuntime
from platform_runtime.settings import ServiceSettings
from platform_tooling.polling import eventually
from tests.support.fixtures import CreateDatabase
from tests.support.kafka import produce
from tests.support.service import running

from .conftest import KernelTestEvent, metadata


@pytest_asyncio.fixture(loop_scope="session")
async def admin(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await client.start()
    yield client
    await client.close()


@pytest_asyncio.fixture(loop_scope="session")
async def offsets(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=None)
    await consumer.start()
    yield consumer
    await consumer.stop()


async def fill(bootstrap: str, topic: str, per_partition: dict[int, int]) -> None:
    """Write ``count`` records to each given partition of ``topic``."""
    await ensure_topics(bootstrap, [topic], partitions=3, with_dead_letters=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for partition, count in per_partition.items():
            for i in range(count):
                await producer.send_and_wait(topic, f"r{i}".encode(), partition=partition)
    finally:
        await producer.stop()


async def commit(bootstrap: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit ``offsets`` for ``group`` the way a consumer of that group does."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
    finally:
        await consumer.stop()


async def test_a_group_that_committed_part_of_a_topic_lags_by_the_uncommitted_remainder(
    kafka_bootstrap: str,
    admin: AIOKafkaAdminClient,
    offsets: AIOKafkaConsumer,
    unique: Callable[[str], str],
) -> None:
    orders, refunds = unique("lag-orders"), unique("lag-refunds")
    await fill(kafka_bootstrap, orders, {0: 5, 1: 3, 2: 0})
    await fill(kafka_bootstrap, refunds, {0: 2, 1: 0, 2: 4})
    group = unique("lag-group")
    await commit(
        kafka_bootstrap,
        group,
        {
            TopicPartition(orders, 0): 2,  # 3 of 5 left; partition 1 never committed: all 3
            TopicPartition(refunds, 0): 2,  # all read; partition 2 read up to its last record
            TopicPartition(refunds, 2): 3,
        },
    )

    lag = await consumer_lag(admin, offsets, group=group, topics=[orders, refunds])

    assert lag == {orders: 3 + 3, refunds: 0 + 1}


async def test_a_group_that_never_committed_lags_by_the_whole_topic_from_its_beginning(
    kafka_bootstrap: str,
    admin: AIOKafkaAdminClient,
    offsets: AIOKafkaConsumer,
    unique: Callable[[str], str],
) -> None:
    topic = unique("lag-new")
    await fill(kafka_bootstrap, topic, {0: 5, 1: 3, 2: 1})
    await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(before_offset=2)})
    missing = unique("lag-missing")

    group = unique("lag-group")

    lag = await consumer_lag(admin, offsets, group=group, topics=[topic, missing])

    assert lag == {topic: 3 + 3 + 1}, "the deleted records are not there to be read"
    assert await consumer_lag(admin, offsets, group=group, topics=[missing]) == {}


async def test_a_running_service_exports_the_lag_of_each_of_its_consumer_groups(
    create_database: CreateDatabase, kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    url = await create_database("lag")
    engine = make_engine(url, pool_size=1)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    await engine.dispose()
    topic = unique("lag-runtime")
    KernelTestEvent.topic = topic
    await ensure_topics(kafka_bootstrap, [topic])
    await produce(
        kafka_bootstrap,
        topic,
        [
            Envelope.wrap(
                KernelTestEvent(order_id=uuid.uuid4(), note=f"n{i}"), source="/t"
            ).to_json_bytes()
            for i in range(4)
        ],
    )
    settings = ServiceSettings(
        service_name="kernel-lag",
        database_url=url,
        kafka_bootstrap_servers=kafka_bootstrap,
        metrics_lag_interval_s=0.2,
        development=True,
    )
    runtime = ServiceRuntime(settings, metadata=metadata, source="/kernel-lag", run_relay=False)
    busy, idle = unique("lag-busy"), unique("lag-idle")

    @runtime.consumer(busy).on(KernelTestEvent)
    async def apply(event: KernelTestEvent, ctx: EventContext) -> None:
        await asyncio.sleep(0)

    runtime.batch_consumer(idle, capacity=lambda: 0).on_batch(  # never takes anything
        KernelTestEvent, lambda session, items: asyncio.sleep(0), lambda _: None
    )
    app = runtime.create_app(title="Kernel lag", version="1")

    async with running(app) as client:

        async def lags() -> dict[str, float]:
            text = (await client.get("/metrics")).text
            pattern = rf'^kafka_consumer_lag\{{consumer="([^"]+)",topic="{topic}"\}} (\S+)$'
            return {m[1]: float(m[2]) for m in re.finditer(pattern, text, re.M)}

        lag = await eventually(lags, lambda found: found == {busy: 0.0, idle: 4.0})

    assert lag == {busy: 0.0, idle: 4.0}
