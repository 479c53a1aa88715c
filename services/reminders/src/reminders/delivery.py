"""The workers: jobs from ``reminders.jobs`` become emails and text messages, each sent once.

Each worker process

1. takes jobs in batches through the kernel's work-queue consumer (``batch_consumer``; at
   most what its senders have room for): in one transaction the kernel claims their ids in
   the inbox (a redelivered job is skipped) and :meth:`Delivery.take` takes a *lease* on
   each reminder whose current job it still is (a cancelled, moved, sent or re-dispatched
   reminder drops the job); the lease counts the attempt. After the commit the leases go to
   the senders and the batch's offsets are committed;
2. hands the leases to its ``concurrency`` senders, which send each message outside any
   transaction, with the reminder's stable Message-ID. A job handed out ahead of its time
   (``dispatch_ahead_s``) waits in the worker until the due instant (its email is written
   meanwhile, so that the instant costs only the sending), is checked once more
   (one query for all that fall due together: a reminder cancelled or moved meanwhile is
   dropped) and then goes to the senders; a worker that stops gives such leases back;
3. records the outcome (batched with other outcomes, in one transaction with its events):
   ``sent`` + ``ReminderSent``, or back to ``pending`` after a backoff, or ``failed`` +
   ``ReminderFailed`` after the last attempt. Only the holder of the current lease may
   record (``attempts`` fences it), so a worker that lost its lease changes nothing.

A worker that dies between taking a lease and recording the outcome leaves the reminder
``queued``; when the lease runs out the dispatcher hands it out again. If the message had
gone out before the crash, it goes out a second time with the same Message-ID, which is how
a receiver recognises the repeat: the one duplicate this design accepts.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import TYPE_CHECKING, Any

from booking_contracts.catalogue import ReminderDue, ReminderFailed, ReminderSent
from booking_contracts.envelope import Event
from platform_runtime.errors import describe
from platform_runtime.messaging import BatchItem
from platform_runtime.outbox import Outbox
from platform_runtime.timing import RetryPolicy, sleep_unless
from platform_runtime.transactions import Stores
from reminders import domain
from reminders.domain import Channel
from reminders.handlers import Store
from reminders.senders import DeliveryError, SmsConfig, SmsSender, SmtpConfig, SmtpConnection

if TYPE_CHECKING:
    from platform_runtime.http.metrics import Metrics

log = logging.getLogger(__name__)

CONSUMER = "reminders-delivery"
FLUSH_BATCH = 500
DRAIN_S = 5.0
TICK_S = 0.2
"""Longest nap of the timer that releases waiting leases (so a clock step is noticed)."""
RECORD_LINGER_S = 0.2
"""How long the recorder lets outcomes gather before it writes them."""


@dataclass
class Delivery:
    """The sending half of a worker process: a bounded pool of senders and a recorder."""

    stores: Stores[Any, Store]
    outbox: Outbox
    clock: Callable[[], datetime]
    policy: RetryPolicy
    smtp: SmtpConfig
    sms: SmsConfig | None
    mail_from: str
    metrics: Metrics
    offer_link: str = domain.DEFAULT_OFFER_LINK
    """The link template of a waitlist offer's email."""
    lease: timedelta = timedelta(seconds=60)
    concurrency: int = 16
    hold_max: int = 2000
    """Leases this process may hold at most, counting those waiting for their time."""
    _queue: asyncio.Queue[domain.Lease] = field(default_factory=asyncio.Queue)
    _waiting: list[tuple[datetime, int, domain.Lease]] = field(default_factory=list)
    _held: set[domain.Lease] = field(default_factory=set)
    """The leases in ``_waiting``."""
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _to_write: collections.deque[domain.Lease] = field(default_factory=collections.deque)
    _written: dict[domain.Lease, bytes] = field(default_factory=dict)
    """Emails written while their lease waits for its time (see :meth:`_writer`)."""
    _write_wake: asyncio.Event = field(default_factory=asyncio.Event)
    _order: itertools.count[int] = field(default_factory=itertools.count)
    _results: asyncio.Queue[domain.Sent | domain.Failure] = field(default_factory=asyncio.Queue)
    _outstanding: int = 0
    _sms: SmsSender | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._envelope_from = parseaddr(self.mail_from)[1]
        self._outcomes = self.metrics.counter(
            "reminders_delivered_total",
            "Delivery attempts by channel and outcome (sent, retry, failed)",
            ["channel", "outcome"],
        )
        self._dropped = self.metrics.counter(
            "reminders_jobs_dropped_total",
            "Jobs dropped: the reminder was cancelled, moved, sent or handed out again",
            ["reason"],
        )
        self._lateness = self.metrics.histogram(
            "reminders_lateness_seconds",
            "Time from a reminder's scheduled time to its delivery",
            ["channel"],
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600),
        )

    # --- the consumer's side ----------------------------------------------------------

    def room(self) -> int:
        """How many jobs the consumer may take now: the leases ready to send are at most
        twice the senders, so a second batch waits while one is sent and no lease waits long
        (and runs out) in memory; leases waiting for their time count only towards
        ``hold_max``."""
        ready = self._outstanding - len(self._waiting)
        return max(0, min(2 * self.concurrency - ready, self.hold_max - self._outstanding))

    async def take(self, tx: Any, jobs: list[BatchItem]) -> list[domain.Lease]:
        """In the batch's transaction (the kernel claimed the job ids already): lease every
        reminder whose current job this still is; the rest are dropped."""
        wanted = [
            domain.Job(envelope.id, event.reminder_id, event.scheduled_for)
            for envelope, event in jobs
            if isinstance(event, ReminderDue)
        ]
        leases = await self.stores.store(tx).take_leases(wanted, now=self.clock(), lease=self.lease)
        if len(leases) < len(wanted):
            self._dropped.labels("not_current").inc(len(wanted) - len(leases))
        return leases

    def hand_out(self, leases: list[domain.Lease]) -> None:
        """Once the leases are committed: give them to the senders (those not due yet once
        their time comes)."""
        now = self.clock()
        for lease in leases:
            self._outstanding += 1
            if lease.not_before > now:
                heapq.heappush(self._waiting, (lease.not_before, next(self._order), lease))
                self._held.add(lease)
                self._wake.set()
                if lease.reminder.channel is not Channel.SMS:
                    self._to_write.append(lease)
                    self._write_wake.set()
            else:
                self._queue.put_nowait(lease)

    # --- emails written ahead -----------------------------------------------------------

    async def _writer(self) -> None:
        """Write the email of each lease while it waits for its time, one at a time between
        other work: writing one takes about a millisecond of CPU (``EmailMessage``), which
        a burst falling due at one instant would otherwise add to its lateness. A lease that
        is no longer waiting is left to its sender, which writes what it does not find."""
        while True:
            if not self._to_write:
                self._write_wake.clear()
                await self._write_wake.wait()
                continue
            lease = self._to_write.popleft()
            if lease in self._held:
                with contextlib.suppress(Exception):  # its sender tries again, records why
                    self._written[lease] = self._email(lease.reminder)
                await asyncio.sleep(0)

    def _email(self, reminder: domain.Reminder) -> bytes:
        return domain.email_message(
            reminder, sender=self.mail_from, now=self.clock(), link_template=self.offer_link
        )

    # --- leases waiting for their time -------------------------------------------------

    async def _timer(self) -> None:
        while True:
            self._wake.clear()
            if not self._waiting:
                await self._wake.wait()
                continue
            now = self.clock()
            wait_s = (self._waiting[0][0] - now).total_seconds()
            if wait_s > 0:
                await sleep_unless(self._wake, min(wait_s, TICK_S))
                continue
            due: list[domain.Lease] = []
            while self._waiting and self._waiting[0][0] <= now:
                due.append(heapq.heappop(self._waiting)[2])
            self._held.difference_update(due)
            await self._release_due(due)

    async def _release_due(self, due: list[domain.Lease]) -> None:
        """Their time came: to the senders, unless the reminder changed while they waited."""
        try:
            async with self.stores.begin() as reader:
                held = await reader.still_held(due)
        except Exception:  # the recording of the outcome is fenced anyway: send
            log.warning("checking %d waiting leases failed; sending them", len(due), exc_info=True)
            held = {lease.reminder.id for lease in due}
        for lease in due:
            if lease.reminder.id in held:
                self._queue.put_nowait(lease)
            else:
                self._outstanding -= 1
                self._written.pop(lease, None)
                self._dropped.labels("not_current").inc()

    async def _give_back_waiting(self) -> None:
        waiting = [lease for _, _, lease in self._waiting]
        self._waiting.clear()
        self._held.clear()
        self._to_write.clear()
        self._written.clear()
        self._outstanding -= len(waiting)
        if waiting:
            async with self.stores.begin() as writer:
                await writer.release(waiting)

    # --- the senders ------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Send and record until ``stop``; then finish what was taken (for a while)."""
        if self.sms is not None:
            self._sms = SmsSender(self.sms)
        senders = [
            asyncio.create_task(self._sender(SmtpConnection(self.smtp)), name=f"sender-{i}")
            for i in range(self.concurrency)
        ]
        recorder = asyncio.create_task(self._recorder(), name="recorder")
        timer = asyncio.create_task(self._timer(), name="timer")
        writer = asyncio.create_task(self._writer(), name="writer")
        try:
            await stop.wait()
            timer.cancel()
            writer.cancel()
            await asyncio.gather(timer, writer, return_exceptions=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), DRAIN_S)
        finally:
            timer.cancel()
            writer.cancel()
            for task in senders:
                task.cancel()
            await asyncio.gather(timer, writer, *senders, return_exceptions=True)
            recorder.cancel()
            await asyncio.gather(recorder, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._record(self._drain_results())
            try:
                await self._give_back_waiting()
            except Exception:  # they are handed out again when their leases run out
                log.warning("giving back the leases held for later failed", exc_info=True)
            if self._sms is not None:
                await self._sms.close()

    async def _sender(self, connection: SmtpConnection) -> None:
        try:
            while True:
                lease = await self._queue.get()
                try:
                    outcome = await self.deliver(lease, connection)
                    if outcome is not None:
                        self._results.put_nowait(outcome)
                finally:
                    self._queue.task_done()
                    self._outstanding -= 1
        finally:
            await connection.close()

    async def deliver(
        self, lease: domain.Lease, connection: SmtpConnection
    ) -> domain.Sent | domain.Failure | None:
        """Send one message; None when the lease ran out before it could start."""
        reminder = lease.reminder
        timeout = timedelta(seconds=max(self.smtp.timeout_s, self.sms.timeout_s if self.sms else 0))
        written = self._written.pop(lease, None)
        if self.clock() + timeout >= lease.expires_at:
            self._dropped.labels("lease_expired").inc()
            return None
        try:
            if reminder.channel is Channel.SMS:
                await self._send_sms(reminder)
            else:
                await connection.send(
                    self._envelope_from, reminder.contact_email, written or self._email(reminder)
                )
        except Exception as exc:
            error = describe(exc)
            gives_up = self.policy.gives_up(lease.attempt)
            retry_at = None if gives_up else self.clock() + self.policy.backoff(lease.attempt)
            log.warning(
                "sending reminder %s (attempt %d) failed: %s; %s",
                reminder.id,
                lease.attempt,
                error,
                "giving up" if gives_up else f"retrying at {retry_at}",
            )
            return domain.Failure(lease=lease, error=error, retry_at=retry_at)
        return domain.Sent(lease=lease, sent_at=self.clock())

    async def _send_sms(self, reminder: domain.Reminder) -> None:
        if self._sms is None or reminder.contact_phone is None:
            raise DeliveryError("SMS is not configured on this worker")
        await self._sms.send(
            to=reminder.contact_phone,
            text=domain.sms_text(reminder),
            message_id=reminder.message_id,
        )

    # --- the recorder -----------------------------------------------------------------

    def _drain_results(self) -> list[domain.Sent | domain.Failure]:
        batch: list[domain.Sent | domain.Failure] = []
        while not self._results.empty() and len(batch) < FLUSH_BATCH:
            batch.append(self._results.get_nowait())
        return batch

    async def _recorder(self) -> None:
        while True:
            batch = [await self._results.get()]
            await asyncio.sleep(RECORD_LINGER_S)  # let a burst's outcomes gather: fewer commits
            batch += self._drain_results()
            delay = 0.1
            while True:
                try:
                    await self._record(batch)
                    break
                except Exception:
                    log.warning("recording %d outcomes failed; retrying", len(batch), exc_info=True)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)

    async def _record(self, batch: list[domain.Sent | domain.Failure]) -> None:
        sent = [o for o in batch if isinstance(o, domain.Sent)]
        failures = [o for o in batch if isinstance(o, domain.Failure)]
        events: list[Event] = []
        async with self.stores.begin() as writer:
            if sent:
                for done in await writer.record_sent(sent):
                    events.append(
                        ReminderSent(
                            reminder_id=done.id,
                            booking_id=done.booking_id,
                            channel=done.channel,
                            sent_at=done.sent_at,
                            message_id=done.message_id,
                        )
                    )
                    self._outcomes.labels(done.channel, "sent").inc()
                    lateness = (done.sent_at - done.scheduled_for).total_seconds()
                    self._lateness.labels(done.channel).observe(max(lateness, 0.0))
            if failures:
                for failed in await writer.record_failures(failures):
                    if failed.status == domain.Status.FAILED:
                        events.append(
                            ReminderFailed(
                                reminder_id=failed.id,
                                booking_id=failed.booking_id,
                                channel=failed.channel,
                                attempts=failed.attempts,
                                error=failed.last_error,
                            )
                        )
                        self._outcomes.labels(failed.channel, "failed").inc()
                    else:
                        self._outcomes.labels(failed.channel, "retry").inc()
            await self.outbox.add(writer.tx, *events)
