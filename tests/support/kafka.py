"""Reading and writing real Kafka topics from tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


async def produce(
    bootstrap: str,
    topic: str,
    values: Sequence[bytes],
    *,
    key: bytes | None = b"k",
    headers: Sequence[tuple[str, bytes]] = (),
) -> None:
    """Publish ``values`` in order (one key: one partition, so order holds), acks=all."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=key, headers=list(headers))
    finally:
        await producer.stop()


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    at_least: int,
    timeout_s: float = 20.0,
    settle_s: float = 0.0,
    where: Callable[[ConsumerRecord[bytes, bytes]], bool] | None = None,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Everything on ``topic`` from the start, once ``at_least`` records are there.

    With ``where``, only the records it accepts are kept and counted (topics with fixed
    names carry the records of other tests too). With ``settle_s``, keeps reading that long
    after reaching the count, to catch records that should *not* be there (duplicates).
    Returns what it has when ``timeout_s`` runs out.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"test-reader-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
        metadata_max_age_ms=500,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout_s
    settle_until: float | None = None
    try:
        while time.monotonic() < deadline:
            if settle_until is not None and time.monotonic() >= settle_until:
                break
            batch = await consumer.getmany(timeout_ms=100)
            for partition_records in batch.values():
                records.extend(r for r in partition_records if where is None or where(r))
            if settle_until is None and len(records) >= at_least:
                if settle_s <= 0:
                    break
                settle_until = time.monotonic() + settle_s
            await asyncio.sleep(0)
    finally:
        await consumer.stop()
    return records


async def read_all(
    bootstrap: str, topic: str, *, timeout_s: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on ``topic`` now: its partitions are read from the start up to the end
    offsets they had when the call began (no consumer group, nothing committed)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"]:
        raise AssertionError(f"{topic}: error {described['error_code']}")
    partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        await consumer.start()
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + timeout_s
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} took longer than {timeout_s:g}s")
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()
