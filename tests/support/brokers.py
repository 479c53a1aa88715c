"""The broker a service under test runs on, as its tests use it: publish records to it as the
other services would, and read what was published.

Two of them, one interface:

* :class:`MemoryBroker`, the in-memory transport (:mod:`platform_runtime.memory`): the
  default of the service suites, whose tests are about what the service does with events,
  not about Kafka. A service given it makes no Kafka client at all, and each test service
  has its consumer groups to itself.
* :class:`KafkaBroker`, the real broker ``make test`` starts: for the tests that are about
  Kafka itself (readiness against a broker, the operator's dead-letter commands, processes
  that crash mid-stream, topics shared between processes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka import ConsumerRecord

from platform_runtime.kafka import incoming
from platform_runtime.memory import InMemoryTransport
from platform_runtime.transport import IncomingRecord, KafkaRecord, Transport
from tests.support.kafka import produce, read_topic

Where = Callable[[IncomingRecord], bool]


class Broker(Protocol):
    """What a test does with the broker of the service it drives."""

    @property
    def bootstrap(self) -> str:
        """The broker's address for the service's settings (none listens for the in-memory
        one: a Kafka client made by mistake fails at once)."""
        ...

    def transport(self) -> Transport | None:
        """What the service is given to talk to this broker (None: what its settings say)."""
        ...

    async def publish(
        self,
        topic: str,
        values: Sequence[bytes],
        *,
        key: bytes | None = b"k",
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Publish ``values`` in order under ``key`` (one partition: their order holds), each
        acknowledged before this returns."""
        ...

    async def read(
        self,
        topic: str,
        *,
        at_least: int,
        where: Where | None = None,
        settle_s: float = 0.0,
        timeout_s: float = 20.0,
    ) -> list[IncomingRecord]:
        """The records of ``topic`` (those ``where`` accepts), once ``at_least`` are there;
        with ``settle_s``, reads on that long to catch records that should not be there;
        what there is when ``timeout_s`` runs out."""
        ...


@dataclass
class KafkaBroker:
    """The real broker at ``bootstrap``."""

    bootstrap: str

    def transport(self) -> Transport | None:
        return None  # the service's own, from its settings (client ids, security)

    async def publish(
        self,
        topic: str,
        values: Sequence[bytes],
        *,
        key: bytes | None = b"k",
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        await produce(self.bootstrap, topic, values, key=key, headers=headers)

    async def read(
        self,
        topic: str,
        *,
        at_least: int,
        where: Where | None = None,
        settle_s: float = 0.0,
        timeout_s: float = 20.0,
    ) -> list[IncomingRecord]:
        def accepted(record: ConsumerRecord[bytes, bytes]) -> bool:
            return where is None or where(incoming(record))

        records = await read_topic(
            self.bootstrap,
            topic,
            at_least=at_least,
            where=accepted,
            settle_s=settle_s,
            timeout_s=timeout_s,
        )
        return [incoming(record) for record in records]


NOWHERE = "127.0.0.1:1"
"""The broker address a service on the in-memory transport is given: nothing listens there."""


@dataclass
class MemoryBroker:
    """An in-memory broker of the test's own (see the module)."""

    memory: InMemoryTransport = field(default_factory=InMemoryTransport)
    bootstrap: str = NOWHERE

    def transport(self) -> Transport | None:
        return self.memory

    async def publish(
        self,
        topic: str,
        values: Sequence[bytes],
        *,
        key: bytes | None = b"k",
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        await self.memory.ensure_topics([topic])  # as the service makes its topics
        publisher = self.memory.publisher(client_id="test")
        await publisher.send_records([KafkaRecord(topic, key, value, headers) for value in values])

    async def read(
        self,
        topic: str,
        *,
        at_least: int,
        where: Where | None = None,
        settle_s: float = 0.0,
        timeout_s: float = 20.0,
    ) -> list[IncomingRecord]:
        deadline = time.monotonic() + timeout_s
        while True:
            records = [
                r
                for r in (self.memory.records(topic) if topic in self.memory.topics() else [])
                if where is None or where(r)
            ]
            if len(records) >= at_least or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.02)
        if settle_s > 0 and len(records) >= at_least:
            await asyncio.sleep(settle_s)
            return await self.read(topic, at_least=0, where=where)
        return records
