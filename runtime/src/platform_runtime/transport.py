"""The Kafka seam: what the runtime needs of a broker, whichever client provides it.

The platform's code never makes a Kafka client itself. It asks a :class:`Transport` for

* a :class:`RecordPublisher` (outbox relay, dead letters, the development stand-ins): it
  publishes records and returns only once every one is acknowledged;
* a :class:`GroupConsumer` (the consumer runtime, :mod:`platform_runtime.messaging`): a
  member of a consumer group that polls records, commits offsets by hand and, before its
  partitions move to another member, awaits the runtime's hand-over;
* topics, made up front with their dead-letter twins (:meth:`Transport.ensure_topics`).

Two implementations:

* :class:`platform_runtime.kafka.KafkaTransport`, on aiokafka: the one module where Kafka
  clients are made, with the settings that keep records from being lost or doubled;
* :class:`platform_runtime.memory.InMemoryTransport`: topics, partitions, groups and
  committed offsets in the process, for tests and tools that need no broker.

Operations tools that speak Kafka's admin protocol (consumer lag, dead-letter listing and
replay) use the aiokafka implementation's admin and reader clients directly; they exist to
look at a real broker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from booking_contracts.topics import dead_letter_topic
from platform_runtime.errors import KernelError
from platform_runtime.outbox import OutboundRecord

TopicPartition = tuple[str, int]
"""A partition of a topic: ``(topic, partition)``."""


@dataclass(frozen=True)
class IncomingRecord:
    """The parts of a Kafka record the runtime needs; independent of the client library."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()

    def header(self, name: str) -> str | None:
        """The value of the first header called ``name``, if any (a header with a null value
        counts as absent)."""
        for key, value in self.headers:
            if key == name and value is not None:
                return value.decode(errors="replace")
        return None


@dataclass(frozen=True)
class KafkaRecord:
    """A record to publish byte for byte: key and value as they are (either may be absent),
    headers in their order."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


def as_kafka_record(record: OutboundRecord) -> KafkaRecord:
    """An outbox row's record as the bytes it is published as."""
    return KafkaRecord(
        topic=record.topic,
        key=record.key.encode(),
        value=record.value,
        headers=[(k, v.encode()) for k, v in record.headers.items()],
    )


def topics_with_twins(topics: Iterable[str], *, with_dead_letters: bool) -> set[str]:
    """``topics`` and, ``with_dead_letters``, their ``.dlq`` twins: what to make up front."""
    wanted = set(topics)
    if with_dead_letters:
        wanted |= {dead_letter_topic(topic) for topic in wanted}
    return wanted


class CommitFailed(KernelError):
    """The group would not take a member's offsets (its partitions moved on meanwhile): the
    next owner reads the records again, and the inbox makes them no-ops."""


class RecordPublisher(Protocol):
    """Publishes records; every method returns only once the broker acknowledged all."""

    async def send_records(self, records: Sequence[KafkaRecord]) -> None:
        """Publish ``records`` byte for byte, in order."""

    async def send_batch(self, records: Sequence[OutboundRecord]) -> None:
        """Publish outbox rows, in order."""

    async def send(
        self, topic: str, *, key: bytes | None, value: bytes | None, headers: dict[str, str]
    ) -> None:
        """Publish one record."""

    async def stop(self) -> None:
        """Let go of the connection (the next send makes a new one)."""


class RecordSink:
    """What every publisher derives from publishing raw records (``send_records``): outbox
    rows and single records are published as the bytes Kafka carries."""

    async def send_records(self, records: Sequence[KafkaRecord]) -> None:
        raise NotImplementedError

    async def send_batch(self, records: Sequence[OutboundRecord]) -> None:
        """Publish outbox rows, in order; return once every one is acknowledged."""
        await self.send_records([as_kafka_record(r) for r in records])

    async def send(
        self, topic: str, *, key: bytes | None, value: bytes | None, headers: dict[str, str]
    ) -> None:
        """Publish one record; return once it is acknowledged."""
        encoded = [(k, v.encode()) for k, v in headers.items()]
        await self.send_records([KafkaRecord(topic, key, value, encoded)])


HandOver = Callable[[], Awaitable[None]]
"""Awaited before a member's partitions move to another member: the poll in flight is to be
finished and committed first."""


class GroupConsumer(Protocol):
    """One member of a consumer group: reads its partitions from the group's committed
    offsets (from the earliest record when the group has none) and commits by hand."""

    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Leave the group (its partitions go to the other members)."""

    async def poll(self, *, timeout_ms: int, max_records: int) -> list[IncomingRecord]:
        """Up to ``max_records`` records, each partition's in offset order; empty when none
        came within ``timeout_ms``."""

    def assignment(self) -> set[TopicPartition]:
        """The partitions this member owns now."""

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit, per partition, the offset of the next record to read.

        Raises :class:`CommitFailed` when the group refuses them."""


class Transport(Protocol):
    """Where a service's records go and come from (see the module's documentation)."""

    def publisher(self, *, client_id: str) -> RecordPublisher: ...

    def group_consumer(
        self,
        topics: Sequence[str],
        *,
        group: str,
        hand_over: HandOver,
        fetch_max_wait_ms: int = 50,
    ) -> GroupConsumer: ...

    async def ensure_topics(
        self,
        topics: Iterable[str],
        *,
        partitions: int = 3,
        replication_factor: int = 1,
        with_dead_letters: bool = True,
        work_queues: Mapping[str, int] | None = None,
    ) -> list[str]:
        """Create the missing ``topics`` (and their ``.dlq`` twins); returns those created.
        ``work_queues``: topics grown to their own partition count (see
        :func:`platform_runtime.kafka.ensure_topics`)."""
        ...
