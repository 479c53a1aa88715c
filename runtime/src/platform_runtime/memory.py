"""The in-memory side of the Kafka seam (:mod:`platform_runtime.transport`): a broker in the
process.

:class:`InMemoryTransport` keeps what the runtime relies on of Kafka, so that consumer logic,
the development stand-ins and the tools built on the seam are tested in milliseconds with no
broker:

* topics exist only once made (:meth:`InMemoryTransport.ensure_topics`, with their ``.dlq``
  twins); a record for another topic is refused, as the platform's brokers refuse to
  create topics on first use;
* a record goes to a partition chosen by its key (the same key, the same partition; records
  without a key are spread), and keeps its offset there for good;
* a value over ``max_record_bytes`` is refused with the error the Kafka client raises
  (``MessageSizeTooLargeError``), so what the runtime does with it can be tested;
* every group has committed offsets; a member reads its partitions from them (from the
  earliest record when the group has none) and commits by hand; partitions are shared out
  among a group's members, and before they move (a member joins or leaves), every member
  that loses partitions is handed over (its poll in flight finished and committed first).

What it does not model: replication, transactions, retention, and a broker that goes away
(the real-broker tests cover outages, ordering across restarts and delivery).
"""

from __future__ import annotations

import asyncio
import itertools
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from aiokafka.errors import MessageSizeTooLargeError

from platform_runtime.errors import KernelError
from platform_runtime.transport import (
    CommitFailed,
    HandOver,
    IncomingRecord,
    KafkaRecord,
    RecordSink,
    TopicPartition,
    topics_with_twins,
)

MAX_RECORD_BYTES = 1_048_576
"""Kafka's default ``max.message.bytes`` of a topic."""


class UnknownTopic(KernelError):
    """A record for a topic that was never made."""


@dataclass
class InMemoryTransport:
    """Topics, partitions, groups and committed offsets in the process (see the module)."""

    max_record_bytes: int = MAX_RECORD_BYTES
    _partitions: dict[str, list[list[IncomingRecord]]] = field(default_factory=dict)
    _committed: dict[str, dict[TopicPartition, int]] = field(default_factory=dict)
    _members: dict[str, list[InMemoryGroupConsumer]] = field(default_factory=dict)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _spread: itertools.count[int] = field(default_factory=itertools.count)
    _rebalancing: asyncio.Lock = field(default_factory=asyncio.Lock)

    # --- the Transport ------------------------------------------------------------------

    def publisher(self, *, client_id: str) -> InMemoryPublisher:
        return InMemoryPublisher(self, client_id)

    def group_consumer(
        self,
        topics: Sequence[str],
        *,
        group: str,
        hand_over: HandOver,
        fetch_max_wait_ms: int = 50,
    ) -> InMemoryGroupConsumer:
        return InMemoryGroupConsumer(self, tuple(topics), group, hand_over)

    async def ensure_topics(
        self,
        topics: Iterable[str],
        *,
        partitions: int = 3,
        replication_factor: int = 1,
        with_dead_letters: bool = True,
        work_queues: Mapping[str, int] | None = None,
    ) -> list[str]:
        queues = dict(work_queues or {})
        wanted = topics_with_twins(topics, with_dead_letters=with_dead_letters)
        created = sorted(wanted - set(self._partitions))
        for topic in created:
            self._partitions[topic] = [[] for _ in range(queues.get(topic, partitions))]
        for topic, count in queues.items():
            existing = self._partitions.get(topic)
            if existing is not None and len(existing) < count:
                existing.extend([] for _ in range(count - len(existing)))
        return created

    # --- what a test reads --------------------------------------------------------------

    def topics(self) -> list[str]:
        return sorted(self._partitions)

    def records(self, topic: str) -> list[IncomingRecord]:
        """Every record of ``topic``: partition by partition, each in offset order."""
        return [record for partition in self._partition_list(topic) for record in partition]

    def committed(self, group: str) -> dict[TopicPartition, int]:
        """The offsets ``group`` committed, per partition (the next record to read)."""
        return dict(self._committed.get(group, {}))

    # --- the broker's side --------------------------------------------------------------

    def _partition_list(self, topic: str) -> list[list[IncomingRecord]]:
        try:
            return self._partitions[topic]
        except KeyError:
            raise UnknownTopic(f"topic {topic!r} does not exist") from None

    def _append(self, record: KafkaRecord) -> None:
        partitions = self._partition_list(record.topic)
        size = len(record.value or b"") + len(record.key or b"")
        if size > self.max_record_bytes:
            raise MessageSizeTooLargeError(
                f"a record of {size} bytes is over the topic's {self.max_record_bytes}"
            )
        if record.key is None:
            index = next(self._spread) % len(partitions)
        else:
            index = zlib.crc32(record.key) % len(partitions)
        partition = partitions[index]
        partition.append(
            IncomingRecord(
                topic=record.topic,
                partition=index,
                offset=len(partition),
                key=record.key,
                value=record.value,
                headers=tuple(record.headers),
            )
        )

    def _wake(self) -> None:
        arrived, self._arrived = self._arrived, asyncio.Event()
        arrived.set()

    async def _rebalance(self, group: str) -> None:
        """Share the partitions of ``group``'s topics out among its members, handing over
        every member's poll in flight first."""
        async with self._rebalancing:
            members = self._members.get(group, [])
            for member in members:
                if member.owned:
                    await member.hand_over()
            partitions = sorted(
                {
                    (topic, index)
                    for member in members
                    for topic in member.topics
                    for index in range(len(self._partition_list(topic)))
                }
            )
            committed = self._committed.setdefault(group, {})
            for member in members:
                member.owned = {}
            for i, tp in enumerate(partitions):
                members[i % len(members)].owned[tp] = committed.get(tp, 0)

    async def _join(self, member: InMemoryGroupConsumer) -> None:
        self._members.setdefault(member.group, []).append(member)
        await self._rebalance(member.group)

    async def _leave(self, member: InMemoryGroupConsumer) -> None:
        members = self._members.get(member.group, [])
        if member in members:
            members.remove(member)
            member.owned = {}
            await self._rebalance(member.group)

    def _commit(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        self._committed.setdefault(group, {}).update(offsets)


@dataclass
class InMemoryPublisher(RecordSink):
    """A :class:`platform_runtime.transport.RecordPublisher` into an :class:`InMemoryTransport`:
    records are in place (and readable) when a send returns."""

    transport: InMemoryTransport
    client_id: str
    sent: int = 0

    async def send_records(self, records: Sequence[KafkaRecord]) -> None:
        try:
            for record in records:
                self.transport._append(record)
                self.sent += 1
        finally:
            self.transport._wake()

    async def stop(self) -> None:
        """Nothing to let go of."""


@dataclass(eq=False)
class InMemoryGroupConsumer:
    """A :class:`platform_runtime.transport.GroupConsumer` of an :class:`InMemoryTransport`."""

    transport: InMemoryTransport
    topics: tuple[str, ...]
    group: str
    hand_over: HandOver
    owned: dict[TopicPartition, int] = field(default_factory=dict)
    """The partitions this member owns, with the offset of the next record it reads."""

    async def start(self) -> None:
        for topic in self.topics:
            self.transport._partition_list(topic)  # a topic that does not exist is refused
        await self.transport._join(self)

    async def stop(self) -> None:
        await self.transport._leave(self)

    async def poll(self, *, timeout_ms: int, max_records: int) -> list[IncomingRecord]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        while True:
            arrived = self.transport._arrived
            taken = self._take(max_records)
            remaining = deadline - loop.time()
            if taken or remaining <= 0:
                return taken
            try:
                await asyncio.wait_for(arrived.wait(), remaining)
            except TimeoutError:
                return []

    def _take(self, max_records: int) -> list[IncomingRecord]:
        taken: list[IncomingRecord] = []
        for tp in sorted(self.owned):
            if len(taken) >= max_records:
                break
            topic, index = tp
            position = self.owned[tp]
            partition = self.transport._partition_list(topic)[index]
            records = partition[position : position + max_records - len(taken)]
            if records:
                taken.extend(records)
                self.owned[tp] = records[-1].offset + 1
        return taken

    def assignment(self) -> set[TopicPartition]:
        return set(self.owned)

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        foreign = sorted(set(offsets) - set(self.owned))
        if foreign:
            raise CommitFailed(f"{self.group} no longer owns {foreign} here")
        self.transport._commit(self.group, offsets)
