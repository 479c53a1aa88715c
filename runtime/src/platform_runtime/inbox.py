"""Idempotent consumers: an event's effect and the record that it happened commit together.

Before applying an event, a consumer claims its id in the ``inbox`` table inside the same
transaction as the effect. A redelivered event finds its id already there and is skipped; a
transaction that rolls back releases the claim with the effect, so the event is applied on a
later delivery. Two replicas racing on the same event serialise on the primary key: the
second waits for the first to commit and then sees the conflict.

A claim only matters while its event can still come again, so claims older than a retention
are purged (:class:`InboxPurger`). An event comes again only from its topic: a redelivery
(offsets not committed, a group set back to older offsets or to the earliest after its
committed offsets expired) or a replay of its dead letter (:mod:`platform_runtime.deadletters`),
which publishes it to the topic anew. Kafka keeps a record for its topic's ``retention.ms`` and
deletes it with its log segment, which is closed after ``segment.ms`` at the latest; the
platform sets neither (not in ``deploy/``, not on the topics it creates), so the broker's
defaults hold, 7 days each: a record is gone 14 days after it was written. A dead letter
lives as long on its dead-letter topic and is written before its original is gone, so a
replay repeats an event at most 28 days after it was first published. The retention,
``<PREFIX>INBOX_RETENTION_DAYS`` (30 days), is longer: an event whose claim was purged cannot
come again. Whoever raises a topic's ``retention.ms`` or ``segment.ms`` raises it too.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from sqlalchemy import (
    ARRAY,
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    Uuid,
    bindparam,
    delete,
    func,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from platform_runtime.timing import sleep_unless

if TYPE_CHECKING:
    from prometheus_client import Counter

log = logging.getLogger(__name__)


def inbox_table(metadata: MetaData, name: str = "inbox") -> Table:
    """The inbox table, declared on a service's own ``MetaData`` (``processed_at`` is
    indexed for the purge)."""
    return Table(
        name,
        metadata,
        Column("consumer", String(255), primary_key=True),
        Column("event_id", Uuid, primary_key=True),
        Column("event_type", String(255), nullable=False),
        Column(
            "processed_at",
            DateTime(timezone=True),
            nullable=False,
            server_default=func.now(),
            index=True,
        ),
    )


async def claim(
    session: AsyncSession, table: Table, *, consumer: str, event_id: UUID, event_type: str
) -> bool:
    """Record that ``consumer`` handles ``event_id`` now; False if it already did."""
    statement = (
        insert(table)
        .values(consumer=consumer, event_id=event_id, event_type=event_type)
        .on_conflict_do_nothing(index_elements=[table.c.consumer, table.c.event_id])
        .returning(table.c.event_id)
    )
    return (await session.execute(statement)).first() is not None


async def claim_many(
    session: AsyncSession, table: Table, *, consumer: str, events: Mapping[UUID, str]
) -> set[UUID]:
    """:func:`claim` for many events (id -> type) in one statement: the ids not seen before."""
    if not events:
        return set()
    ids = sorted(events)
    parameters = {"consumer": consumer, "ids": ids, "types": [events[i] for i in ids]}
    return set((await session.scalars(_claims(table), parameters)).all())


@functools.cache
def _claims(table: Table) -> Any:
    # One statement for any number of claims (the rows come as two arrays), compiled once:
    # a multi-row VALUES list is a new statement for every number of rows, compiled anew.
    given = (
        func.unnest(
            bindparam("ids", type_=ARRAY(table.c.event_id.type)),
            bindparam("types", type_=ARRAY(table.c.event_type.type)),
        )
        .table_valued("event_id", "event_type")
        .render_derived(name="claimed")
    )
    rows = select(
        bindparam("consumer", type_=table.c.consumer.type), given.c.event_id, given.c.event_type
    )
    return (
        insert(table)
        .from_select(["consumer", "event_id", "event_type"], rows)
        .on_conflict_do_nothing(index_elements=[table.c.consumer, table.c.event_id])
        .returning(table.c.event_id)
    )


async def purge(session: AsyncSession, table: Table, *, older_than: timedelta, limit: int) -> int:
    """Delete at most ``limit`` claims made longer than ``older_than`` ago (by the database's
    clock, which set ``processed_at``); returns how many. Rows another transaction has locked
    are left for a later round."""
    doomed = (
        select(table.c.consumer, table.c.event_id)
        .where(table.c.processed_at < func.now() - older_than)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    result = await session.execute(
        delete(table).where(tuple_(table.c.consumer, table.c.event_id).in_(doomed))
    )
    return int(cast("CursorResult[Any]", result).rowcount or 0)


@dataclass
class InboxPurger:
    """Deletes the claims of ``tables`` older than ``retention`` (why that is safe: see the
    module's docstring), at start and then every ``interval_s`` seconds, each time until
    none is left, ``batch_size`` rows per transaction so that no lock is held for long.
    Replicas share the work (rows another one holds are skipped). Counts what it deleted in
    ``purged{table}``."""

    session_factory: async_sessionmaker[AsyncSession]
    tables: Sequence[Table]
    retention: timedelta
    batch_size: int = 1000
    interval_s: float = 600.0
    purged: Counter | None = None

    def __post_init__(self) -> None:
        if self.purged is not None:
            for table in self.tables:
                self.purged.labels(table=table.name)  # exported at 0 before the first row

    async def purge_once(self, stop: asyncio.Event | None = None) -> int:
        """Delete every claim older than the retention, a batch at a time, until none is
        left or ``stop`` is set; returns how many rows it deleted."""
        total = 0
        for table in self.tables:
            while stop is None or not stop.is_set():
                async with self.session_factory() as session, session.begin():
                    deleted = await purge(
                        session, table, older_than=self.retention, limit=self.batch_size
                    )
                if deleted and self.purged is not None:
                    self.purged.labels(table=table.name).inc(deleted)
                total += deleted
                if deleted < self.batch_size:
                    break
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Purge now and every ``interval_s`` seconds until ``stop``; a round that fails (the
        database is unreachable) is logged and tried again at the next one."""
        failures = 0
        while not stop.is_set():
            try:
                deleted = await self.purge_once(stop)
            except Exception:
                failures += 1
                log.warning(
                    "inbox purge failed (failure %d in a row); trying again in %gs",
                    failures,
                    self.interval_s,
                    exc_info=failures == 1,
                )
            else:
                failures = 0
                if deleted:
                    log.info("purged %d inbox rows older than %s", deleted, _days(self.retention))
            await sleep_unless(stop, self.interval_s)


def _days(period: timedelta) -> str:
    return f"{period.total_seconds() / 86400:g} days"
