"""The dispatcher: due reminders become jobs on ``reminders.jobs``, through the outbox.

Each round locks a batch of due reminders (``FOR UPDATE SKIP LOCKED``: any number of
dispatchers share the work, none hands out a reminder twice), marks them ``queued`` with the
id of the job that now carries each, and writes the jobs to the outbox, all in one
transaction. A full batch is followed by the next at once, so after downtime everything that
fell due meanwhile goes out as fast as the workers take it; otherwise the dispatcher pauses.

Reminders are handed out ``ahead`` of their time (setting ``dispatch_ahead_s``): the workers
lease them and hold them until the due instant, so when a burst falls due the jobs are
already through the outbox, Kafka and the lease, and only the sending is left.

A queued reminder whose job no worker took, or whose worker died while sending, comes back
when its lease runs out. A reminder whose booking has already started is not sent at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from booking_contracts.catalogue import ReminderDue
from platform_runtime.outbox import Outbox
from platform_runtime.timing import sleep_unless
from platform_runtime.transactions import Stores
from reminders.handlers import Store

if TYPE_CHECKING:
    from prometheus_client import Counter

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Round:
    queued: int
    stale: int

    @property
    def picked(self) -> int:
        return self.queued + self.stale


async def dispatch(
    store: Store,
    outbox: Outbox,
    *,
    now: datetime,
    limit: int,
    job_timeout: timedelta,
    ahead: timedelta = timedelta(0),
) -> Round:
    """One batch, in the caller's transaction."""
    due = await store.take_due(now=now, limit=limit, ahead=ahead)
    stale = [d.id for d in due if d.starts_at <= now]
    live = [d for d in due if d.starts_at > now]
    if stale:
        await store.cancel_stale(stale)
    if live:
        envelopes = await outbox.add(
            store.tx,
            *(
                ReminderDue(
                    reminder_id=d.id,
                    booking_id=d.booking_id,
                    channel=d.channel,
                    scheduled_for=d.scheduled_for,
                )
                for d in live
            ),
        )
        await store.mark_queued(
            {d.id: envelope.id for d, envelope in zip(live, envelopes, strict=True)},
            lease_expires_at=now + job_timeout,
        )
    return Round(queued=len(live), stale=len(stale))


@dataclass
class Dispatcher:
    stores: Stores[Any, Store]
    outbox: Outbox
    clock: Callable[[], datetime]
    batch_size: int
    interval_s: float
    job_timeout: timedelta
    dispatched: Counter
    ahead: timedelta = timedelta(0)

    async def run_once(self) -> Round:
        async with self.stores.begin() as store:
            result = await dispatch(
                store,
                self.outbox,
                now=self.clock(),
                limit=self.batch_size,
                job_timeout=self.job_timeout,
                ahead=self.ahead,
            )
        if result.queued:
            self.dispatched.labels("queued").inc(result.queued)
        if result.stale:
            self.dispatched.labels("too_late").inc(result.stale)
            log.warning("%d reminders came due after their booking started: not sent", result.stale)
        return result

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            result = await self.run_once()
            if result.picked < self.batch_size:
                await sleep_unless(stop, self.interval_s)
