"""Kafka plumbing with the settings that keep messages from being lost or doubled.

* The producer is idempotent, which forces ``acks=all``: a record counts as sent only once
  every in-sync replica has it, and retries after a lost ack cannot write it twice.
* Consumers (see :mod:`shared.messaging`) read from the earliest offset when their group is
  new and commit manually after the database transaction.
* Topics, with their dead-letter twins, are created up front so that nothing depends on
  auto-creation or on the metadata refresh interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker

from shared.events.topics import dead_letter_topic
from shared.outbox import OutboundRecord

log = logging.getLogger(__name__)


def make_broker(
    bootstrap_servers: str,
    *,
    client_id: str,
    request_timeout_ms: int = 15_000,
    **options: Any,
) -> KafkaBroker:
    """A FastStream broker whose producer is idempotent (``acks=all``)."""
    return KafkaBroker(
        bootstrap_servers,
        client_id=client_id,
        enable_idempotence=True,
        request_timeout_ms=request_timeout_ms,
        linger_ms=1,
        graceful_timeout=10.0,
        **options,
    )


class BrokerPublisher:
    """Publishes through a started broker's producer; returns after every ack."""

    def __init__(self, broker: KafkaBroker, *, timeout_s: float = 30.0) -> None:
        self.broker = broker
        self.timeout_s = timeout_s

    async def send_batch(self, records: Sequence[OutboundRecord]) -> None:
        futures = [
            await self.broker.publish(
                r.value, topic=r.topic, key=r.key.encode(), headers=r.headers, no_confirm=True
            )
            for r in records
        ]
        await asyncio.wait_for(asyncio.gather(*futures), self.timeout_s)

    async def send(
        self, topic: str, *, key: bytes | None, value: bytes | None, headers: dict[str, str]
    ) -> None:
        await asyncio.wait_for(
            self.broker.publish(value or b"", topic=topic, key=key, headers=headers),
            self.timeout_s,
        )


async def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[str],
    *,
    partitions: int = 3,
    replication_factor: int = 1,
    with_dead_letters: bool = True,
) -> list[str]:
    """Create missing topics (and their ``.dlq`` twins); returns the names it created."""
    wanted: set[str] = set()
    for topic in topics:
        wanted.add(topic)
        if with_dead_letters:
            wanted.add(dead_letter_topic(topic))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = sorted(wanted - existing)
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(t, partitions, replication_factor) for t in missing]
                )
            except TopicAlreadyExistsError:  # another replica was quicker
                pass
            log.info("created topics %s", ", ".join(missing))
        return missing
    finally:
        await admin.close()
