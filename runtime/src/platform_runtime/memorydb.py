"""A service's database held in the process: the other side of
:mod:`platform_runtime.transactions`, for the fast tests of a service's use cases.

A :class:`MemoryDatabase` keeps a service's state (any object a service's store twin knows
how to read and change), its inbox and its outbox, and changes them only in transactions:

* transactions take turns (one at a time): each sees what the previous one committed, as a
  serialisable database would show it; nothing else runs between its reads and writes;
* a transaction works on a copy of the state: the copy replaces the state when the block
  ends, and is dropped when it raises (a rollback), inbox claims and outbox events included;
* events written to the outbox (:class:`~platform_runtime.outbox.Outbox` on a
  :class:`MemoryTransaction`) are published once their transaction committed, in the order
  they were written, as the relay publishes the outbox; one the broker refuses stays pending
  (:attr:`MemoryDatabase.pending`) and goes out after the next commit, behind nothing newer.

What it does not model: concurrency between transactions (the real database's locks and
constraints are tested against PostgreSQL), connection loss, and parking a record the broker
refuses for good.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from uuid import UUID

from booking_contracts.money import utc_now
from platform_runtime.errors import KernelError, describe
from platform_runtime.outbox import OutboundRecord
from platform_runtime.transport import RecordPublisher

log = logging.getLogger(__name__)

T = TypeVar("T")


class ConstraintViolation(KernelError):
    """What a service's database would refuse, raised by its store twin; the message names
    the rule, as PostgreSQL's does."""


class UniqueViolation(ConstraintViolation):
    """A row a unique index would refuse."""


@dataclass
class MemoryTransaction(Generic[T]):
    """One transaction of a :class:`MemoryDatabase`: a copy of its state to change."""

    state: T
    inbox: set[tuple[str, UUID]]
    outbox: list[OutboundRecord] = field(default_factory=list)
    on_commit: list[Callable[[], None]] = field(default_factory=list)
    """Called once the transaction committed, in order (never when it rolls back)."""


class TwinStore(Generic[T]):
    """The base of a service's store twin: its methods work on ``tx``'s copy of the state."""

    def __init__(self, tx: MemoryTransaction[T]) -> None:
        self._tx = tx
        self.state = tx.state
        self.now = utc_now()
        """The transaction's time (PostgreSQL's ``now()``)."""

    @property
    def tx(self) -> MemoryTransaction[T]:
        return self._tx

    def after_commit(self, callback: Callable[[], None]) -> None:
        self._tx.on_commit.append(callback)


@dataclass
class MemoryDatabase(Generic[T]):
    """A service's state, inbox and outbox, changed by transactions (see the module)."""

    state: T
    publisher: RecordPublisher | None = None
    """Where committed outbox events go (none: they stay in :attr:`pending`)."""
    inbox: set[tuple[str, UUID]] = field(default_factory=set)
    """``(consumer, event id)`` of every event claimed."""
    pending: list[OutboundRecord] = field(default_factory=list)
    """Committed outbox events not published yet."""
    commits: int = 0
    _turn: asyncio.Lock = field(default_factory=asyncio.Lock)

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[MemoryTransaction[T]]:
        async with self._turn:
            tx = MemoryTransaction(copy.deepcopy(self.state), set(self.inbox))
            yield tx
            self.state, self.inbox = tx.state, tx.inbox
            self.pending.extend(tx.outbox)
            self.commits += 1
        for callback in tx.on_commit:
            callback()
        await self.relay()

    async def claim(
        self, tx: MemoryTransaction[T], *, consumer: str, events: Mapping[UUID, str]
    ) -> set[UUID]:
        fresh = {event_id for event_id in events if (consumer, event_id) not in tx.inbox}
        tx.inbox.update((consumer, event_id) for event_id in fresh)
        return fresh

    async def read(self) -> T:
        """A copy of the committed state (for a test to look at)."""
        async with self._turn:
            return copy.deepcopy(self.state)

    async def relay(self) -> None:
        """Publish the pending events in order; those the broker refuses wait for the next
        call."""
        if self.publisher is None or not self.pending:
            return
        batch, self.pending = self.pending, []
        try:
            await self.publisher.send_batch(batch)
        except Exception as exc:
            log.warning("%d outbox events wait: %s", len(batch), describe(exc))
            self.pending[:0] = batch
