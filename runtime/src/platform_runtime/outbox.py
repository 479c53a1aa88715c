"""Transactional outbox: events leave a service only if its state change committed.

A service writes its events into its own ``outbox`` table in the same transaction as the
state change (:class:`Outbox`). A relay (:class:`OutboxRelay`) later publishes pending rows
to Kafka with an idempotent producer (``acks=all``), keyed by aggregate id, and marks them
published only after the broker acknowledged them. A crash between publishing and marking
publishes the same envelope (same event id) again; consumers drop such repeats through
their inbox, so the effect happens once.

Several relay replicas may run at once: each batch is taken under a transaction-level
advisory lock, so one relay publishes at a time (the others wait and take over instantly
when it dies) and the order of events per aggregate is the order they were written in.
While Kafka is down, rows simply wait; nothing is lost.

A row the broker refuses for good (a record over its size limit) would stop every event of
the service behind it. Such a row is *parked*: its record goes, cut to fit, to the dead-letter
topic of its topic with the reason (``dlq_kind=unpublishable``), the row is marked published
with ``last_error`` saying it was parked, the relay counts it (``outbox_parked_total``), and
the rows behind it flow on.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import zlib
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

import asyncpg
from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    cast,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from booking_contracts.envelope import Envelope, Event
from booking_contracts.money import utc_now
from booking_contracts.topics import MAX_DEAD_LETTER_VALUE_BYTES, dead_letter_topic
from platform_runtime import tracing
from platform_runtime.observability import correlation_id as correlation_id_var
from platform_runtime.timing import sleep_unless

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "outbox"
"""``LISTEN`` channel on which other processes (API workers, operator commands) wake the relay.

Write transactions never ``NOTIFY`` themselves: a ``NOTIFY`` takes a cluster-wide lock at
commit, which would serialise every writing transaction. A process whose relay runs in it
wakes the relay in memory; a process without one sends at most one ``NOTIFY`` per short
interval for all the transactions that committed meanwhile (:class:`OutboxNotifier`)."""

causation_id_var: ContextVar[str | None] = ContextVar("causation_id", default=None)
"""Id of the event being handled, if any: events written meanwhile name it as their cause."""


def outbox_table(metadata: MetaData, name: str = "outbox") -> Table:
    """The outbox table, declared on a service's own ``MetaData``."""
    return Table(
        name,
        metadata,
        Column("id", BigInteger, Identity(always=True), primary_key=True),
        Column("event_id", Uuid, nullable=False, unique=True),
        Column("topic", String(255), nullable=False),
        Column("key", String(255), nullable=False),
        Column("event_type", String(255), nullable=False),
        Column("payload", JSONB, nullable=False),
        Column("headers", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True), nullable=True),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Column("last_error", Text, nullable=True),
        Index(f"ix_{name}_pending", "id", postgresql_where=text("published_at IS NULL")),
    )


class MemoryOutbox(Protocol):
    """The outbox of a transaction of a database held in the process
    (:class:`platform_runtime.memorydb.MemoryTransaction`): published once it commits."""

    outbox: list[OutboundRecord]


class Outbox:
    """Writes events into the outbox within the caller's transaction (a session, or a
    transaction of a :class:`~platform_runtime.memorydb.MemoryDatabase`).

    ``on_commit`` is called once a transaction that wrote outbox rows has committed (never
    on rollback): it wakes the relay (in this process, or through :class:`OutboxNotifier`).
    """

    def __init__(
        self, table: Table, *, source: str, on_commit: Callable[[], None] | None = None
    ) -> None:
        self.table = table
        self.source = source
        self.on_commit = on_commit

    async def add(
        self,
        session: AsyncSession | MemoryOutbox,
        *events: Event,
        traceparents: Sequence[str | None] | None = None,
    ) -> list[Envelope]:
        """Record ``events`` to be published once the caller's transaction commits.

        Each carries the trace context of the current span (:mod:`platform_runtime.tracing`), or of
        the event being handled, unless ``traceparents`` gives one per event (events written for
        several requests at once)."""
        causation = causation_id_var.get()
        correlation = correlation_id_var.get()
        current = tracing.current_traceparent()
        envelopes = [
            Envelope.wrap(
                e,
                source=self.source,
                correlation_id=correlation,
                causation_id=causation,
                traceparent=traceparents[i] if traceparents is not None else current,
            )
            for i, e in enumerate(events)
        ]
        return await self._write(session, events, envelopes)

    async def add_replies(
        self, session: AsyncSession | MemoryOutbox, replies: Sequence[tuple[Envelope, Event]]
    ) -> list[Envelope]:
        """Record events written on behalf of others, in one statement: each ``(cause,
        event)`` gets the correlation id of the envelope ``cause`` and names it as its cause,
        as :meth:`add` does for the event being handled (for batch handlers)."""
        events = [reply for _, reply in replies]
        envelopes = []
        for cause, reply in replies:
            correlation, causation = reply_ids(cause)
            envelopes.append(
                Envelope.wrap(
                    reply,
                    source=self.source,
                    correlation_id=correlation,
                    causation_id=causation,
                    traceparent=tracing.reply_traceparent(cause),
                )
            )
        return await self._write(session, events, envelopes)

    async def _write(
        self,
        session: AsyncSession | MemoryOutbox,
        events: Sequence[Event],
        envelopes: list[Envelope],
    ) -> list[Envelope]:
        if not events:
            return []
        if not isinstance(session, AsyncSession):  # a memory database's transaction
            session.outbox.extend(
                OutboundRecord(
                    topic=event.topic,
                    key=event.aggregate_id(),
                    value=envelope.to_json_bytes(),
                    headers=envelope.headers(),
                )
                for event, envelope in zip(events, envelopes, strict=True)
            )
            return envelopes
        rows = [
            {
                "event_id": envelope.id,
                "topic": event.topic,
                "key": event.aggregate_id(),
                "event_type": envelope.type,
                "payload": envelope.as_json(),
                "headers": envelope.headers(),
            }
            for event, envelope in zip(events, envelopes, strict=True)
        ]
        await session.execute(insert(self.table), rows)
        await self.notify(session)
        return envelopes

    async def notify(self, session: AsyncSession) -> None:
        """Wake the relay when the caller's transaction commits (nothing on rollback).

        ``add`` does this itself; call it after writing outbox rows by other means. It costs
        no round trip: the wake-up is a hook on the session's commit.
        """
        if self.on_commit is not None:
            session.sync_session.info[_WAKE_ON_COMMIT] = self.on_commit

    def template(self, event_type: type[Event], *, subject: str) -> EnvelopeTemplate:
        """The envelope and headers of events of ``event_type`` about ``subject``, without
        their ``id`` and ``data``: for statements that write many events in SQL.

        The caller adds ``id`` (also as the ``ce_id`` header and the ``event_id`` column) and
        ``data`` per event, in the caller's transaction, and then calls :meth:`notify`.
        """
        envelope = Envelope(
            source=self.source,
            type=event_type.type_name(),
            subject=subject,
            correlationid=correlation_id_var.get(),
            causationid=causation_id_var.get(),
            traceparent=tracing.current_traceparent(),
            data={},
        )
        payload = {k: v for k, v in envelope.as_json().items() if k not in ("id", "data")}
        headers = {k: v for k, v in envelope.headers().items() if k != "ce_id"}
        return EnvelopeTemplate(
            topic=event_type.topic, event_type=envelope.type, payload=payload, headers=headers
        )


def reply_ids(cause: Envelope) -> tuple[str, str]:
    """The correlation and causation ids of an event written while handling ``cause``: the
    conversation's correlation id (``cause``'s own id if it started one) and ``cause``'s id."""
    return cause.correlationid or str(cause.id), str(cause.id)


TRACEPARENT_HEADER = "ce_traceparent"
"""The record header that carries an event's ``traceparent`` (see
:mod:`platform_runtime.tracing`)."""

_WAKE_ON_COMMIT = "platform_runtime.outbox.wake_on_commit"
"""Session ``info`` key: what to call once the session's transaction commits."""


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    wake = session.info.pop(_WAKE_ON_COMMIT, None)
    if wake is not None:
        wake()


@event.listens_for(Session, "after_rollback")
def _forget_on_rollback(session: Session) -> None:
    session.info.pop(_WAKE_ON_COMMIT, None)


@dataclass(frozen=True)
class EnvelopeTemplate:
    """What every outbox row of one kind of event shares (see :meth:`Outbox.template`)."""

    topic: str
    event_type: str
    payload: dict[str, Any]
    headers: dict[str, str]


@dataclass(frozen=True)
class OutboundRecord:
    topic: str
    key: str
    value: bytes
    headers: dict[str, str]


class Publisher(Protocol):
    async def send_batch(self, records: Sequence[OutboundRecord]) -> None:
        """Publish all records and return only once the broker acknowledged every one."""


def _lock_key(table: Table) -> int:
    return zlib.crc32(f"outbox-relay:{table.name}".encode())


@dataclass
class RelayStats:
    published: int = 0
    failures: int = 0
    batches: int = 0
    backlog: int = 0
    oldest_pending_age_s: float = 0.0
    last_error: str | None = None
    published_by_type: dict[str, int] = field(default_factory=dict)
    """Events published since start, by CloudEvents type (e.g. ``BookingConfirmed.v1``)."""
    parked: int = 0
    """Rows the broker refused for good, sent to the dead-letter topic instead."""


UNPUBLISHABLE: tuple[type[BaseException], ...] = (MessageSizeTooLargeError, RecordTooLargeError)
"""Errors that say a record can never be published as it is (not that Kafka is away)."""


@dataclass
class OutboxRelay:
    """Publishes pending outbox rows in order, marking them only after the broker's ack."""

    session_factory: async_sessionmaker[AsyncSession]
    table: Table
    publisher: Publisher
    listen_dsn: str | None = None
    batch_size: int = 500
    poll_interval_s: float = 1.0
    retry_backoff_max_s: float = 5.0
    retention: timedelta = timedelta(days=7)
    coalesce_s: float = 0.003
    """How long a busy relay waits after a wake-up for more rows to join the batch."""
    busy_window_s: float = 0.02
    busy_batches: int = 3
    """A relay that published its last ``busy_batches`` batches within ``busy_window_s``
    counts as busy (rows keep coming): it waits ``coalesce_s`` after a wake-up. A lone
    event, or an event and its quick reply, is published at once."""
    on_stats: Callable[[RelayStats], Awaitable[None] | None] | None = None
    stats: RelayStats = field(default_factory=RelayStats)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    async def publish_pending(self) -> int:
        """Publish one batch; returns how many rows it is done with, published or parked (0:
        none, or not our turn)."""
        t = self.table
        # One round trip: the lock that makes this relay the only one publishing from the
        # table and the oldest pending rows. The lock is an uncorrelated subquery, so
        # PostgreSQL takes it once, before the scan, and reads no row if another relay has it
        # (a one-time filter in the plan).
        got_lock = select(func.pg_try_advisory_xact_lock(_lock_key(t))).scalar_subquery()
        async with self.session_factory() as session, session.begin():
            rows = (
                await session.execute(
                    select(t.c.id, t.c.topic, t.c.key, cast(t.c.payload, Text), t.c.headers)
                    .where(got_lock, t.c.published_at.is_(None))
                    .order_by(t.c.id)
                    .limit(self.batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            # The envelope as stored (validated when it was written), sent as it is.
            records = [
                OutboundRecord(topic=topic, key=key, value=payload.encode(), headers=headers)
                for _, topic, key, payload, headers in rows
            ]
            try:
                with tracing.publishing(
                    len(records), [r.headers.get(TRACEPARENT_HEADER) for r in records]
                ):
                    await self.publisher.send_batch(records)
                parked: dict[int, str] = {}
            except UNPUBLISHABLE:
                parked = await self._one_by_one([row.id for row in rows], records)
            await session.execute(
                update(t)
                .where(t.c.id.in_([r.id for r in rows]))
                .values(published_at=func.now(), attempts=t.c.attempts + 1, last_error=None)
            )
            for row_id, reason in parked.items():
                await session.execute(
                    update(t).where(t.c.id == row_id).values(last_error=f"parked: {reason}"[:2000])
                )
        self.stats.parked += len(parked)
        self.stats.published += len(rows) - len(parked)
        self.stats.batches += 1
        by_type = self.stats.published_by_type
        for record in records:
            event_type = record.headers.get("ce_type", "unknown")
            by_type[event_type] = by_type.get(event_type, 0) + 1
        return len(rows)

    async def _one_by_one(
        self, row_ids: Sequence[int], records: Sequence[OutboundRecord]
    ) -> dict[int, str]:
        """Publish ``records`` one at a time, in order, after their batch was refused for a
        record that can never be published; such records are parked. Returns the parked rows
        and why. Records the batch got out already go again: their event ids make that safe."""
        parked: dict[int, str] = {}
        for row_id, record in zip(row_ids, records, strict=True):
            try:
                await self.publisher.send_batch([record])
            except UNPUBLISHABLE as exc:
                reason = f"{type(exc).__name__}: {exc}"[:2000]
                log.error(
                    "outbox relay: row %d (%s) can never be published (%s); parked in %s",
                    row_id,
                    record.headers.get("ce_type", "?"),
                    reason,
                    dead_letter_topic(record.topic),
                )
                await self.publisher.send_batch([_parked(record, row_id, reason)])
                parked[row_id] = reason
        return parked

    async def record_failure(self, error: BaseException) -> None:
        """Count a failed attempt on the rows that are waiting (visible to operators)."""
        self.stats.failures += 1
        self.stats.last_error = f"{type(error).__name__}: {error}"
        t = self.table
        with contextlib.suppress(Exception):
            async with self.session_factory() as session, session.begin():
                first_pending = (
                    select(t.c.id)
                    .where(t.c.published_at.is_(None))
                    .order_by(t.c.id)
                    .limit(self.batch_size)
                    .scalar_subquery()
                )
                await session.execute(
                    update(t)
                    .where(t.c.id.in_(first_pending))
                    .values(attempts=t.c.attempts + 1, last_error=self.stats.last_error[:2000])
                )

    async def refresh_stats(self) -> RelayStats:
        """Backlog size and age of the oldest pending row (for metrics and alerts)."""
        t = self.table
        async with self.session_factory() as session:
            count, oldest = (
                await session.execute(
                    select(func.count(), func.min(t.c.created_at)).where(t.c.published_at.is_(None))
                )
            ).one()
        self.stats.backlog = int(count)
        self.stats.oldest_pending_age_s = (
            (utc_now() - oldest).total_seconds() if oldest is not None else 0.0
        )
        await self._report()
        return self.stats

    async def _report(self) -> None:
        if self.on_stats is not None:
            result = self.on_stats(self.stats)
            if result is not None:
                await result

    async def purge_published(self) -> int:
        """Delete rows published longer ago than the retention period."""
        t = self.table
        async with self.session_factory() as session, session.begin():
            result = await session.execute(
                delete(t).where(t.c.published_at < utc_now() - self.retention)
            )
        return int(getattr(result, "rowcount", 0) or 0)

    def wake(self) -> None:
        """Ask the relay to look for new rows now (instead of at the next poll)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set; survives Kafka and PostgreSQL outages.

        A wake-up that arrives while a batch is being published is kept (the flag is
        cleared before each look, not after), so no committed row waits for the poll. When
        rows keep arriving (the last ``busy_batches`` batches were published within
        ``busy_window_s``) the relay waits ``coalesce_s`` after a wake-up, so that one
        batch carries the rows of many transactions instead of one each.
        """
        listener = asyncio.create_task(self._listen(stop)) if self.listen_dsn else None
        backoff = 0.1
        idle_rounds = 0
        published_at: collections.deque[float] = collections.deque(maxlen=self.busy_batches)
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    published = await self.publish_pending()
                    backoff = 0.1
                except Exception as exc:  # broker or database unavailable: retry later
                    log.warning("outbox relay: publishing failed, will retry", exc_info=True)
                    await self.record_failure(exc)
                    await sleep_unless(stop, backoff)
                    backoff = min(backoff * 2, self.retry_backoff_max_s)
                    continue
                if published:
                    published_at.append(loop.time())
                    with contextlib.suppress(Exception):
                        await self._report()
                if published == self.batch_size:
                    continue  # more may be waiting
                idle_rounds += 1
                if idle_rounds % 10 == 1:
                    with contextlib.suppress(Exception):
                        await self.refresh_stats()
                if idle_rounds % 3600 == 1:
                    with contextlib.suppress(Exception):
                        await self.purge_published()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_wait_either(self._wake, stop), self.poll_interval_s)
                if (
                    len(published_at) == self.busy_batches
                    and loop.time() - published_at[0] < self.busy_window_s
                ):
                    await sleep_unless(stop, self.coalesce_s)
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await listener

    async def _listen(self, stop: asyncio.Event) -> None:
        """Hold a ``LISTEN outbox`` connection; reconnect when the database goes away."""
        assert self.listen_dsn is not None

        def on_notify(*_: Any) -> None:
            self._wake.set()

        while not stop.is_set():
            try:
                conn = await asyncpg.connect(self.listen_dsn)
            except Exception:
                await sleep_unless(stop, 1.0)
                continue
            try:
                await conn.add_listener(NOTIFY_CHANNEL, on_notify)
                self._wake.set()  # rows may have arrived while we were not listening
                while not stop.is_set() and not conn.is_closed():
                    await sleep_unless(stop, 1.0)
            finally:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)


def _parked(record: OutboundRecord, row_id: int, reason: str) -> OutboundRecord:
    """The dead letter of an outbox row the broker refused: its record, cut to fit."""
    headers = dict(record.headers) | {
        "dlq_kind": "unpublishable",
        "dlq_reason": reason,
        "dlq_source": "outbox",
        "dlq_outbox_row": str(row_id),
        "dlq_original_topic": record.topic,
        "dlq_failed_at": utc_now().isoformat(),
    }
    value = record.value
    if len(value) > MAX_DEAD_LETTER_VALUE_BYTES:
        headers["dlq_value_truncated"] = str(len(value))
        value = value[:MAX_DEAD_LETTER_VALUE_BYTES]
    return OutboundRecord(
        topic=dead_letter_topic(record.topic), key=record.key, value=value, headers=headers
    )


@dataclass
class OutboxNotifier:
    """Wakes the relays of other processes: at most one ``NOTIFY`` per ``interval_s``.

    For processes that write outbox rows but run no relay (API workers): :meth:`signal`
    (the outbox's ``on_commit``) only sets a flag; :meth:`run` sends one ``NOTIFY`` on its
    own connection for every transaction that committed since the last one. A lost
    ``NOTIFY`` (the connection broke) costs at most the relay's poll interval.
    """

    dsn: str
    interval_s: float = 0.002
    sent: int = 0
    _pending: asyncio.Event = field(default_factory=asyncio.Event)

    def signal(self) -> None:
        self._pending.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                conn = await asyncpg.connect(self.dsn)
            except Exception:
                log.warning("outbox notifier: database unreachable", exc_info=True)
                await sleep_unless(stop, 1.0)
                continue
            try:
                while not stop.is_set():
                    await _wait_either(self._pending, stop)
                    if stop.is_set():
                        break
                    self._pending.clear()
                    await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")
                    self.sent += 1
                    await sleep_unless(stop, self.interval_s)
            except Exception:
                log.warning("outbox notifier: NOTIFY failed, reconnecting", exc_info=True)
            finally:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)


async def _wait_either(first: asyncio.Event, second: asyncio.Event) -> None:
    waiters = [asyncio.create_task(first.wait()), asyncio.create_task(second.wait())]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
