"""Request coalescing: the concurrent creates of one API process share a transaction.

Under load, many ``POST /bookings`` wait at once in each API worker process. Each would cost
a transaction of its own (begin, take the place, insert the booking, insert its event,
commit). :class:`CreateCoalescer` queues them instead and writes whatever is waiting, up to
``max_batch``, with :func:`handlers.create_many`: one transaction, one statement per step,
one commit. While a batch is being written the next requests queue up, so batches grow with
the load and a lone request is written at once, as before, with no waiting.

Each request still succeeds or fails on its own: the batch reports an outcome per request,
refusals included where its locks make the reason certain (a full slot, a user at the cap
on unpaid holds: after a sell-out, a refusal costs no transaction of its own), and a request
it cannot settle (a slot it cannot explain, what the cap left its user used by the batch, its
key used twice in the batch, an admin's) is made alone by ``handlers.create_idempotently``,
in the request's own task, exactly as without coalescing. If the batch's transaction fails
as a whole (e.g. a deadlock with another writer), nothing of it was committed and every
request of it is made alone. Nothing is acknowledged to a client before its booking
committed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from booking import handlers
from platform_runtime import tracing
from platform_runtime.outbox import Outbox
from platform_runtime.transactions import Stores

log = logging.getLogger(__name__)


@dataclass
class _Waiting:
    caller: handlers.Caller
    request: handlers.NewBooking
    now: datetime
    outcome: asyncio.Future[handlers.Outcome]
    traceparent: str | None = None
    """The request's trace context (the batch is written in another task)."""


@dataclass
class CreateCoalescer:
    """Writes the concurrent ``create`` requests of one process a batch at a time."""

    stores: Stores[Any, handlers.Store]
    outbox: Outbox
    rules: handlers.Rules
    max_batch: int = 64
    batches: int = 0
    """Batches of two or more requests written (for tests and metrics)."""
    _queue: list[_Waiting] = field(default_factory=list)
    _writer: asyncio.Task[None] | None = None

    async def create(
        self, caller: handlers.Caller, request: handlers.NewBooking, *, now: datetime
    ) -> handlers.Created:
        if self.max_batch > 1:
            waiting = _Waiting(
                caller,
                request,
                now,
                asyncio.get_running_loop().create_future(),
                tracing.current_traceparent(),
            )
            self._queue.append(waiting)
            if self._writer is None:
                self._writer = asyncio.create_task(self._write_while_waiting())
            outcome = await asyncio.shield(waiting.outcome)
            if isinstance(outcome, handlers.Created):
                return outcome
            if outcome is not None:
                raise outcome
        return await handlers.create_idempotently(
            self.stores, self.outbox, caller, request, now=now, rules=self.rules
        )

    async def _write_while_waiting(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                outcomes: list[handlers.Outcome] = [None] * len(batch)
                try:
                    outcomes = await self._write(batch)
                finally:  # even when cancelled (shutdown): nobody is left waiting
                    for waiting, outcome in zip(batch, outcomes, strict=True):
                        waiting.outcome.set_result(outcome)
        finally:
            self._writer = None

    async def _write(self, batch: list[_Waiting]) -> list[handlers.Outcome]:
        if len(batch) == 1:
            return [None]  # alone: no batch to share
        requests = [(w.caller, w.request) for w in batch]
        try:
            async with self.stores.begin() as store:
                outcomes = await handlers.create_many(
                    store,
                    self.outbox,
                    requests,
                    now=max(w.now for w in batch),
                    rules=self.rules,
                    traceparents=[w.traceparent for w in batch],
                )
        except Exception:
            log.warning(
                "a batch of %d bookings failed; each is made alone", len(batch), exc_info=True
            )
            return [None] * len(batch)
        self.batches += 1
        return outcomes
