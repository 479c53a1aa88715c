"""Idempotent consumers: an event's effect and the record that it happened commit together.

Before applying an event, a consumer claims its id in the ``inbox`` table inside the same
transaction as the effect. A redelivered event finds its id already there and is skipped; a
transaction that rolls back releases the claim with the effect, so the event is applied on a
later delivery. Two replicas racing on the same event serialise on the primary key: the
second waits for the first to commit and then sees the conflict.
"""

from __future__ import annotations

from collections.abc import Mapping
from uuid import UUID

from sqlalchemy import Column, DateTime, MetaData, String, Table, Uuid, func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession


def inbox_table(metadata: MetaData, name: str = "inbox") -> Table:
    """The inbox table, declared on a service's own ``MetaData``."""
    return Table(
        name,
        metadata,
        Column("consumer", String(255), primary_key=True),
        Column("event_id", Uuid, primary_key=True),
        Column("event_type", String(255), nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
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
    statement = (
        insert(table)
        .values([{"consumer": consumer, "event_id": i, "event_type": events[i]} for i in ids])
        .on_conflict_do_nothing(index_elements=[table.c.consumer, table.c.event_id])
        .returning(table.c.event_id)
    )
    return set((await session.scalars(statement)).all())
