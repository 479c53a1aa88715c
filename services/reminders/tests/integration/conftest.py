"""One migrated reminders service per test module, on real PostgreSQL and the module's broker
(``broker``: an in-memory one unless the module is about Kafka itself), delivering to a real
SMTP server and a real HTTP SMS provider started by the tests.

Tests feed it as production does: booking events published to the broker. Its clock runs (time
passes as usual) from a point the test sets, so a test moves "now" to just before a
reminder's time and watches it arrive.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
import pytest_asyncio

from booking_contracts import topics
from booking_contracts.catalogue import (
    BookingConfirmed,
)
from booking_contracts.envelope import Envelope, Event
from platform_runtime.db import asyncpg_dsn
from platform_runtime.migrations import upgrade
from platform_runtime.transport import IncomingRecord
from reminders.cli import ALEMBIC_INI
from reminders.main import create_app
from reminders.settings import RemindersSettings
from tests.support import booking_events
from tests.support.brokers import Broker
from tests.support.drivers import ServiceDriver, ShiftedClock
from tests.support.fixtures import CreateDatabase
from tests.support.senders import SmsProvider, SmtpSink
from tests.support.service import bearer, running
from tests.support.threads import in_thread

T = TypeVar("T")

ADMIN = bearer("admin-1", ["admin"])
BASE = datetime(2029, 3, 1, 8, 0, tzinfo=UTC)
"""Every booking of these tests is after this (and before the bookings other services'
tests publish on the shared topic, in 2030, so their reminders never fall due here)."""


def clock_at_base() -> ShiftedClock:
    """Real time shifted to ``BASE``: time keeps passing; ``clock.set`` moves it."""
    return ShiftedClock.starting_at(BASE)


@dataclass
class Service(ServiceDriver):
    db: asyncpg.Pool
    clock: ShiftedClock
    smtp: SmtpSink
    sms: SmsProvider
    settings: RemindersSettings
    _day: list[int] = field(default_factory=lambda: [0])

    def day(self) -> datetime:
        """09:00 UTC of a day no other test of the module uses, later than the last one."""
        self._day[0] += 4
        return BASE.replace(hour=9) + timedelta(days=self._day[0])

    # --- booking events -----------------------------------------------------------------

    async def publish(self, event: Event, *, at: datetime | None = None) -> Envelope:
        """Publish as the booking service would, the event having happened ``at`` (now)."""
        envelope = Envelope.wrap(event, source="/booking").model_copy(
            update={"time": at or self.clock()}
        )
        await self.publish_raw(envelope)
        return envelope

    async def publish_raw(self, envelope: Envelope, topic: str = topics.BOOKING_EVENTS) -> None:
        key = envelope.subject.encode() if envelope.subject else None
        await self.broker.publish(topic, [envelope.to_json_bytes()], key=key)

    confirmed = staticmethod(booking_events.confirmed)
    cancelled = staticmethod(booking_events.cancelled)
    rescheduled = staticmethod(booking_events.rescheduled)

    async def confirm(self, booking: BookingConfirmed, *, expect: int) -> list[dict[str, Any]]:
        """Publish the confirmation and wait until the booking is known with ``expect``
        reminders."""
        await self.publish(booking)
        await self.until(lambda: self.known(booking.booking_id))
        rows = await self.reminders(booking.booking_id)
        assert len(rows) == expect, rows
        return rows

    # --- the database, the topics -------------------------------------------------------

    async def known(self, booking_id: uuid.UUID) -> bool:
        query = "SELECT 1 FROM booking_states WHERE booking_id = $1"
        row = await self.db.fetchrow(query, booking_id)
        return row is not None

    async def reminders(self, booking_id: uuid.UUID) -> list[dict[str, Any]]:
        records = await self.db.fetch(
            "SELECT * FROM reminders WHERE booking_id = $1 ORDER BY scheduled_for, created_at",
            booking_id,
        )
        return [dict(r) for r in records]

    async def by_kind(self, booking_id: uuid.UUID) -> dict[str, dict[str, Any]]:
        """The latest reminder of each kind."""
        return {r["kind"]: r for r in await self.reminders(booking_id)}

    async def statuses(
        self, booking_id: uuid.UUID, expected: dict[str, str], *, timeout_s: float = 20.0
    ) -> dict[str, dict[str, Any]]:
        async def probe() -> dict[str, dict[str, Any]] | None:
            rows = await self.by_kind(booking_id)
            actual = {kind: row["status"] for kind, row in rows.items()}
            return rows if actual == expected else None

        return await self.until(probe, timeout_s=timeout_s)

    async def events(
        self, booking_id: uuid.UUID, *, at_least: int, settle_s: float = 0.0
    ) -> list[dict[str, Any]]:
        """Envelopes on ``reminders.events`` about the booking."""
        return await self.envelopes_about(
            topics.REMINDER_EVENTS, str(booking_id), at_least=at_least, settle_s=settle_s
        )

    async def jobs(self, reminder_id: uuid.UUID, *, at_least: int) -> list[Envelope]:
        def about(record: IncomingRecord) -> bool:
            return record.key == str(reminder_id).encode()

        records = await self.broker.read(topics.REMINDER_JOBS, at_least=at_least, where=about)
        return [Envelope.model_validate_json(r.value or b"") for r in records]

    async def admin_view(self, booking_id: uuid.UUID) -> httpx.Response:
        return await self.http.get(f"/bookings/{booking_id}/reminders", headers=ADMIN)


def settings_for(
    url: str, kafka: str, smtp: SmtpSink, sms: SmsProvider, **overrides: Any
) -> RemindersSettings:
    values: dict[str, Any] = {
        "database_url": url,
        "kafka_bootstrap_servers": kafka,
        "outbox_poll_interval_s": 0.2,
        "consumer_backoff_initial_s": 0.05,
        "consumer_max_attempts": 2,
        "database_pool_size": 20,
        "dispatch_interval_s": 0.1,
        "job_timeout_s": 15,
        "lease_s": 5,
        "smtp_timeout_s": 3,
        "smtp_idle_s": 1,
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp.port,
        "sms_enabled": True,
        "sms_provider_url": sms.url,
        "sms_provider_token": sms.token,
        "sms_timeout_s": 3,
        "max_attempts": 3,
        "retry_initial_s": 0.3,
        "retry_max_s": 1,
        "delivery_concurrency": 4,
        "development": True,
    }
    return RemindersSettings(**(values | overrides))


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sms() -> AsyncIterator[SmsProvider]:
    provider = SmsProvider()
    await provider.start()
    yield provider
    await provider.stop()


@asynccontextmanager
async def serve(
    create_database: CreateDatabase,
    broker: Broker,
    smtp: SmtpSink,
    sms: SmsProvider,
    *,
    clock: ShiftedClock | None = None,
    **overrides: Any,
) -> AsyncIterator[Service]:
    """A reminders service migrated on a database of its own, running on ``broker`` and
    delivering to ``smtp`` and ``sms``, with ``overrides`` of the test settings; its clock
    is ``clock`` (by default real time shifted to ``BASE``)."""
    url = await create_database("reminders")
    await in_thread(upgrade, ALEMBIC_INI, url)
    settings = settings_for(url, broker.bootstrap, smtp, sms, **overrides)
    clock = clock or clock_at_base()
    pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=1, max_size=4)
    try:
        app = create_app(settings, clock=clock, transport=broker.transport())
        async with running(app) as http:
            yield Service(
                http=http,
                db=pool,
                broker=broker,
                clock=clock,
                smtp=smtp,
                sms=sms,
                settings=settings,
            )
    finally:
        await pool.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(
    create_database: CreateDatabase, broker: Broker, smtp: SmtpSink, sms: SmsProvider
) -> AsyncIterator[Service]:
    async with serve(create_database, broker, smtp, sms) as running_service:
        yield running_service
