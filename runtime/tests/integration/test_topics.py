"""Topics are created up front; work queues get (and grow to) their own partition count."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka.admin import AIOKafkaAdminClient

from platform_runtime.kafka import ensure_topics


async def partition_counts(bootstrap: str, *names: str) -> dict[str, int]:
    """As the broker's metadata has them (once every topic is known to it)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for _ in range(50):
            described = await admin.describe_topics(list(names))
            if all(not d["error_code"] for d in described):
                return {d["topic"]: len(d["partitions"]) for d in described}
            await asyncio.sleep(0.1)
        raise AssertionError(f"topics not known to the broker: {described}")
    finally:
        await admin.close()


async def test_a_work_queue_is_created_with_its_partitions_and_grows_but_never_shrinks(
    kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    queue, events = unique("jobs"), unique("events")
    created = await ensure_topics(kafka_bootstrap, [queue, events], work_queues={queue: 2})
    assert sorted(created) == sorted([queue, f"{queue}.dlq", events, f"{events}.dlq"])
    assert await partition_counts(kafka_bootstrap, queue, events) == {queue: 2, events: 3}

    assert await ensure_topics(kafka_bootstrap, [queue, events], work_queues={queue: 6}) == []
    assert await partition_counts(kafka_bootstrap, queue) == {queue: 6}

    await ensure_topics(kafka_bootstrap, [queue], work_queues={queue: 4})
    assert await partition_counts(kafka_bootstrap, queue) == {queue: 6}


async def test_an_event_topic_is_never_grown(
    kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    events = unique("events")
    await ensure_topics(kafka_bootstrap, [events], partitions=2)
    await ensure_topics(kafka_bootstrap, [events], partitions=5)
    assert await partition_counts(kafka_bootstrap, events) == {events: 2}
