"""Topics are created up front; work queues get (and grow to) their own partition count."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from aiokafka.admin import AIOKafkaAdminClient

from platform_runtime.kafka import ensure_topics


async def partition_counts(bootstrap: str, expected: Mapping[str, int]) -> dict[str, int]:
    """The topics' counts as the broker's metadata has them, once they match ``expected``
    or after 5 s. A topic created or grown a moment ago reaches the metadata a little later."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        counts: dict[str, int] = {}
        for _ in range(50):
            described = await admin.describe_topics(list(expected))
            counts = {d["topic"]: len(d["partitions"]) for d in described if not d["error_code"]}
            if counts == expected:
                break
            await asyncio.sleep(0.1)
        return counts
    finally:
        await admin.close()


async def settled_counts(
    bootstrap: str, unique: Callable[[str], str], *names: str
) -> dict[str, int]:
    """The counts after every change made so far reached the metadata: a topic created
    afterwards is known, and the metadata applies changes in order."""
    barrier = unique("barrier")
    await ensure_topics(bootstrap, [barrier], with_dead_letters=False, partitions=1)
    counts = await partition_counts(bootstrap, {barrier: 1})
    assert counts == {barrier: 1}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(names))
        return {d["topic"]: len(d["partitions"]) for d in described if not d["error_code"]}
    finally:
        await admin.close()


async def test_a_work_queue_is_created_with_its_partitions_and_grows_but_never_shrinks(
    kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    queue, events = unique("jobs"), unique("events")
    created = await ensure_topics(kafka_bootstrap, [queue, events], work_queues={queue: 2})
    assert sorted(created) == sorted([queue, f"{queue}.dlq", events, f"{events}.dlq"])
    assert await partition_counts(kafka_bootstrap, {queue: 2, events: 3}) == {queue: 2, events: 3}

    assert await ensure_topics(kafka_bootstrap, [queue, events], work_queues={queue: 6}) == []
    assert await partition_counts(kafka_bootstrap, {queue: 6}) == {queue: 6}

    await ensure_topics(kafka_bootstrap, [queue], work_queues={queue: 4})
    assert await settled_counts(kafka_bootstrap, unique, queue) == {queue: 6}


async def test_an_event_topic_is_never_grown(
    kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    events = unique("events")
    await ensure_topics(kafka_bootstrap, [events], partitions=2)
    assert await partition_counts(kafka_bootstrap, {events: 2}) == {events: 2}
    await ensure_topics(kafka_bootstrap, [events], partitions=5)
    assert await settled_counts(kafka_bootstrap, unique, events) == {events: 2}


async def test_replicas_growing_one_work_queue_at_once_all_start(
    kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    """Replicas rolled out together each see the old count and each ask for the new one;
    the broker refuses all but the first ("already has 6"), and that is no failure."""
    queue = unique("jobs")
    await ensure_topics(kafka_bootstrap, [queue], work_queues={queue: 2})
    assert await partition_counts(kafka_bootstrap, {queue: 2}) == {queue: 2}
    await asyncio.gather(
        *(ensure_topics(kafka_bootstrap, [queue], work_queues={queue: 6}) for _ in range(4))
    )
    assert await partition_counts(kafka_bootstrap, {queue: 6}) == {queue: 6}
