"""A service's use cases run in the process: its consumers on the in-memory broker and a
database held in memory, its store the twin of the SQL one (``<service>.memory``). No
PostgreSQL, no Kafka: the fast tests of ``make test-fast`` drive every use case through it.

The SQL store keeps the same contract as its twin (``tests/support/stores``), and the
service suites run the same use cases on PostgreSQL, so what holds here holds there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from booking_contracts.envelope import Envelope, Event
from platform_runtime.http.metrics import Metrics
from platform_runtime.memorydb import MemoryDatabase, MemoryTransaction
from platform_runtime.messaging import EventConsumer
from platform_runtime.timing import RetryPolicy
from platform_runtime.transport import IncomingRecord
from platform_tooling.polling import until
from tests.support.brokers import MemoryBroker

State = TypeVar("State")
T = TypeVar("T")


@dataclass
class MemoryService(Generic[State]):
    """A service's consumers on ``broker`` and ``db`` (see the module)."""

    db: MemoryDatabase[State]
    broker: MemoryBroker = field(default_factory=MemoryBroker)
    metrics: Metrics = field(default_factory=Metrics)
    consumers: list[EventConsumer[MemoryTransaction[State]]] = field(default_factory=list)
    loops: list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = field(default_factory=list)
    """The service's other loops (a dispatcher, workers), run by :meth:`running`."""

    def __post_init__(self) -> None:
        self.db.publisher = self.broker.memory.publisher(client_id="relay")

    def consumer(
        self,
        name: str,
        *,
        permanent_errors: tuple[type[BaseException], ...] = (),
        capacity: Callable[[], int] | None = None,
    ) -> EventConsumer[MemoryTransaction[State]]:
        """A consumer group of the service, run by :meth:`running`."""
        consumer = EventConsumer(
            name=name,
            transactions=self.db,
            dead_letters=self.broker.memory.publisher(client_id=f"{name}-dead-letters"),
            retry=RetryPolicy(
                max_attempts=2, initial=timedelta(milliseconds=1), maximum=timedelta(0)
            ),
            permanent_errors=permanent_errors,
            metrics=self.metrics,
            transport=self.broker.memory,
            capacity=capacity,
        )
        self.consumers.append(consumer)
        return consumer

    @contextlib.asynccontextmanager
    async def running(self, *topics: str) -> AsyncIterator[MemoryService[State]]:
        """Run every consumer and loop (and make ``topics``, which the service publishes
        to); the loops stop first, as the service stops them."""
        await self.broker.memory.ensure_topics(
            [t for c in self.consumers for t in c.topics] + list(topics)
        )
        stop = asyncio.Event()
        consumers = [asyncio.create_task(c.run(stop)) for c in self.consumers]
        stop_loops = asyncio.Event()
        loops = [asyncio.create_task(run(stop_loops)) for run in self.loops]
        try:
            yield self
        finally:
            stop_loops.set()
            await asyncio.gather(*loops)
            stop.set()
            await asyncio.gather(*consumers)

    async def publish(self, event: Event, *, at: datetime, source: str = "/booking") -> Envelope:
        """Publish ``event`` as the service that owns it does, having happened ``at``."""
        envelope = Envelope.wrap(event, source=source).model_copy(update={"time": at})
        await self.publish_envelope(envelope, event.topic, key=event.aggregate_id())
        return envelope

    async def publish_envelope(self, envelope: Envelope, topic: str, *, key: str) -> None:
        headers = [(k, v.encode()) for k, v in envelope.headers().items()]
        await self.broker.publish(
            topic, [envelope.to_json_bytes()], key=key.encode(), headers=headers
        )

    async def applied(self, envelope: Envelope) -> None:
        """Wait until the consumers committed past ``envelope`` (applied, or dead-lettered)."""

        async def committed() -> bool | None:
            return (
                any(
                    (group, envelope.id) in self.db.inbox
                    for group in (c.name for c in self.consumers)
                )
                or None
            )

        await until(committed, timeout_s=5)

    async def dead_letters(self, topic: str, *, at_least: int = 1) -> list[IncomingRecord]:
        return await self.broker.read(f"{topic}.dlq", at_least=at_least, timeout_s=5)

    async def events(self, topic: str, *, at_least: int = 1) -> list[dict[str, Any]]:
        """The envelopes the service published on ``topic`` (once its outbox relayed them)."""
        records = await self.broker.read(topic, at_least=at_least, timeout_s=5)
        return [json.loads(r.value or b"") for r in records]

    async def state(self) -> State:
        return await self.db.read()

    async def until(self, probe: Callable[[], Awaitable[T | None]]) -> T:
        return await until(probe, timeout_s=5)
