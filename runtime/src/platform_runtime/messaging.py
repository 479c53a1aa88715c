"""The Kafka consumer runtime: batches, one transaction each, idempotent, with a dead-letter topic.

An :class:`EventConsumer` owns one consumer group and runs as a background loop of its service
(:meth:`EventConsumer.run`) on a group consumer of its
:class:`~platform_runtime.transport.Transport` (aiokafka, or the in-memory one), which commits
by hand and starts a new group at the earliest offset. Each poll takes up to ``max_records``
records (a work queue: up to ``capacity()``) and gives each partition's records to a *lane*;
the lanes of a poll run concurrently (up to ``lanes`` at a time), each in offset order, so
the events of one key (one partition) are applied in the order they were published. In a
lane

1. a record whose ``ce_type`` header (written by the outbox) names an event type the platform
   defines but this consumer has no handler for is skipped without decoding its value;
2. every other record is decoded (CloudEvents envelope and typed payload); one that cannot
   be decoded, or names an event type the platform does not define, goes to ``<topic>.dlq``
   at once;
3. the records in between are applied in **one** database transaction: their event ids are
   claimed in the inbox, then each new event's handler runs in order on the same session (an
   event id seen before, or twice in the batch, is applied once), so a redelivered event has
   no second effect; consecutive events of a *batch handler* (:meth:`EventConsumer.on_many`)
   are given to it in one call, to be applied set-based;
4. when a handler raises for one record, the transaction rolls back; the records before it
   are applied again as one batch, the record itself on its own, then the rest. An error the
   handler declared permanent (:class:`PermanentEventError` or the consumer's
   ``permanent_errors``: an impossible event) dead-letters the record at once; any other
   error is retried on its own, with exponential backoff, up to ``max_attempts`` attempts
   (the failed batch does not count: its error may be the batch's, e.g. a deadlock with
   another batch) and then dead-letters it. While the *database or broker is unreachable*
   (:func:`is_outage`) the batch, or the record, is retried without counting, because the
   records are fine and dead-lettering every record during an outage would be worse than
   waiting. After a failure the records that follow are taken one, two, four... at a time,
   so a stretch of poison records costs a transaction each rather than a batch each.

Once every lane of the poll is done, the offsets after the last record of each partition
are committed, in one request, after the database commits. Only offsets below which every
record was applied, found to be a duplicate, skipped or dead-lettered are ever committed:
a lane that gave up (the consumer is stopping, or a rebalance takes its partitions) commits
the records before the one it gave up on, and the next owner reads from there. A crash
anywhere before the offset commit redelivers records whose effects are in the database; the
inbox turns them into no-ops.

A *work queue* consumer (:meth:`EventConsumer.on_batch`) is the same runtime with one apply
function for a whole batch instead of one handler per event: its records need no order
across keys, so a poll is one lane (one transaction), and a batch that fails is split in
halves until the failing record is alone.

Metrics: ``events_consumed_total{consumer,event_type,outcome}`` (``processed``,
``duplicate``, ``ignored``, ``dead_lettered``) and ``event_handling_seconds{consumer}``, the
time of each committed transaction shared evenly among its records.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol

import asyncpg
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession
from typing_extensions import TypeVar

from booking_contracts.envelope import (
    Envelope,
    Event,
    EventCatalogue,
    EventDecodeError,
    UnknownEventType,
    decode,
)
from booking_contracts.money import utc_now
from booking_contracts.topics import MAX_DEAD_LETTER_VALUE_BYTES, dead_letter_topic
from platform_runtime import tracing
from platform_runtime.errors import KernelError, describe
from platform_runtime.observability import correlation_id as correlation_id_var
from platform_runtime.outbox import causation_id_var, reply_ids
from platform_runtime.timing import RetryPolicy, sleep_unless
from platform_runtime.transactions import Transactions
from platform_runtime.transport import CommitFailed, GroupConsumer, IncomingRecord, Transport

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)
S = TypeVar("S", default=AsyncSession)
"""The transaction handlers are given (see :mod:`platform_runtime.transactions`)."""

POLL_TIMEOUT_MS = 200
"""Longest wait of one poll for records (so that a stop is noticed)."""
TYPE_HEADER = "ce_type"
"""The record header naming the event type (see :meth:`Envelope.headers`)."""


class PermanentEventError(KernelError):
    """Raised by a handler for an event that can never be applied (dead-lettered at once)."""


class BatchItemError(KernelError):
    """Raised by a batch handler (:meth:`EventConsumer.on_many`): applying its
    ``index``-th event failed with ``error``. The runtime treats ``error`` as that event's
    own, exactly as if a one-event handler had raised it; any other exception from a batch
    handler blames no event in particular (the batch is split until the culprit is alone)."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(f"event {index} of the batch: {describe(error)}")
        self.index = index
        self.error = error


@dataclass(frozen=True)
class EventContext(Generic[S]):
    """What a handler gets beside the event: its transaction and the envelope."""

    session: S
    envelope: Envelope
    record: IncomingRecord


Handler = Callable[[Any, EventContext[Any]], Awaitable[None]]

BatchItem = tuple[Envelope, Event]

ManyHandler = Callable[[Any, list[tuple[Envelope, Any]]], Awaitable[None]]
H = TypeVar("H", bound=ManyHandler)


class Outcome(enum.StrEnum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    DEAD_LETTERED = "dead_lettered"
    ABANDONED = "abandoned"  # the consumer gave up in-flight work; the record is redelivered


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
_ClientDataError = asyncpg.exceptions._base.DataError
"""asyncpg's own error for a query argument it cannot encode (not the server's class 22
``asyncpg.exceptions.DataError``, which shares its name)."""
TRANSIENT_SQLSTATE_CLASSES: frozenset[str] = frozenset({"08", "40", "53", "57"})
"""SQLSTATE classes of trouble that passes: connection exceptions, transaction rollbacks
(serialization failures, deadlocks), insufficient resources (too many connections, disk full,
out of memory), operator intervention (shutdown, a server that cannot take connections yet)."""
TRANSIENT_SQLSTATES: frozenset[str] = frozenset({"25006"})
"""A read-only transaction: the primary is failing over and this connection reached a
standby."""
DATA_SQLSTATE_CLASS = "22"
"""Data exceptions (a value out of range, invalid text): the event, not the moment, is wrong."""


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what caused it (``__cause__``/``__context__``, SQLAlchemy's ``orig``)."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [
            cause
            for cause in (getattr(current, "orig", None), current.__cause__, current.__context__)
            if isinstance(cause, BaseException)
        ]


def _sqlstate(exc: BaseException) -> str | None:
    state = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    return state if isinstance(state, str) and len(state) == 5 else None


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` means the database or broker is unreachable or in trouble that
    passes (see :data:`TRANSIENT_SQLSTATE_CLASSES`), not that data is bad: the records are
    retried without counting attempts, and never dead-lettered for it.

    asyncpg's ``DataError`` (a value the client cannot encode, e.g. an integer over 2^31)
    is an ``InterfaceError`` but says nothing about the connection: it is not an outage."""
    for current in _causes(exc):
        if is_bad_data(current):
            return False
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        state = _sqlstate(current)
        if state is not None and (
            state[:2] in TRANSIENT_SQLSTATE_CLASSES or state in TRANSIENT_SQLSTATES
        ):
            return True
        if isinstance(current, _CONNECTION_ERRORS):
            return True
    return False


def is_bad_data(exc: BaseException) -> bool:
    """True when ``exc`` says a value of the event cannot be stored (asyncpg's client-side
    ``DataError``, or PostgreSQL's data exceptions, SQLSTATE class 22): retrying cannot help,
    so the record is dead-lettered at once."""
    return any(
        isinstance(current, _ClientDataError)
        or (_sqlstate(current) or "")[:2] == DATA_SQLSTATE_CLASS
        for current in _causes(exc)
    )


@dataclass(frozen=True)
class _Item:
    """A decoded record to apply, with its place in its lane."""

    index: int
    record: IncomingRecord
    envelope: Envelope
    event: Event


@dataclass(frozen=True)
class _Failure:
    """Why a transaction did not commit; ``at``: the run index of the record whose handler
    raised (None when the error is not one record's, e.g. the commit or a batch function)."""

    error: Exception
    at: int | None


@dataclass(frozen=True)
class _Run:
    """Records to apply in one transaction, or one record to apply on its own after
    ``failure`` (a permanent error seen in its batch)."""

    items: Sequence[_Item]
    failure: _Failure | None = None
    after_failure: bool = False
    """The records after one that failed: taken a few at a time (see ``_apply_all``)."""


@dataclass(frozen=True)
class _BatchApply:
    apply: Callable[[Any, list[BatchItem]], Awaitable[Any]]
    applied: Callable[[Any], None]


@dataclass
class EventConsumer(Generic[S]):
    """One consumer group: event type -> handler, applied exactly once per event id."""

    name: str
    transactions: Transactions[S]
    """Where batches are applied and their event ids claimed: the service's database."""
    dead_letters: DeadLetterSink
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    permanent_errors: tuple[type[BaseException], ...] = ()
    metrics: ConsumerMetrics | None = None
    transport: Transport | None = None
    """Where the records come from (required by :meth:`run`; :meth:`handle` needs none)."""
    fetch_max_wait_ms: int = 50
    max_records: int = 500
    """Most records taken by one poll (one batch per partition)."""
    lanes: int = 4
    """Partitions of a poll applied at once (each holds a database connection meanwhile)."""
    capacity: Callable[[], int] | None = None
    """How many records the consumer may take now (e.g. free room in a pool of senders);
    at most ``max_records``, and none while it is 0."""
    _handlers: dict[type[Event], Handler] = field(default_factory=dict)
    _many: dict[type[Event], ManyHandler] = field(default_factory=dict)
    """Event types applied by a batch handler (see :meth:`on_many`)."""
    _names: set[str] = field(default_factory=set)
    """The CloudEvents types of ``_handlers``."""
    _batch: _BatchApply | None = None
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _give_up: asyncio.Event = field(default_factory=asyncio.Event)
    """Set: retries and dead letters in flight give up (a stop, or a rebalance)."""
    _idle: asyncio.Event = field(default_factory=asyncio.Event)
    """Clear while a poll's records are handled and committed."""

    def __post_init__(self) -> None:
        self._idle.set()
        self._outcomes: Counter | None = None
        self._durations: Histogram | None = None
        self._dead_letter_failures: Counter | None = None
        if self.metrics is not None:
            self._outcomes = self.metrics.counter(
                "events_consumed_total",
                "Events taken from Kafka by outcome",
                ["consumer", "event_type", "outcome"],
            )
            self._durations = self.metrics.histogram(
                "event_handling_seconds", "Time to handle one event", ["consumer"]
            )
            self._dead_letter_failures = self.metrics.counter(
                "dead_letter_write_failures_total",
                "Attempts to write a record to its dead-letter topic that failed (its partition "
                "waits meanwhile)",
                ["consumer"],
            )
            self._dead_letter_failures.labels(self.name)
        self._expose_dead_letters("?")  # undecodable records

    # --- registration -------------------------------------------------------------------

    def on(
        self, event_type: type[E]
    ) -> Callable[
        [Callable[[E, EventContext[S]], Awaitable[None]]],
        Callable[[E, EventContext[S]], Awaitable[None]],
    ]:
        """Register the handler of ``event_type`` (one handler per type)."""

        def register(
            handler: Callable[[E, EventContext[S]], Awaitable[None]],
        ) -> Callable[[E, EventContext[S]], Awaitable[None]]:
            if event_type in self._handlers:
                raise ValueError(f"{self.name} already handles {event_type.type_name()}")
            if self._batch is not None:
                raise ValueError(f"{self.name} applies batches (a work queue)")
            self._handlers[event_type] = handler
            self._names.add(event_type.type_name())
            self._expose_dead_letters(event_type.type_name())
            return handler

        return register

    def on_many(self, *event_types: type[Event]) -> Callable[[H], H]:
        """Register a *batch handler* of ``event_types``: in a lane's transaction, each run
        of consecutive new events of these types is applied by one call
        ``handler(session, [(envelope, event), ...])``, in offset order, so that the handler
        can apply them set-based (a statement for many events instead of one per event).

        The handler must leave the database as if the events had been applied one after the
        other. When one event cannot be applied it raises :class:`BatchItemError` naming it:
        the events before it are applied again as a batch, the event itself alone (and
        dead-lettered if the error is permanent), then the rest. Events written to the
        outbox on behalf of one event should name it as their cause
        (:meth:`platform_runtime.outbox.Outbox.add_replies`).
        """

        def register(handler: H) -> H:
            if not event_types:
                raise ValueError("on_many needs at least one event type")
            taken = [t.type_name() for t in event_types if t in self._handlers]
            if taken:
                raise ValueError(f"{self.name} already handles {', '.join(taken)}")
            for event_type in event_types:
                self.on(event_type)(_not_called)
                self._many[event_type] = handler
            return handler

        return register

    def on_batch(
        self,
        event_type: type[E],
        apply: Callable[[S, list[BatchItem]], Awaitable[Any]],
        applied: Callable[[Any], None],
    ) -> None:
        """Make this consumer a work queue of ``event_type``: each batch of new events is
        applied with ``apply(session, items)`` in the transaction of its inbox claims, and
        ``applied(result)`` runs once that transaction committed (before the offsets are)."""
        if self._handlers:
            raise ValueError(f"{self.name} already consumes {', '.join(sorted(self._names))}")
        self._handlers[event_type] = _not_called
        self._names.add(event_type.type_name())
        self._expose_dead_letters(event_type.type_name())
        self._batch = _BatchApply(apply, applied)

    @property
    def topics(self) -> list[str]:
        return sorted({event_type.topic for event_type in self._handlers})

    def stop(self) -> None:
        """End :meth:`run` and make in-flight retries give up, so that the consumer shuts
        down promptly; what they held is not committed and is redelivered."""
        self._stopping.set()
        self._give_up.set()

    # --- the loop -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Take, apply and commit batches until ``stop`` is set or :meth:`stop` is called."""
        if self.transport is None:
            raise ValueError(f"{self.name} has no transport to consume from")
        consumer = self.transport.group_consumer(
            self.topics,
            group=self.name,
            hand_over=self._hand_over,
            fetch_max_wait_ms=self.fetch_max_wait_ms,
        )
        stopper = asyncio.create_task(self._stop_on(stop))
        try:
            await consumer.start()
            while not self._stopping.is_set():
                room = self._room()
                if room <= 0:
                    await self._nap(0.05)
                    continue
                fetched = await consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=room)
                if fetched:
                    await self._take(consumer, fetched)
        finally:
            stopper.cancel()
            with contextlib.suppress(Exception):  # leaving the group; an error here masks none
                await consumer.stop()

    async def _take(self, consumer: GroupConsumer, fetched: Sequence[IncomingRecord]) -> None:
        """Handle one poll, then commit what it completed (a rebalance waits for this)."""
        self._idle.clear()
        try:
            positions = await self.handle(fetched)
            await self._commit(consumer, positions)
        finally:
            self._idle.set()

    async def _commit(
        self, consumer: GroupConsumer, positions: Mapping[tuple[str, int], int]
    ) -> None:
        """Commit ``positions`` of the partitions this member still owns, in one request."""
        owned = consumer.assignment()
        offsets = {tp: offset for tp, offset in positions.items() if tp in owned}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except CommitFailed:  # the group moved on: the next owner re-reads, the inbox dedupes
            log.warning("%s: committing offsets failed", self.name, exc_info=True)

    async def _hand_over(self) -> None:
        """A rebalance takes this member's partitions: in-flight retries give up, and the
        poll in flight is finished and committed before the partitions move on."""
        if not self._idle.is_set():
            self._give_up.set()
            await self._idle.wait()

    async def _stop_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.stop()

    def _room(self) -> int:
        if self.capacity is None:
            return self.max_records
        return min(self.capacity(), self.max_records)

    async def _nap(self, seconds: float) -> None:
        await sleep_unless(self._stopping, seconds)

    # --- one poll -------------------------------------------------------------------------

    async def handle(self, records: Sequence[IncomingRecord]) -> dict[tuple[str, int], int]:
        """Handle one poll's records (each partition's in offset order).

        Returns, per ``(topic, partition)`` where records were done, the offset to commit:
        every record of the poll below it was applied, found to be a duplicate, skipped or
        dead-lettered. A partition whose first record was given up is left out.
        """
        if not self._stopping.is_set():
            self._give_up.clear()
        lanes: list[Sequence[IncomingRecord]]
        if self._batch is not None:
            lanes = [records] if records else []
        else:
            by_partition: dict[tuple[str, int], list[IncomingRecord]] = {}
            for record in records:
                by_partition.setdefault((record.topic, record.partition), []).append(record)
            lanes = list(by_partition.values())
        room = asyncio.Semaphore(self.lanes)
        async with asyncio.TaskGroup() as group:
            done = [group.create_task(self._lane(lane, room)) for lane in lanes]
        positions: dict[tuple[str, int], int] = {}
        for lane, finished in zip(lanes, done, strict=True):
            for record in lane[: finished.result()]:
                positions[(record.topic, record.partition)] = record.offset + 1
        return positions

    async def _lane(self, records: Sequence[IncomingRecord], room: asyncio.Semaphore) -> int:
        """Handle ``records`` in order once there is ``room``; returns how many of them, from
        the first, are done (all of them unless in-flight work was given up; none if that
        happened before the lane started)."""
        async with room:
            return 0 if self._give_up.is_set() else await self._run_lane(records)

    async def _run_lane(self, records: Sequence[IncomingRecord]) -> int:
        run: list[_Item] = []
        for index, record in enumerate(records):
            step = self._triage(index, record)
            if isinstance(step, _Item):
                run.append(step)
            elif step is not None:  # undecodable: the records before it first
                stopped = await self._apply_all(run)
                if stopped is not None:
                    return stopped
                run = []
                outcome = await self._dead_letter(record, "undecodable", str(step), event_type="?")
                if outcome is Outcome.ABANDONED:
                    return index
        stopped = await self._apply_all(run)
        return len(records) if stopped is None else stopped

    def _triage(self, index: int, record: IncomingRecord) -> _Item | EventDecodeError | None:
        """The record decoded, the reason it cannot be, or None: skipped (counted)."""
        declared = record.header(TYPE_HEADER)
        if declared is not None and declared not in self._names and _defined(declared):
            self._count(declared, Outcome.IGNORED)
            return None
        try:
            envelope, event = decode(record.value)
        except EventDecodeError as exc:
            return exc
        if type(event) not in self._handlers:
            self._count(envelope.type, Outcome.IGNORED)
            return None
        return _Item(index, record, envelope, event)

    async def _apply_all(self, items: Sequence[_Item]) -> int | None:
        """Apply ``items`` in order, in as few transactions as their failures allow; returns
        None once every one is applied or dead-lettered, else the lane index of the first
        that is not (in-flight work was given up; none after it was applied).

        After a record failed, the records after it are taken one, then two, four... at a
        time, so that a stretch of poison records costs a transaction each, not a batch each.
        """
        todo = [_Run(items)] if items else []  # the earliest records are on top
        size = len(items)  # of the next batch of the records after a failure
        outage_waits = 0
        while todo:
            run = todo.pop()
            if run.after_failure and len(run.items) > size:
                todo.append(_Run(run.items[size:], after_failure=True))
                run = _Run(run.items[:size])
            failure = run.failure or await self._transaction(run.items)
            if failure is None:
                size *= 2
                continue
            if len(run.items) == 1:
                if not await self._apply_alone(run.items[0], failure):
                    return run.items[0].index
                size = 1
            elif is_outage(failure.error):
                outage_waits += 1
                delay = self.retry.backoff(min(outage_waits, 30)).total_seconds()
                log.warning(
                    "%s: database unreachable while applying %d events, retrying in %.1fs",
                    self.name,
                    len(run.items),
                    delay,
                    exc_info=outage_waits == 1,
                )
                if await self._interrupted(delay):
                    return run.items[0].index
                todo.append(run)
            elif failure.at is None:  # not one record's error: halve until it is alone
                half = len(run.items) // 2
                todo += [_Run(run.items[half:]), _Run(run.items[:half])]
            else:  # the records before it again, then it alone, then the rest
                todo += self._split(run.items, failure, failure.at)
                size = 1
        return None

    def _split(self, items: Sequence[_Item], failure: _Failure, at: int) -> list[_Run]:
        """What is left of ``items`` after the handler of ``items[at]`` raised, latest first:
        the records after it, it alone (with the error if that is permanent: dead-lettered
        at once; otherwise tried afresh, as the error may be the batch's, e.g. a deadlock
        with another batch), the records before it (they were fine: one batch again)."""
        log.info(
            "%s: handling %s failed in a batch of %d (%s); it is applied on its own",
            self.name,
            items[at].envelope.type,
            len(items),
            describe(failure.error),
        )
        blame = failure if self._permanent(failure.error) else None
        runs = [_Run(items[at + 1 :], after_failure=True)] if at + 1 < len(items) else []
        runs.append(_Run(items[at : at + 1], failure=blame))
        return runs + ([_Run(items[:at])] if at else [])

    async def _apply_alone(self, item: _Item, failure: _Failure) -> bool:
        """Apply one record in transactions of its own after its own transaction failed
        with ``failure`` (or, a permanent error, its batch's), until it is applied or
        dead-lettered; False if in-flight work was given up."""
        failures = outage_waits = 0
        while True:
            error = failure.error
            event_type = item.envelope.type
            if self._permanent(error):
                outcome = await self._dead_letter(
                    item.record, "rejected", describe(error), event_type=event_type
                )
                return outcome is not Outcome.ABANDONED
            if is_outage(error):
                outage_waits += 1
                delay = self.retry.backoff(min(outage_waits, 30)).total_seconds()
                log.warning(
                    "%s: database unreachable while handling %s, retrying in %.1fs",
                    self.name,
                    event_type,
                    delay,
                    exc_info=outage_waits == 1,
                )
            else:
                failures += 1
                if failures >= self.retry.max_attempts:
                    log.error(
                        "%s: giving up on %s after %d attempts",
                        self.name,
                        event_type,
                        failures,
                        exc_info=error,
                    )
                    reason = f"failed {failures} times, last error: {describe(error)}"
                    outcome = await self._dead_letter(
                        item.record, "retries_exhausted", reason, event_type=event_type
                    )
                    return outcome is not Outcome.ABANDONED
                delay = self.retry.backoff(failures).total_seconds()
                log.warning(
                    "%s: handling %s failed (attempt %d), retrying in %.1fs",
                    self.name,
                    event_type,
                    failures,
                    delay,
                    exc_info=error,
                )
            if await self._interrupted(delay):
                return False
            retried = await self._transaction([item])
            if retried is None:
                return True
            failure = retried

    def _permanent(self, error: Exception) -> bool:
        return isinstance(error, (PermanentEventError, *self.permanent_errors)) or is_bad_data(
            error
        )

    async def _transaction(self, run: Sequence[_Item]) -> _Failure | None:
        """Claim the event ids of ``run`` and apply the new events, in order, in one
        transaction; None once it committed, else why it rolled back."""
        started = time.perf_counter()
        at: int | None = None
        result: Any = None
        try:
            with tracing.consuming(
                [item.envelope for item in run],
                consumer=self.name,
                topic_of={str(item.envelope.id): item.record.topic for item in run},
            ):
                async with self.transactions.begin() as session:
                    fresh = await self.transactions.claim(
                        session,
                        consumer=self.name,
                        events={item.envelope.id: item.envelope.type for item in run},
                    )
                    new = _first_claims(run, fresh)
                    if self._batch is not None:
                        items = [(run[i].envelope, run[i].event) for i in new]
                        if items:
                            result = await self._batch.apply(session, items)
                    else:
                        for group in self._groups(run, new):
                            at = group[0] if len(group) == 1 else None
                            many = self._many.get(type(run[group[0]].event))
                            if many is None:
                                await self._handle_one(session, run[group[0]])
                                continue
                            blamed: BatchItemError | None = None
                            try:
                                await many(
                                    session, [(run[i].envelope, run[i].event) for i in group]
                                )
                            except BatchItemError as exc:
                                blamed = exc
                            if blamed is not None:  # raised as it is: its causes tell an outage
                                if 0 <= blamed.index < len(group):
                                    at = group[blamed.index]
                                raise blamed.error
                        at = None
        except Exception as exc:
            return _Failure(exc, at)
        share = (time.perf_counter() - started) / len(run)
        applied = set(new)
        for index, item in enumerate(run):
            outcome = Outcome.PROCESSED if index in applied else Outcome.DUPLICATE
            self._count(item.envelope.type, outcome)
            if self._durations is not None:
                self._durations.labels(self.name).observe(share)
        if self._batch is not None and new:
            self._batch.applied(result)
        return None

    def _groups(self, run: Sequence[_Item], new: Sequence[int]) -> Iterator[list[int]]:
        """``new`` (indexes in ``run``) cut into what one call applies: a run of consecutive
        events of one batch handler, or a single event of a one-event handler."""
        group: list[int] = []
        current: ManyHandler | None = None
        for index in new:
            many = self._many.get(type(run[index].event))
            if group and (many is None or many is not current):
                yield group
                group = []
            group.append(index)
            current = many
        if group:
            yield group

    async def _handle_one(self, session: S, item: _Item) -> None:
        handler = self._handlers[type(item.event)]
        context = EventContext(session=session, envelope=item.envelope, record=item.record)
        with caused_by(item.envelope), tracing.handling(item.envelope):
            await handler(item.event, context)

    async def _dead_letter(
        self, record: IncomingRecord, kind: str, reason: str, *, event_type: str
    ) -> Outcome:
        value, headers = bounded_dead_letter(record)
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
                    key=record.key[:MAX_DEAD_LETTER_KEY_BYTES] if record.key else record.key,
                    value=value,
                    headers=headers,
                )
                break
            except Exception:
                attempt += 1
                if self._dead_letter_failures is not None:
                    self._dead_letter_failures.labels(self.name).inc()
                log.warning(
                    "%s: dead-letter topic unavailable, retrying", self.name, exc_info=attempt == 1
                )
                if await self._interrupted(self.retry.backoff(min(attempt, 30)).total_seconds()):
                    return Outcome.ABANDONED
        self._count(event_type, Outcome.DEAD_LETTERED)
        return Outcome.DEAD_LETTERED

    async def _interrupted(self, delay: float) -> bool:
        """Wait ``delay`` seconds; True if in-flight work is to be given up (now or then)."""
        return await sleep_unless(self._give_up, delay)

    def _expose_dead_letters(self, event_type: str) -> None:
        """Export the dead-letter count of ``event_type`` at 0 before the first one, so that
        ``increase()`` over it also sees the first dead letter."""
        if self._outcomes is not None:
            self._outcomes.labels(self.name, event_type, Outcome.DEAD_LETTERED.value)

    def _count(self, event_type: str, outcome: Outcome) -> None:
        if self._outcomes is not None:
            self._outcomes.labels(self.name, event_type, outcome.value).inc()


MAX_DEAD_LETTER_KEY_BYTES = 1024
MAX_DEAD_LETTER_HEADER_CHARACTERS = 1024
MAX_DEAD_LETTER_HEADERS = 32
"""The original headers a dead letter keeps (each cut to 1 KiB), beside its ``dlq_`` ones."""


def bounded_dead_letter(record: IncomingRecord) -> tuple[bytes | None, dict[str, str]]:
    """The value and headers a dead letter of ``record`` carries: the original value, cut
    to :data:`MAX_DEAD_LETTER_VALUE_BYTES` (``dlq_value_truncated`` then holds its length),
    and the original headers, bounded in number and length."""
    headers: dict[str, str] = {}
    for key, raw in record.headers[:MAX_DEAD_LETTER_HEADERS]:
        text = raw.decode(errors="replace") if raw is not None else ""
        headers[key[:255]] = text[:MAX_DEAD_LETTER_HEADER_CHARACTERS]
    value = record.value
    if value is not None and len(value) > MAX_DEAD_LETTER_VALUE_BYTES:
        headers["dlq_value_truncated"] = str(len(value))
        value = value[:MAX_DEAD_LETTER_VALUE_BYTES]
    return value, headers


def _defined(type_name: str) -> bool:
    """True if the platform's event catalogue defines ``type_name``."""
    try:
        EventCatalogue.get(type_name)
    except UnknownEventType:
        return False
    return True


def _first_claims(run: Sequence[_Item], fresh: set[Any]) -> list[int]:
    """Indexes in ``run`` of the events to apply: claimed now, and the first of their id."""
    taken: set[Any] = set()
    new: list[int] = []
    for index, item in enumerate(run):
        if item.envelope.id in fresh and item.envelope.id not in taken:
            taken.add(item.envelope.id)
            new.append(index)
    return new


@contextlib.contextmanager
def caused_by(envelope: Envelope) -> Iterator[None]:
    """Events written while handling ``envelope`` carry its correlation id and name it as
    their cause (see :meth:`platform_runtime.outbox.Outbox.add`)."""
    correlation, causation = reply_ids(envelope)
    correlation_token = correlation_id_var.set(correlation)
    causation_token = causation_id_var.set(causation)
    trace_token = tracing.inherited.set(envelope.traceparent)
    try:
        yield
    finally:
        tracing.inherited.reset(trace_token)
        causation_id_var.reset(causation_token)
        correlation_id_var.reset(correlation_token)


async def _not_called(event: Event, ctx: EventContext[Any]) -> None:  # pragma: no cover
    raise AssertionError("batch consumers apply batches, not single events")
