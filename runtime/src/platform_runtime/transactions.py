"""Where a consumer applies its events: a transaction, and the inbox claims made in it.

:class:`~platform_runtime.messaging.EventConsumer` opens one transaction per batch, claims
the batch's event ids in it and gives the transaction to the handlers of the new events
(``EventContext.session``). Two kinds exist:

* :class:`SqlTransactions`: a session on the service's PostgreSQL database and its inbox
  table (every service in production);
* :class:`platform_runtime.memorydb.MemoryDatabase`: a service's state held in the process,
  for the fast tests of its use cases (no PostgreSQL).

A service's use cases take its *store* (what they read and change, in one transaction);
:class:`Stores` opens a transaction and gives its store, for the loops and requests that
run use cases outside a consumer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol
from uuid import UUID

from sqlalchemy import Table, event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typing_extensions import TypeVar

from platform_runtime import inbox

if TYPE_CHECKING:
    from platform_runtime.outbox import MemoryOutbox

S = TypeVar("S", default=AsyncSession)
"""What a transaction is to the handlers: a session, by default."""
Tx = TypeVar("Tx")
Store = TypeVar("Store", covariant=True)


class Transactions(Protocol[S]):
    def begin(self) -> AbstractAsyncContextManager[S]:
        """A transaction: committed when the block ends, rolled back when it raises."""
        ...

    async def claim(self, tx: S, *, consumer: str, events: Mapping[UUID, str]) -> set[UUID]:
        """Record in ``tx`` that ``consumer`` handles ``events`` (id -> type); the ids it
        did not handle before."""
        ...


@dataclass(frozen=True)
class SqlTransactions:
    """Sessions on a service's database, claiming in its inbox table."""

    sessions: async_sessionmaker[AsyncSession]
    inbox_table: Table

    def begin(self) -> AbstractAsyncContextManager[AsyncSession]:
        return self.sessions.begin()

    async def claim(
        self, tx: AsyncSession, *, consumer: str, events: Mapping[UUID, str]
    ) -> set[UUID]:
        return await inbox.claim_many(tx, self.inbox_table, consumer=consumer, events=events)


@dataclass(frozen=True)
class Stores(Generic[Tx, Store]):
    """A service's transactions, each seen through the service's store: what its use cases
    take (the SQL store on a session, or its twin on a memory database's transaction)."""

    transactions: Transactions[Tx]
    store: Callable[[Tx], Store]

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[Store]:
        """A transaction's store: committed when the block ends, rolled back when it raises."""
        async with self.transactions.begin() as tx:
            yield self.store(tx)


class TransactionalStore(Protocol):
    """What every service's store has beside its own methods (a service's ``Store`` protocol
    extends this): the transaction it works in, for the outbox to write events into."""

    @property
    def tx(self) -> AsyncSession | MemoryOutbox: ...

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the transaction committed (never when it rolls back)."""
        ...


class SessionStore:
    """The base of a service's SQL store: its methods run in ``session``'s transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @property
    def tx(self) -> AsyncSession:
        return self.session

    def after_commit(self, callback: Callable[[], None]) -> None:
        event.listen(self.session.sync_session, "after_commit", lambda _: callback(), once=True)
