"""The Kafka consumer runtime: idempotent handlers, bounded retries, a dead-letter topic.

An :class:`EventConsumer` owns one consumer group. For every record it

1. decodes the CloudEvents envelope and typed payload; a record that cannot be decoded, or
   names an event type the platform does not define, goes to ``<topic>.dlq`` at once;
2. skips event types it has no handler for (topics carry several types);
3. claims the event id in its inbox and runs the handler in one database transaction, so a
   redelivered event has no second effect;
4. on an error the handler declared permanent (an impossible event), dead-letters the record
   with the reason; on any other error retries with exponential backoff up to
   ``max_attempts`` and then dead-letters it; while the *database or broker is unreachable*
   it keeps retrying without counting, because the record is fine and dead-lettering every
   record during an outage would be worse than waiting;
5. commits the offset only after all of this (never FastStream's ack-first default).

The partition keeps moving in every case except an outage, and nothing is acknowledged that
was not applied, deduplicated or dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import asyncpg
from sqlalchemy import Table
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import inbox
from shared.events.envelope import Envelope, Event, EventDecodeError, decode
from shared.events.money import utc_now
from shared.events.topics import dead_letter_topic
from shared.observability import correlation_id as correlation_id_var
from shared.outbox import causation_id_var

if TYPE_CHECKING:
    from faststream.kafka import KafkaBroker
    from prometheus_client import Counter, Histogram

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)


class PermanentEventError(Exception):
    """Raised by a handler for an event that can never be applied (dead-lettered at once)."""


@dataclass(frozen=True)
class IncomingRecord:
    """The parts of a Kafka record the runtime needs; independent of the client library."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass(frozen=True)
class EventContext:
    """What a handler gets beside the event: its transaction and the envelope."""

    session: AsyncSession
    envelope: Envelope
    record: IncomingRecord


Handler = Callable[[Any, EventContext], Awaitable[None]]


class Outcome(enum.StrEnum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    DEAD_LETTERED = "dead_lettered"
    ABANDONED = "abandoned"  # the consumer is stopping; the record will be redelivered


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 5.0

    def backoff(self, attempt: int) -> float:
        """Delay after the ``attempt``-th failure (1-based), doubling up to the cap."""
        return float(min(self.initial_backoff_s * 2 ** (attempt - 1), self.max_backoff_s))


class DeadLetterSink(Protocol):
    async def send(
        self, topic: str, *, key: bytes | None, value: bytes | None, headers: dict[str, str]
    ) -> None:
        """Publish one record and return once the broker acknowledged it."""


class ConsumerMetrics(Protocol):
    def counter(self, name: str, documentation: str, labels: Sequence[str]) -> Counter: ...

    def histogram(self, name: str, documentation: str, labels: Sequence[str]) -> Histogram: ...


_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    PoolTimeoutError,
    DisconnectionError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.InterfaceError,
)


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` means the database or broker is unreachable, not that data is bad."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, _CONNECTION_ERRORS):
            return True
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException) and _is_connection_error(orig):
            return True
        current = current.__cause__ or current.__context__
    return False


def _is_connection_error(exc: BaseException) -> bool:
    return isinstance(exc, _CONNECTION_ERRORS)


@dataclass
class EventConsumer:
    """One consumer group: event type -> handler, applied exactly once per event id."""

    name: str
    session_factory: async_sessionmaker[AsyncSession]
    inbox_table: Table
    dead_letters: DeadLetterSink
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    permanent_errors: tuple[type[BaseException], ...] = ()
    metrics: ConsumerMetrics | None = None
    _handlers: dict[type[Event], Handler] = field(default_factory=dict)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._outcomes: Counter | None = None
        self._durations: Histogram | None = None
        if self.metrics is not None:
            self._outcomes = self.metrics.counter(
                "events_consumed_total",
                "Events taken from Kafka by outcome",
                ["consumer", "event_type", "outcome"],
            )
            self._durations = self.metrics.histogram(
                "event_handling_seconds", "Time to handle one event", ["consumer"]
            )
        self._expose_dead_letters("?")  # undecodable records

    def on(
        self, event_type: type[E]
    ) -> Callable[
        [Callable[[E, EventContext], Awaitable[None]]], Callable[[E, EventContext], Awaitable[None]]
    ]:
        """Register the handler of ``event_type`` (one handler per type)."""

        def register(
            handler: Callable[[E, EventContext], Awaitable[None]],
        ) -> Callable[[E, EventContext], Awaitable[None]]:
            if event_type in self._handlers:
                raise ValueError(f"{self.name} already handles {event_type.type_name()}")
            self._handlers[event_type] = handler
            self._expose_dead_letters(event_type.type_name())
            return handler

        return register

    @property
    def topics(self) -> list[str]:
        return sorted({event_type.topic for event_type in self._handlers})

    def stop(self) -> None:
        """Make in-flight retries give up so that the consumer can shut down promptly."""
        self._stopping.set()

    async def process(self, record: IncomingRecord) -> Outcome:
        """Apply one record; the caller acknowledges it unless the outcome is ABANDONED."""
        started = time.perf_counter()
        try:
            envelope, event = decode(record.value)
        except EventDecodeError as exc:
            return await self._dead_letter(record, "undecodable", str(exc), event_type="?")
        handler = self._handlers.get(type(event))
        if handler is None:
            self._count(envelope.type, Outcome.IGNORED)
            return Outcome.IGNORED
        outcome = await self._apply_with_retries(record, envelope, event, handler)
        if self._durations is not None:
            self._durations.labels(self.name).observe(time.perf_counter() - started)
        return outcome

    async def _apply_with_retries(
        self, record: IncomingRecord, envelope: Envelope, event: Event, handler: Handler
    ) -> Outcome:
        failures = 0
        outage_waits = 0
        while True:
            try:
                applied = await self._apply(record, envelope, event, handler)
            except self.permanent_errors as exc:
                return await self._dead_letter(
                    record, "rejected", _describe(exc), event_type=envelope.type
                )
            except PermanentEventError as exc:
                return await self._dead_letter(
                    record, "rejected", _describe(exc), event_type=envelope.type
                )
            except Exception as exc:
                if is_outage(exc):
                    outage_waits += 1
                    delay = self.retry.backoff(min(outage_waits, 30))
                    log.warning(
                        "%s: database unreachable while handling %s, retrying in %.1fs",
                        self.name,
                        envelope.type,
                        delay,
                        exc_info=outage_waits == 1,
                    )
                else:
                    failures += 1
                    if failures >= self.retry.max_attempts:
                        log.error(
                            "%s: giving up on %s after %d attempts",
                            self.name,
                            envelope.type,
                            failures,
                            exc_info=True,
                        )
                        return await self._dead_letter(
                            record,
                            "retries_exhausted",
                            f"failed {failures} times, last error: {_describe(exc)}",
                            event_type=envelope.type,
                        )
                    delay = self.retry.backoff(failures)
                    log.warning(
                        "%s: handling %s failed (attempt %d), retrying in %.1fs",
                        self.name,
                        envelope.type,
                        failures,
                        delay,
                        exc_info=True,
                    )
                if await self._interrupted_by_stop(delay):
                    return Outcome.ABANDONED
                continue
            outcome = Outcome.PROCESSED if applied else Outcome.DUPLICATE
            self._count(envelope.type, outcome)
            return outcome

    async def _apply(
        self, record: IncomingRecord, envelope: Envelope, event: Event, handler: Handler
    ) -> bool:
        correlation_token = correlation_id_var.set(envelope.correlationid or str(envelope.id))
        causation_token = causation_id_var.set(str(envelope.id))
        try:
            async with self.session_factory() as session, session.begin():
                claimed = await inbox.claim(
                    session,
                    self.inbox_table,
                    consumer=self.name,
                    event_id=envelope.id,
                    event_type=envelope.type,
                )
                if not claimed:
                    return False
                await handler(
                    event, EventContext(session=session, envelope=envelope, record=record)
                )
            return True
        finally:
            causation_id_var.reset(causation_token)
            correlation_id_var.reset(correlation_token)

    async def _dead_letter(
        self, record: IncomingRecord, kind: str, reason: str, *, event_type: str
    ) -> Outcome:
        headers = {k: v.decode(errors="replace") for k, v in record.headers}
        headers.update(
            {
                "dlq_reason": reason[:4000],
                "dlq_kind": kind,
                "dlq_consumer": self.name,
                "dlq_original_topic": record.topic,
                "dlq_original_partition": str(record.partition),
                "dlq_original_offset": str(record.offset),
                "dlq_failed_at": utc_now().isoformat(),
            }
        )
        log.error(
            "%s: dead-lettering %s record %s[%d]@%d: %s",
            self.name,
            event_type,
            record.topic,
            record.partition,
            record.offset,
            reason,
        )
        attempt = 0
        while True:
            try:
                await self.dead_letters.send(
                    dead_letter_topic(record.topic),
                    key=record.key,
                    value=record.value,
                    headers=headers,
                )
                break
            except Exception:
                attempt += 1
                log.warning(
                    "%s: dead-letter topic unavailable, retrying", self.name, exc_info=attempt == 1
                )
                if await self._interrupted_by_stop(self.retry.backoff(min(attempt, 30))):
                    return Outcome.ABANDONED
        self._count(event_type, Outcome.DEAD_LETTERED)
        return Outcome.DEAD_LETTERED

    async def _interrupted_by_stop(self, delay: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)
        return self._stopping.is_set()

    def _expose_dead_letters(self, event_type: str) -> None:
        """Export the dead-letter count of ``event_type`` at 0 before the first one, so that
        ``increase()`` over it also sees the first dead letter."""
        if self._outcomes is not None:
            self._outcomes.labels(self.name, event_type, Outcome.DEAD_LETTERED.value)

    def _count(self, event_type: str, outcome: Outcome) -> None:
        if self._outcomes is not None:
            self._outcomes.labels(self.name, event_type, outcome.value).inc()

    # --- FastStream glue -----------------------------------------------------------------

    def attach(
        self, broker: KafkaBroker, *, fetch_max_wait_ms: int = 50, **subscriber_options: Any
    ) -> Any:
        """Subscribe this consumer's group to its topics on ``broker`` (manual commits)."""
        from faststream import AckPolicy
        from faststream.kafka.annotations import KafkaMessage

        async def handle(message: KafkaMessage) -> None:
            raw = message.raw_message
            assert not isinstance(raw, tuple)
            record = IncomingRecord(
                topic=raw.topic,
                partition=raw.partition,
                offset=raw.offset,
                key=raw.key,
                value=raw.value,
                headers=tuple(raw.headers or ()),
            )
            outcome = await self.process(record)
            if outcome is Outcome.ABANDONED:
                await message.nack()  # seek back: the record is redelivered, never skipped
            else:
                await message.ack()

        # Real objects, not the strings ``from __future__ import annotations`` leaves behind:
        # FastStream resolves the handler's parameters from them at subscription time.
        handle.__annotations__ = {"message": KafkaMessage, "return": None}
        handle.__name__ = f"consume_{self.name.replace('-', '_')}"
        subscriber = broker.subscriber(
            *self.topics,
            group_id=self.name,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.MANUAL,
            fetch_max_wait_ms=fetch_max_wait_ms,
            **subscriber_options,
        )
        return subscriber(handle)


BatchItem = tuple[Envelope, Event]


@dataclass
class BatchEventConsumer(EventConsumer):
    """A consumer group for work queues: records taken and applied a batch at a time.

    Where :class:`EventConsumer` applies one record per transaction, this one takes up to
    ``capacity()`` records, decodes them (undecodable ones go to the dead-letter topic at
    once), claims all their event ids in the inbox and hands the new ones to its ``apply``
    function **in one transaction**, then calls ``applied`` with what ``apply`` returned
    (only after the commit), and only then commits the offsets. A redelivered batch is a
    no-op for every event already applied; while the database is unreachable the batch is
    retried, never skipped; a batch that keeps failing otherwise is dead-lettered record by
    record. Register the one event type with :meth:`on_batch`; the service runtime runs
    :meth:`run` as a background loop (it is not a FastStream subscriber).
    """

    bootstrap_servers: str = "127.0.0.1:9092"
    fetch_max_wait_ms: int = 50
    capacity: Callable[[], int] = lambda: 500
    """How many records the consumer may take now (e.g. free room in a pool of senders)."""
    _apply_batch: Callable[[AsyncSession, list[BatchItem]], Awaitable[Any]] | None = None
    _after_commit: Callable[[Any], None] | None = None

    def on_batch(
        self,
        event_type: type[E],
        apply: Callable[[AsyncSession, list[BatchItem]], Awaitable[Any]],
        applied: Callable[[Any], None],
    ) -> None:
        """Apply batches of ``event_type`` with ``apply(session, items)``; ``applied(result)``
        runs once the batch's transaction committed."""
        if self._handlers:
            raise ValueError(f"{self.name} already consumes a batch type")
        self._handlers[event_type] = _not_called
        self._expose_dead_letters(event_type.type_name())
        self._apply_batch, self._after_commit = apply, applied

    def attach(self, broker: KafkaBroker, **_: Any) -> None:
        """Nothing to subscribe: :meth:`run` consumes (the runtime starts it)."""

    async def run(self, stop: asyncio.Event) -> None:
        """Take and apply batches until ``stop`` is set."""
        from aiokafka import AIOKafkaConsumer
        from aiokafka.errors import KafkaError

        consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.name,
            client_id=self.name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.fetch_max_wait_ms,
        )
        await consumer.start()
        stopper = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                room = self.capacity()
                if room <= 0:
                    await self._interrupted_by_stop(0.05)
                    continue
                fetched = await consumer.getmany(timeout_ms=200, max_records=room)
                records = [
                    IncomingRecord(
                        topic=r.topic,
                        partition=r.partition,
                        offset=r.offset,
                        key=r.key,
                        value=r.value,
                        headers=tuple(r.headers or ()),
                    )
                    for batch in fetched.values()
                    for r in batch
                ]
                if records and await self.process_batch(records):
                    try:
                        await consumer.commit()
                    except KafkaError:  # a rebalance: the next owner re-reads, the inbox dedupes
                        log.warning("%s: committing offsets failed", self.name, exc_info=True)
        finally:
            stopper.cancel()
            self.stop()
            await consumer.stop()

    async def process_batch(self, records: Sequence[IncomingRecord]) -> bool:
        """Apply one batch; False if the consumer stopped before it was done."""
        items: list[tuple[IncomingRecord, Envelope, Event]] = []
        for record in records:
            try:
                envelope, event = decode(record.value)
            except EventDecodeError as exc:
                if await self._dead_letter(record, "undecodable", str(exc), event_type="?") is (
                    Outcome.ABANDONED
                ):
                    return False
                continue
            if type(event) in self._handlers:
                items.append((record, envelope, event))
            else:
                self._count(envelope.type, Outcome.IGNORED)
        return await self._apply_items(items) if items else True

    async def _apply_items(self, items: list[tuple[IncomingRecord, Envelope, Event]]) -> bool:
        """Claim and apply ``items`` in one transaction, retried while it fails. A batch that
        keeps failing is split into its records, each applied on its own, so that only a
        record that fails alone goes to the dead-letter topic. False: the consumer stopped
        before it was done (nothing to commit)."""
        failures = outage_waits = 0
        while True:
            try:
                async with self.session_factory() as session, session.begin():
                    fresh = await inbox.claim_many(
                        session,
                        self.inbox_table,
                        consumer=self.name,
                        events={envelope.id: envelope.type for _, envelope, _ in items},
                    )
                    new, taken = [], set()
                    for _, envelope, event in items:  # once, even if twice in this batch
                        if envelope.id in fresh and envelope.id not in taken:
                            taken.add(envelope.id)
                            new.append((envelope, event))
                    assert self._apply_batch is not None
                    result = await self._apply_batch(session, new) if new else None
                break
            except Exception as exc:
                if is_outage(exc):
                    outage_waits += 1
                    delay = self.retry.backoff(min(outage_waits, 30))
                else:
                    failures += 1
                    if failures >= self.retry.max_attempts:
                        return await self._give_up(items, failures, exc)
                    delay = self.retry.backoff(failures)
                log.warning("%s: batch failed, retrying in %.1fs", self.name, delay, exc_info=True)
                if await self._interrupted_by_stop(delay):
                    return False
        for envelope, _ in new:
            self._count(envelope.type, Outcome.PROCESSED)
        for _ in range(len(items) - len(new)):
            self._count(items[0][1].type, Outcome.DUPLICATE)
        if new and self._after_commit is not None:
            self._after_commit(result)
        return True

    async def _give_up(
        self, items: list[tuple[IncomingRecord, Envelope, Event]], failures: int, exc: Exception
    ) -> bool:
        if len(items) > 1:
            log.error(
                "%s: a batch of %d keeps failing; applying its records one by one",
                self.name,
                len(items),
                exc_info=True,
            )
            for item in items:
                if not await self._apply_items([item]):
                    return False
            return True
        ((record, envelope, _),) = items
        log.error("%s: giving up on %s", self.name, envelope.type, exc_info=True)
        reason = f"failed {failures} times, last error: {_describe(exc)}"
        outcome = await self._dead_letter(
            record, "retries_exhausted", reason, event_type=envelope.type
        )
        return outcome is not Outcome.ABANDONED


async def _not_called(event: Event, ctx: EventContext) -> None:  # pragma: no cover
    raise AssertionError("batch consumers apply batches, not single events")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
