"""The dispatcher and the workers, through the in-memory broker and the store twin: due
reminders become jobs, the workers lease and send them (to a real SMTP server and SMS
provider on local sockets) and record each outcome with its event."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from booking_contracts import topics
from booking_contracts.catalogue import ReminderDue
from platform_runtime.memorydb import MemoryDatabase
from platform_runtime.timing import RetryPolicy
from platform_runtime.transactions import Stores
from reminders import consumers, delivery
from reminders.dispatcher import Dispatcher
from reminders.domain import Channel, ImpossibleBooking, Schedule, Status
from reminders.memory import MemoryStore, RemindersState
from reminders.senders import SmsConfig, SmtpConfig
from tests.support import booking_events
from tests.support.memory_service import MemoryService
from tests.support.senders import SmsProvider, SmtpSink

from .helpers import OUTBOX, Service, plan

START = datetime(2031, 3, 4, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
NOW = START - 90 * timedelta(minutes=1)
"""The clock of the dispatcher and the workers: the 24 h and SMS reminders are due."""
PHONE = "+4915112345678"


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


@pytest_asyncio.fixture
async def sms() -> AsyncIterator[SmsProvider]:
    provider = SmsProvider()
    await provider.start()
    yield provider
    await provider.stop()


@pytest_asyncio.fixture
async def service(smtp: SmtpSink, sms: SmsProvider) -> AsyncIterator[Service]:
    running = MemoryService(MemoryDatabase(RemindersState()))
    stores = Stores(running.db, MemoryStore)
    consumers.register(
        running.consumer(consumers.CONSUMER, permanent_errors=(ImpossibleBooking,)),
        MemoryStore,
        Schedule({**Schedule().offsets, Channel.SMS: 2 * HOUR}),
        running.metrics.counter("reminders_scheduled_total", "scheduled", ["channel"]),
    )
    dispatcher = Dispatcher(
        stores=stores,
        outbox=OUTBOX,
        clock=lambda: NOW,
        batch_size=100,
        interval_s=0.02,
        job_timeout=timedelta(minutes=5),
        dispatched=running.metrics.counter("reminders_dispatched_total", "d", ["outcome"]),
    )
    worker = delivery.Delivery(
        stores=stores,
        outbox=OUTBOX,
        clock=lambda: NOW,
        policy=RetryPolicy(max_attempts=1),
        smtp=SmtpConfig(host="127.0.0.1", port=smtp.port, timeout_s=3),
        sms=SmsConfig(url=sms.url, token=sms.token, timeout_s=3),
        mail_from="Bookings <bookings@example.com>",
        metrics=running.metrics,
        concurrency=2,
    )
    jobs = running.consumer(delivery.CONSUMER, capacity=worker.room)
    jobs.on_batch(
        ReminderDue,
        worker.take,
        worker.hand_out,
    )
    running.loops += [dispatcher.run, worker.run]
    async with running.running(topics.REMINDER_JOBS, topics.REMINDER_EVENTS):
        yield running


async def test_due_reminders_are_sent_once_each_and_recorded_with_their_events(
    service: Service, smtp: SmtpSink, sms: SmsProvider
) -> None:
    booking = booking_events.confirmed(START, phone=PHONE)
    await service.publish(booking, at=START - 48 * HOUR)

    events = await service.events(topics.REMINDER_EVENTS, at_least=2)

    assert sorted((e["type"], e["data"]["channel"]) for e in events) == [
        ("ReminderSent.v1", "email_24h"),
        ("ReminderSent.v1", "sms"),
    ]
    [mail] = smtp.to(str(booking.contact.email))
    assert mail.message_id == next(
        e["data"]["message_id"] for e in events if e["data"]["channel"] == "email_24h"
    )
    assert len(sms.to(PHONE)) == 1
    assert [s for _, s, _ in await plan(service, booking.booking_id)] == [
        Status.SENT,
        Status.SENT,
        Status.PENDING,  # the 1 h reminder is not due yet
    ]


async def test_a_failed_delivery_is_recorded_failed_with_its_event_after_the_last_attempt(
    service: Service, sms: SmsProvider
) -> None:
    sms.failing.add(PHONE)
    booking = booking_events.confirmed(START, phone=PHONE)
    await service.publish(booking, at=START - 48 * HOUR)

    events = await service.events(topics.REMINDER_EVENTS, at_least=2)

    assert sorted((e["type"], e["data"]["channel"]) for e in events) == [
        ("ReminderFailed.v1", "sms"),
        ("ReminderSent.v1", "email_24h"),
    ]
    assert [s for c, s, _ in await plan(service, booking.booking_id) if c is Channel.SMS] == [
        Status.FAILED
    ]
