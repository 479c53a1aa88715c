"""One migrated booking service per test module, on real PostgreSQL and the module's broker
(``broker``: an in-memory one unless the module is about Kafka itself).

Tests feed it exactly as production does: slot inventory as timeslot events and payments as
payment events published to the broker, and requests over HTTP with real tokens.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest_asyncio
from fastapi import FastAPI

from booking.cli import ALEMBIC_INI
from booking.main import create_app
from booking.settings import BookingSettings
from booking_contracts import topics
from booking_contracts.catalogue import (
    PaymentFailed,
    PaymentSucceeded,
    RoomRules,
    RoomRulesSet,
    RoomSnapshot,
    RoomType,
    RoomUpserted,
    SlotsGenerated,
    SlotSnapshot,
    SlotStatus,
)
from booking_contracts.envelope import Envelope, Event
from booking_contracts.money import Money
from platform_runtime.db import asyncpg_dsn
from platform_runtime.migrations import upgrade
from tests.support.brokers import Broker
from tests.support.drivers import FixedClock, ServiceDriver
from tests.support.fixtures import CreateDatabase
from tests.support.service import bearer, running
from tests.support.threads import in_thread

T = TypeVar("T")

ADMIN = bearer("admin-1", ["admin"])
START = datetime(2030, 1, 7, 6, 0, tzinfo=UTC)  # a Monday, long before every test slot


def user(name: str) -> dict[str, str]:
    return bearer(name)


@dataclass
class Service(ServiceDriver):
    db: asyncpg.Pool
    clock: FixedClock
    settings: BookingSettings
    app: FastAPI
    _next_day: list[int] = field(default_factory=lambda: [0])

    # --- inventory, as the timeslot service publishes it --------------------------------

    async def room(self, *, time_zone: str = "Europe/Berlin", name: str = "Room 7") -> uuid.UUID:
        room_id = uuid.uuid4()
        await self.publish(self.room_event(room_id, time_zone=time_zone, name=name))
        await self.until(lambda: self.row("SELECT * FROM rooms WHERE id = $1", room_id))
        return room_id

    def room_event(
        self,
        room_id: uuid.UUID,
        *,
        time_zone: str = "Europe/Berlin",
        name: str = "Room 7",
        active: bool = True,
    ) -> RoomUpserted:
        return RoomUpserted(
            room_id=room_id,
            room=RoomSnapshot(
                room_id=room_id,
                name=name,
                room_type=RoomType.MEETING,
                capacity=4,
                time_zone=time_zone,
                hourly_rate=Money.of("20.00", "EUR"),
                active=active,
            ),
        )

    async def rules(self, room_id: uuid.UUID, version: int, **rules: Any) -> RoomRulesSet:
        """Publish the room's rules (as the timeslot service does) and wait until they apply."""
        event = RoomRulesSet(room_id=room_id, rules=RoomRules(**rules), room_version=version)
        await self.publish(event)
        await self.until(
            lambda: self.row(
                "SELECT 1 FROM rooms WHERE id = $1 AND rules_version >= $2", room_id, version
            )
        )
        return event

    def day(self) -> datetime:
        """09:00 UTC of a day no other test of the module uses (all after ``START``)."""
        self._next_day[0] += 1
        return datetime(2030, 2, 1, 9, 0, tzinfo=UTC) + timedelta(days=self._next_day[0])

    async def slots(
        self,
        room_id: uuid.UUID,
        count: int = 1,
        *,
        starts_at: datetime | None = None,
        max_bookings: int = 1,
        price: str = "20.00",
        minutes: int = 60,
    ) -> list[SlotSnapshot]:
        first = starts_at or self.day()
        snapshots = [
            SlotSnapshot(
                slot_id=uuid.uuid4(),
                room_id=room_id,
                starts_at=first + timedelta(minutes=minutes * i),
                ends_at=first + timedelta(minutes=minutes * (i + 1)),
                price=Money.of(price, "EUR"),
                max_bookings=max_bookings,
                status=SlotStatus.OPEN,
                revision=1,
            )
            for i in range(count)
        ]
        await self.publish(SlotsGenerated(room_id=room_id, slots=snapshots))
        last = snapshots[-1].slot_id
        await self.until(lambda: self.row("SELECT * FROM slots WHERE id = $1", last))
        return snapshots

    # --- kafka and the database ---------------------------------------------------------

    async def publish(self, *events: Event, source: str = "/timeslots") -> list[Envelope]:
        envelopes = [Envelope.wrap(event, source=source) for event in events]
        for event, envelope in zip(events, envelopes, strict=True):
            await self.broker.publish(
                event.topic, [envelope.to_json_bytes()], key=event.aggregate_id().encode()
            )
        return envelopes

    async def publish_raw(self, topic: str, envelope: Envelope) -> None:
        """Publish an envelope again, byte for byte (a redelivery)."""
        key = envelope.subject.encode() if envelope.subject else None
        await self.broker.publish(topic, [envelope.to_json_bytes()], key=key)

    async def pay(self, booking: dict[str, Any], *, amount: str | None = None) -> Envelope:
        price = booking["price"]
        event = PaymentSucceeded(
            booking_id=booking["id"],
            payment_id=f"pay-{booking['id']}",
            amount=Money.of(amount or price["amount"], price["currency"]),
        )
        (envelope,) = await self.publish(event, source="/payments")
        return envelope

    async def fail_payment(self, booking: dict[str, Any]) -> None:
        await self.publish(
            PaymentFailed(booking_id=booking["id"], payment_id="pay-x", reason="card declined"),
            source="/payments",
        )

    async def row(self, query: str, *args: Any) -> dict[str, Any] | None:
        record = await self.db.fetchrow(query, *args)
        return dict(record) if record else None

    async def status(self, booking_id: str, expected: str) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            row = await self.row("SELECT * FROM bookings WHERE id = $1", uuid.UUID(booking_id))
            return row if row and row["status"] == expected else None

        return await self.until(probe)

    async def booked(self, slot_id: uuid.UUID) -> int:
        row = await self.row("SELECT booked_count FROM slots WHERE id = $1", slot_id)
        assert row is not None
        count: int = row["booked_count"]
        return count

    async def events(
        self, booking_id: str, *, at_least: int, settle_s: float = 0.0
    ) -> list[dict[str, Any]]:
        """Envelopes published on the booking topic about ``booking_id``, in order."""
        return await self.envelopes_about(
            topics.BOOKING_EVENTS, booking_id, at_least=at_least, settle_s=settle_s
        )

    # --- http ---------------------------------------------------------------------------

    async def book(
        self,
        slot: SlotSnapshot,
        who: str = "user-1",
        *,
        headers: dict[str, str] | None = None,
        **body: Any,
    ) -> httpx.Response:
        return await self.http.post(
            "/bookings",
            json={"slot_id": str(slot.slot_id)} | body,
            headers=user(who) | (headers or {}),
        )

    async def booking(self, slot: SlotSnapshot, who: str = "user-1") -> dict[str, Any]:
        response = await self.book(slot, who)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def confirmed(self, slot: SlotSnapshot, who: str = "user-1") -> dict[str, Any]:
        booking = await self.booking(slot, who)
        await self.pay(booking)
        await self.status(booking["id"], "confirmed")
        response = await self.http.get(f"/bookings/{booking['id']}", headers=user(who))
        body: dict[str, Any] = response.json()
        return body


def types(envelopes: Sequence[dict[str, Any]]) -> list[str]:
    return [envelope["type"] for envelope in envelopes]


@asynccontextmanager
async def serve(
    create_database: CreateDatabase, broker: Broker, **overrides: Any
) -> AsyncIterator[Service]:
    """A booking service migrated on a database of its own, with ``overrides`` of the test
    settings (e.g. ``create_batch_max=1`` turns request coalescing off)."""
    url = await create_database("booking")
    await in_thread(upgrade, ALEMBIC_INI, url)
    values: dict[str, Any] = {
        "database_url": url,
        "kafka_bootstrap_servers": broker.bootstrap,
        "outbox_poll_interval_s": 0.2,
        "expiry_interval_s": 0.1,
        "consumer_backoff_initial_s": 0.05,
        "consumer_max_attempts": 2,
        "database_pool_size": 20,
        "development": True,
    }
    settings = BookingSettings(**(values | overrides))
    clock = FixedClock(START)
    pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=1, max_size=4)
    try:
        app = create_app(settings, clock=clock, transport=broker.transport())
        async with running(app) as http:
            yield Service(
                http=http, db=pool, broker=broker, clock=clock, settings=settings, app=app
            )
    finally:
        await pool.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(create_database: CreateDatabase, broker: Broker) -> AsyncIterator[Service]:
    # Many tests leave several unpaid holds of one user behind: the cap on unpaid holds has
    # tests of its own (test_abuse_holds.py), with the default cap.
    async with serve(create_database, broker, max_unpaid_holds=1000) as running_service:
        yield running_service
