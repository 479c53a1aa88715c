"""One migrated timeslots service per test module, on real PostgreSQL and the module's broker
(``broker``: an in-memory one unless the module is about Kafka itself)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest_asyncio

from booking_contracts import topics
from platform_runtime.migrations import upgrade
from tests.support.brokers import Broker
from tests.support.drivers import FixedClock, ServiceDriver
from tests.support.fixtures import CreateDatabase
from tests.support.service import bearer, running
from tests.support.threads import in_thread
from timeslots.cli import ALEMBIC_INI
from timeslots.main import create_app
from timeslots.settings import TimeslotsSettings

ADMIN = bearer("admin-1", ["admin"])
USER = bearer("user-1")


START = datetime(2030, 1, 7, 6, 0, tzinfo=UTC)  # a Monday


@dataclass
class Service(ServiceDriver):
    database_url: str
    clock: FixedClock
    settings: TimeslotsSettings
    rooms: list[str] = field(default_factory=list)

    async def room(
        self,
        *,
        time_zone: str = "Europe/Berlin",
        room_type: str = "meeting",
        rate: str = "30.00",
        currency: str = "EUR",
        schedule: dict[str, Any] | None = None,
        name: str = "Room",
    ) -> dict[str, Any]:
        """A new room with a schedule (09:00-17:00 Monday-Friday, 30-minute slots)."""
        response = await self.http.post(
            "/rooms",
            json={
                "name": name,
                "capacity": 4,
                "room_type": room_type,
                "hourly_rate": {"amount": rate, "currency": currency},
                "time_zone": time_zone,
            },
            headers=ADMIN,
        )
        assert response.status_code == 201, response.text
        room: dict[str, Any] = response.json()
        body = schedule or {"hours": [{"start": "09:00", "end": "17:00"}]}
        put = await self.http.put(f"/rooms/{room['id']}/schedule", json=body, headers=ADMIN)
        assert put.status_code == 200, put.text
        return room

    async def generate(self, room_id: str, date_from: str, date_to: str) -> dict[str, Any]:
        response = await self.http.post(
            f"/rooms/{room_id}/slots/generate",
            json={"date_from": date_from, "date_to": date_to},
            headers=ADMIN,
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def slots(self, room_id: str, **query: str) -> list[dict[str, Any]]:
        response = await self.http.get(
            f"/rooms/{room_id}/slots", params={"limit": "500", **query}, headers=ADMIN
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def events(
        self, room_id: str, *, at_least: int, settle_s: float = 0.0
    ) -> list[dict[str, Any]]:
        """The envelopes published on the timeslots topic about ``room_id``, in order."""
        return await self.envelopes_about(
            topics.TIMESLOTS_EVENTS, room_id, at_least=at_least, settle_s=settle_s
        )


def settings_for(database_url: str, kafka_bootstrap: str, **overrides: Any) -> TimeslotsSettings:
    """The settings of a service under test: quick to relay and to retry."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "kafka_bootstrap_servers": kafka_bootstrap,
        "outbox_poll_interval_s": 0.2,
        "search_max_days": 31,
        "generation_max_days": 366,
        "consumer_backoff_initial_s": 0.05,
        "consumer_max_attempts": 2,
        "development": True,
    }
    return TimeslotsSettings(**values | overrides)


async def migrated(create_database: CreateDatabase) -> str:
    url = await create_database("timeslots")
    await in_thread(upgrade, ALEMBIC_INI, url)
    return url


@asynccontextmanager
async def serving(settings: TimeslotsSettings, broker: Broker) -> AsyncIterator[Service]:
    """The service of ``settings`` running on ``broker`` (lifespan included), with a client
    for it."""
    clock = FixedClock(START)
    app = create_app(settings, clock=clock, transport=broker.transport())
    async with running(app) as http:
        yield Service(
            http=http,
            database_url=settings.database_url,
            broker=broker,
            clock=clock,
            settings=settings,
        )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(create_database: CreateDatabase, broker: Broker) -> AsyncIterator[Service]:
    url = await migrated(create_database)
    async with serving(settings_for(url, broker.bootstrap), broker) as running_service:
        yield running_service
