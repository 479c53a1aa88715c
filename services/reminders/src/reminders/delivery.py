"""The workers: jobs from ``reminders.jobs`` become emails and text messages, each sent once.

Each worker process

1. takes jobs in batches (at most what its senders have room for) and, in one transaction,
   claims their ids in the kernel's inbox (a redelivered job is skipped) and takes a
   *lease* on each reminder whose current job it still is (a cancelled, moved, sent or
   re-dispatched reminder drops the job); the lease counts the attempt. Then it commits
   the batch's offsets;
2. hands the leases to its ``concurrency`` senders, which send each message outside any
   transaction, with the reminder's stable Message-ID;
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
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import TYPE_CHECKING
from uuid import UUID

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import KafkaError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reminders import domain, models, store
from reminders.domain import Channel, RetryPolicy
from reminders.senders import DeliveryError, SmsConfig, SmsSender, SmtpConfig, SmtpConnection
from shared import inbox
from shared.events import topics
from shared.events.catalogue import ReminderDue, ReminderFailed, ReminderSent
from shared.events.envelope import Event, EventDecodeError, decode
from shared.events.money import utc_now
from shared.events.topics import dead_letter_topic
from shared.messaging import DeadLetterSink
from shared.outbox import Outbox

if TYPE_CHECKING:
    from shared.http.metrics import Metrics

log = logging.getLogger(__name__)

CONSUMER = "reminders-delivery"
FLUSH_BATCH = 500
DRAIN_S = 5.0


@dataclass
class Delivery:
    """The sending half of a worker process: a bounded pool of senders and a recorder."""

    sessions: async_sessionmaker[AsyncSession]
    outbox: Outbox
    clock: Callable[[], datetime]
    policy: RetryPolicy
    smtp: SmtpConfig
    sms: SmsConfig | None
    mail_from: str
    metrics: Metrics
    dead_letters: DeadLetterSink
    kafka_bootstrap_servers: str
    fetch_max_wait_ms: int = 50
    lease: timedelta = timedelta(seconds=60)
    concurrency: int = 16
    _queue: asyncio.Queue[store.Lease] = field(default_factory=asyncio.Queue)
    _results: asyncio.Queue[store.Sent | store.Failure] = field(default_factory=asyncio.Queue)
    _freed: asyncio.Event = field(default_factory=asyncio.Event)
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

    async def consume(self, stop: asyncio.Event) -> None:
        """Take jobs from ``reminders.jobs`` in batches until ``stop``.

        A batch is at most what the senders have room for. In one transaction its job ids
        are claimed in the inbox (a redelivered job is skipped) and the reminders leased;
        then the leases go to the senders and the offsets are committed. Undecodable
        records go to ``reminders.jobs.dlq`` with the reason. While the database is
        unreachable the batch is retried, never skipped.
        """
        consumer = AIOKafkaConsumer(
            topics.REMINDER_JOBS,
            bootstrap_servers=self.kafka_bootstrap_servers,
            group_id=CONSUMER,
            client_id=CONSUMER,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.fetch_max_wait_ms,
        )
        await consumer.start()
        try:
            while not stop.is_set():
                room = self.capacity - self._outstanding
                if room <= 0:
                    self._freed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._freed.wait(), 0.2)
                    continue
                fetched = await consumer.getmany(timeout_ms=200, max_records=room)
                records = [r for batch in fetched.values() for r in batch]
                if records and await self._take(records, stop):
                    try:
                        await consumer.commit()
                    except KafkaError:
                        log.warning("committing job offsets failed (rebalance?)", exc_info=True)
        finally:
            await consumer.stop()

    async def _take(self, records: list[ConsumerRecord[bytes, bytes]], stop: asyncio.Event) -> bool:
        """Claim and lease one batch; False when stopped before it was done."""
        jobs: dict[UUID, store.Job] = {}
        for record in records:
            try:
                envelope, event = decode(record.value)
            except EventDecodeError as exc:
                await self._dead_letter(record, str(exc))
                continue
            if isinstance(event, ReminderDue):
                jobs[envelope.id] = store.Job(envelope.id, event.reminder_id, event.scheduled_for)
        if not jobs:
            return True
        delay = 0.1
        while True:
            try:
                async with self.sessions.begin() as session:
                    fresh = await inbox.claim_many(
                        session,
                        models.inbox,
                        consumer=CONSUMER,
                        events=dict.fromkeys(jobs, ReminderDue.type_name()),
                    )
                    leases = await store.take_leases(
                        session, [jobs[i] for i in fresh], now=self.clock(), lease=self.lease
                    )
                break
            except Exception:
                log.warning("taking %d jobs failed; retrying", len(jobs), exc_info=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    return False
                delay = min(delay * 2, 5.0)
        if len(fresh) < len(jobs):
            self._dropped.labels("duplicate").inc(len(jobs) - len(fresh))
        if len(leases) < len(fresh):
            self._dropped.labels("not_current").inc(len(fresh) - len(leases))
        for lease in leases:
            self._outstanding += 1
            self._queue.put_nowait(lease)
        return True

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        log.error(
            "dead-lettering job %s[%d]@%d: %s",
            record.topic,
            record.partition,
            record.offset,
            reason,
        )
        headers = {k: v.decode(errors="replace") for k, v in record.headers or ()}
        headers |= {
            "dlq_reason": reason[:4000],
            "dlq_kind": "undecodable",
            "dlq_consumer": CONSUMER,
            "dlq_original_topic": record.topic,
            "dlq_original_partition": str(record.partition),
            "dlq_original_offset": str(record.offset),
            "dlq_failed_at": utc_now().isoformat(),
        }
        await self.dead_letters.send(
            dead_letter_topic(record.topic), key=record.key, value=record.value, headers=headers
        )

    @property
    def capacity(self) -> int:
        """Leases this process holds at most: a second batch waits while one is sent, so
        the consumer stays ahead without leases waiting long (and running out) in memory."""
        return 2 * self.concurrency

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
        try:
            await stop.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), DRAIN_S)
        finally:
            for task in senders:
                task.cancel()
            await asyncio.gather(*senders, return_exceptions=True)
            recorder.cancel()
            await asyncio.gather(recorder, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._record(self._drain_results())
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
                    self._freed.set()
        finally:
            await connection.close()

    async def deliver(
        self, lease: store.Lease, connection: SmtpConnection
    ) -> store.Sent | store.Failure | None:
        """Send one message; None when the lease ran out before it could start."""
        reminder = lease.reminder
        timeout = timedelta(seconds=max(self.smtp.timeout_s, self.sms.timeout_s if self.sms else 0))
        if self.clock() + timeout >= lease.expires_at:
            self._dropped.labels("lease_expired").inc()
            return None
        try:
            if reminder.channel is Channel.SMS:
                await self._send_sms(reminder)
            else:
                await connection.send(
                    self._envelope_from,
                    reminder.contact_email,
                    domain.email_message(reminder, sender=self.mail_from, now=self.clock()),
                )
        except Exception as exc:
            error = _describe(exc)
            gives_up = self.policy.gives_up(lease.attempt)
            retry_at = None if gives_up else self.clock() + self.policy.backoff(lease.attempt)
            log.warning(
                "sending reminder %s (attempt %d) failed: %s; %s",
                reminder.id,
                lease.attempt,
                error,
                "giving up" if gives_up else f"retrying at {retry_at}",
            )
            return store.Failure(lease=lease, error=error, retry_at=retry_at)
        return store.Sent(lease=lease, sent_at=self.clock())

    async def _send_sms(self, reminder: domain.Reminder) -> None:
        if self._sms is None or reminder.contact_phone is None:
            raise DeliveryError("SMS is not configured on this worker")
        await self._sms.send(
            to=reminder.contact_phone,
            text=domain.sms_text(reminder),
            message_id=reminder.message_id,
        )

    # --- the recorder -----------------------------------------------------------------

    def _drain_results(self) -> list[store.Sent | store.Failure]:
        batch: list[store.Sent | store.Failure] = []
        while not self._results.empty() and len(batch) < FLUSH_BATCH:
            batch.append(self._results.get_nowait())
        return batch

    async def _recorder(self) -> None:
        while True:
            batch = [await self._results.get()]
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

    async def _record(self, batch: list[store.Sent | store.Failure]) -> None:
        sent = [o for o in batch if isinstance(o, store.Sent)]
        failures = [o for o in batch if isinstance(o, store.Failure)]
        events: list[Event] = []
        async with self.sessions.begin() as session:
            if sent:
                for row in await store.record_sent(session, sent):
                    events.append(
                        ReminderSent(
                            reminder_id=row.id,
                            booking_id=row.booking_id,
                            channel=Channel(row.kind),
                            sent_at=row.sent_at,
                            message_id=row.message_id,
                        )
                    )
                    self._outcomes.labels(row.kind, "sent").inc()
                    lateness = (row.sent_at - row.scheduled_for).total_seconds()
                    self._lateness.labels(row.kind).observe(max(lateness, 0.0))
            if failures:
                for row in await store.record_failures(session, failures):
                    if row.status == domain.Status.FAILED:
                        events.append(
                            ReminderFailed(
                                reminder_id=row.id,
                                booking_id=row.booking_id,
                                channel=Channel(row.kind),
                                attempts=row.attempts,
                                error=row.last_error,
                            )
                        )
                        self._outcomes.labels(row.kind, "failed").inc()
                    else:
                        self._outcomes.labels(row.kind, "retry").inc()
            await self.outbox.add(session, *events)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
