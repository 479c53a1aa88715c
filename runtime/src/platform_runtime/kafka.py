"""The aiokafka side of the Kafka seam (:mod:`platform_runtime.transport`): the one module where
Kafka clients are made, with the settings that keep messages from being lost or doubled.

* The producer is idempotent, which forces ``acks=all``: a record counts as sent only once
  every in-sync replica has it, and retries after a lost ack cannot write it twice.
* Group consumers (run by :mod:`platform_runtime.messaging`) read from the earliest offset
  when their group is new, commit by hand after the database transaction, and hand their
  poll in flight over before a rebalance moves their partitions.
* Topics, with their dead-letter twins, are created up front so that nothing depends on
  auto-creation or on the metadata refresh interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka import TopicPartition as KafkaTopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import InvalidPartitionsError, KafkaError, TopicAlreadyExistsError
from aiokafka.structs import OffsetAndMetadata
from faststream.kafka import KafkaBroker

from platform_runtime.kafka_security import PLAINTEXT, KafkaSecurity
from platform_runtime.transport import (
    CommitFailed,
    HandOver,
    IncomingRecord,
    KafkaRecord,
    RecordSink,
    TopicPartition,
    topics_with_twins,
)

log = logging.getLogger(__name__)


def make_broker(
    bootstrap_servers: str,
    *,
    client_id: str,
    request_timeout_ms: int = 15_000,
    security: KafkaSecurity = PLAINTEXT,
    **options: Any,
) -> KafkaBroker:
    """A FastStream broker whose ping is the service's Kafka readiness check (its own
    producer is idempotent, ``acks=all``).

    Consumers run on their own aiokafka clients (:mod:`platform_runtime.messaging`); outbox rows and
    dead letters go through :class:`KafkaPublisher`, which can replace its producer after a
    broker outage.
    """
    return KafkaBroker(
        bootstrap_servers,
        client_id=client_id,
        enable_idempotence=True,
        request_timeout_ms=request_timeout_ms,
        graceful_timeout=10.0,
        log_level=logging.DEBUG,  # one line per message is for debugging, not production
        security=security.faststream(),
        **options,
    )


def make_admin(
    bootstrap_servers: str,
    *,
    client_id: str | None = None,
    request_timeout_ms: int = 15_000,
    security: KafkaSecurity = PLAINTEXT,
) -> AIOKafkaAdminClient:
    """An admin client: lists, describes and creates topics, reads group offsets."""
    named = {"client_id": client_id} if client_id else {}
    return AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        request_timeout_ms=request_timeout_ms,
        **named,
        **security.client_options(),
    )


def make_reader(
    bootstrap_servers: str,
    *,
    client_id: str,
    request_timeout_ms: int = 15_000,
    security: KafkaSecurity = PLAINTEXT,
    **options: Any,
) -> AIOKafkaConsumer:
    """A consumer outside any consumer group: it reads the partitions it is assigned, from
    where it is told, and commits nothing (offset look-ups, dead-letter listings). Consumer
    groups run on :class:`platform_runtime.messaging.EventConsumer`."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=request_timeout_ms,
        **security.client_options(),
        **options,
    )


class KafkaPublisher(RecordSink):
    """Publishes records with its own idempotent producer; returns after every ack.

    The producer starts lazily, so a service comes up while Kafka is down (its outbox rows
    simply wait). After any failed send the producer is thrown away and a fresh one is made
    on the next call: an idempotent producer that lived through a broker restart can be left
    in a state it never leaves (``OutOfOrderSequenceNumber``), and re-sending the whole batch
    from a new producer is safe because every record carries its event id.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str,
        timeout_s: float = 30.0,
        request_timeout_ms: int = 15_000,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.client_id = client_id
        self.security = security
        self.timeout_s = timeout_s
        self.request_timeout_ms = request_timeout_ms
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _ensure(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap_servers,
                    client_id=self.client_id,
                    enable_idempotence=True,  # implies acks="all"
                    request_timeout_ms=self.request_timeout_ms,
                    # No linger: every send of a batch is appended before the sender task
                    # runs (``send`` does not yield once the topic's metadata is known), so a
                    # batch still leaves in one request per partition, and a lone record
                    # leaves at once (a 1 ms linger made a lone send 1.4 ms slower).
                    linger_ms=0,
                    **self.security.client_options(),
                )
                try:
                    await asyncio.wait_for(producer.start(), self.timeout_s)
                except BaseException:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def _discard(self) -> None:
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 5)

    async def send_records(self, records: Sequence[KafkaRecord]) -> None:
        """Publish ``records`` byte for byte, in order; return once every one is acked."""
        producer = await self._ensure()
        try:
            futures = [
                await producer.send(r.topic, r.value, key=r.key, headers=list(r.headers))
                for r in records
            ]
            await asyncio.wait_for(asyncio.gather(*futures), self.timeout_s)
        except BaseException:
            await self._discard()
            raise

    async def stop(self) -> None:
        await self._discard()


async def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[str],
    *,
    partitions: int = 3,
    replication_factor: int = 1,
    with_dead_letters: bool = True,
    work_queues: Mapping[str, int] | None = None,
    security: KafkaSecurity = PLAINTEXT,
) -> list[str]:
    """Create missing topics (and their ``.dlq`` twins); returns the names it created.

    ``work_queues``: topics (among ``topics``) with a partition count of their own, grown to
    it when they exist with fewer. Only for work queues: their records need no order across
    keys, and the partitions cap how many workers of a group share the work. Event topics
    are never grown (a key would move to another partition and lose its order)."""
    queues = dict(work_queues or {})
    wanted = topics_with_twins(topics, with_dead_letters=with_dead_letters)
    admin = make_admin(bootstrap_servers, security=security)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = sorted(wanted - existing)
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(t, queues.get(t, partitions), replication_factor) for t in missing]
                )
            except TopicAlreadyExistsError:
                log.info("another replica created some of %s first", ", ".join(missing))
            log.info("created topics %s", ", ".join(missing))
        grown = sorted(set(queues) & wanted & existing)
        if grown:
            await _grow(admin, {t: queues[t] for t in grown})
        return missing
    finally:
        await admin.close()


async def _grow(admin: AIOKafkaAdminClient, wanted: Mapping[str, int]) -> None:
    counts = await _partition_counts(admin, wanted)
    if len(counts) < len(wanted):
        log.warning(
            "cannot describe %s: not grown now", ", ".join(sorted(set(wanted) - set(counts)))
        )
    smaller = {t: n for t, n in wanted.items() if counts.get(t, n) < n}
    if not smaller:
        return
    try:
        await admin.create_partitions({t: NewPartitions(total_count=n) for t, n in smaller.items()})
    except InvalidPartitionsError:
        # Another replica grew it first (the broker says "already has n"); its metadata
        # may lag behind that, so wait until it shows every queue at its size.
        counts = await _partition_counts(admin, smaller, at_least=smaller)
        if any(counts.get(t, 0) < n for t, n in smaller.items()):
            raise
        log.info("another replica grew %s first", ", ".join(sorted(smaller)))
        return
    log.info("grew work queues %s", ", ".join(f"{t} to {n}" for t, n in smaller.items()))


async def _partition_counts(
    admin: AIOKafkaAdminClient,
    topics: Collection[str],
    *,
    at_least: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """The topics' partition counts, once the broker describes them all (and, with
    ``at_least``, shows each with at least so many); what it last showed after 50 tries.
    A topic created or grown a moment ago may not be in its metadata yet."""
    counts: dict[str, int] = {}
    for attempt in range(50):
        described = await admin.describe_topics(list(topics))
        counts = {d["topic"]: len(d["partitions"]) for d in described if not d["error_code"]}
        if len(counts) == len(topics) and all(counts[t] >= n for t, n in (at_least or {}).items()):
            break
        await asyncio.sleep(0.1 * min(attempt + 1, 5))
    return counts


REBALANCE_TIMEOUT_MS = 30_000
"""How long the group waits in a rebalance for a member to finish and commit its poll in
flight (aiokafka's default is the 10 s session timeout)."""


class KafkaGroupConsumer:
    """A :class:`platform_runtime.transport.GroupConsumer` on an aiokafka consumer: manual commits,
    the earliest offset for a new group, and the hand-over awaited before partitions are
    revoked (aiokafka runs a rebalance in the background, while the runtime may be applying
    records; the group's other members wait for it, up to the rebalance timeout)."""

    def __init__(self, consumer: AIOKafkaConsumer, topics: Sequence[str], hand_over: HandOver):
        self._consumer = consumer
        consumer.subscribe(list(topics), listener=_HandOver(hand_over))

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def poll(self, *, timeout_ms: int, max_records: int) -> list[IncomingRecord]:
        fetched = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return [incoming(record) for records in fetched.values() for record in records]

    def assignment(self) -> set[TopicPartition]:
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        try:
            await self._consumer.commit(
                {KafkaTopicPartition(*tp): OffsetAndMetadata(o, "") for tp, o in offsets.items()}
            )
        except KafkaError as exc:
            raise CommitFailed(f"the group refused the offsets: {exc!r}") from exc


class _HandOver(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, hand_over: HandOver) -> None:
        self._hand_over = hand_over

    async def on_partitions_revoked(self, revoked: Collection[KafkaTopicPartition]) -> None:
        if revoked:  # nothing is revoked when the member first joins
            await self._hand_over()

    async def on_partitions_assigned(self, assigned: Collection[KafkaTopicPartition]) -> None:
        """Positions of the new assignment start at the group's committed offsets."""


def incoming(record: Any) -> IncomingRecord:
    """An aiokafka ``ConsumerRecord`` as the runtime's :class:`IncomingRecord`."""
    return IncomingRecord(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=tuple(
            (key, value if value is not None else b"") for key, value in record.headers or ()
        ),
    )


@dataclass(frozen=True)
class KafkaTransport:
    """The :class:`platform_runtime.transport.Transport` of a real broker: every client it makes
    connects to ``bootstrap_servers`` with ``security``."""

    bootstrap_servers: str
    security: KafkaSecurity = field(default=PLAINTEXT)
    request_timeout_ms: int = 15_000

    def publisher(self, *, client_id: str) -> KafkaPublisher:
        return KafkaPublisher(
            self.bootstrap_servers,
            client_id=client_id,
            request_timeout_ms=self.request_timeout_ms,
            security=self.security,
        )

    def group_consumer(
        self,
        topics: Sequence[str],
        *,
        group: str,
        hand_over: HandOver,
        fetch_max_wait_ms: int = 50,
    ) -> KafkaGroupConsumer:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=group,
            client_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=fetch_max_wait_ms,
            rebalance_timeout_ms=REBALANCE_TIMEOUT_MS,
            **self.security.client_options(),
        )
        return KafkaGroupConsumer(consumer, topics, hand_over)

    async def ensure_topics(
        self,
        topics: Iterable[str],
        *,
        partitions: int = 3,
        replication_factor: int = 1,
        with_dead_letters: bool = True,
        work_queues: Mapping[str, int] | None = None,
    ) -> list[str]:
        return await ensure_topics(
            self.bootstrap_servers,
            topics,
            partitions=partitions,
            replication_factor=replication_factor,
            with_dead_letters=with_dead_letters,
            work_queues=work_queues,
            security=self.security,
        )

    def broker(self, *, client_id: str) -> KafkaBroker:
        """A FastStream broker, for the readiness check (see :func:`make_broker`)."""
        return make_broker(
            self.bootstrap_servers,
            client_id=client_id,
            request_timeout_ms=self.request_timeout_ms,
            security=self.security,
        )

    def admin(self, *, client_id: str | None = None) -> AIOKafkaAdminClient:
        return make_admin(
            self.bootstrap_servers,
            client_id=client_id,
            request_timeout_ms=self.request_timeout_ms,
            security=self.security,
        )

    def reader(self, *, client_id: str) -> AIOKafkaConsumer:
        return make_reader(
            self.bootstrap_servers,
            client_id=client_id,
            request_timeout_ms=self.request_timeout_ms,
            security=self.security,
        )
