"""Wiring of the timeslots service: ``create_app(settings)`` is the only entry point."""

from __future__ import annotations

import asyncio
import logging
from importlib.metadata import version

from fastapi import FastAPI

from booking_contracts import topics
from booking_contracts.money import utc_now
from platform_runtime.http.pagination import InvalidCursor
from platform_runtime.service import ServiceRuntime
from platform_runtime.timing import Clock
from platform_runtime.transport import Transport
from timeslots import consumers, domain, handlers, models, operations
from timeslots.api import router
from timeslots.settings import TimeslotsSettings
from timeslots.store import SqlStore

log = logging.getLogger(__name__)

VERSION = version("timeslots-service")
"""The service's version, from its package metadata (its ``pyproject.toml``)."""

PROBLEM_STATUSES: dict[type[Exception], int] = {
    domain.InvalidSchedule: 422,
    domain.InvalidRange: 422,
    domain.InvalidSlot: 422,
    domain.InvalidRules: 422,
    InvalidCursor: 422,
    domain.SlotOverlap: 409,
    domain.RoomUnavailable: 409,
    domain.RoomNotFound: 404,
    domain.SlotNotFound: 404,
}


def limits_of(settings: TimeslotsSettings) -> handlers.Limits:
    return handlers.Limits(
        generation_max_days=settings.generation_max_days,
        search_max_days=settings.search_max_days,
        custom_slots_max=settings.custom_slots_max,
        custom_slot_max_minutes=settings.custom_slot_max_minutes,
        custom_slot_horizon_days=settings.custom_slot_horizon_days,
        slots_per_event=settings.slots_per_event,
        rule_defaults=settings.rule_defaults(),
    )


def create_runtime(
    settings: TimeslotsSettings, *, transport: Transport | None = None
) -> ServiceRuntime:
    """The service's runtime; ``transport``: its broker, by default the one of the settings."""
    runtime = ServiceRuntime(
        settings,
        metadata=models.metadata,
        source="/timeslots",
        produces=[topics.TIMESLOTS_EVENTS],
        transport=transport,
    )
    consumers.register(runtime.consumer(consumers.CONSUMER_NAME), SqlStore)
    defaults = settings.rule_defaults()

    async def publish_changed_rules(stop: asyncio.Event) -> None:
        """Once, when the worker starts: publish the rules in force of the rooms whose rules
        the defaults of this deploy change (and of rooms never published)."""
        done = await operations.sync_rules(
            runtime.stores(SqlStore), runtime.outbox, defaults, stop=stop
        )
        for room_id, reason in done.invalid.items():
            log.error("room %s keeps the rules last published: %s", room_id, reason)
        log.info(
            "booking rules of %d rooms compared, %d published", done.rooms, len(done.published)
        )

    runtime.background("room-rules", publish_changed_rules)
    return runtime


def create_app(
    settings: TimeslotsSettings | None = None,
    *,
    clock: Clock = utc_now,
    transport: Transport | None = None,
) -> FastAPI:
    settings = settings or TimeslotsSettings()
    runtime = create_runtime(settings, transport=transport)
    app = runtime.create_app(
        title="Timeslots service",
        version=VERSION,
        description=(
            "Rooms, their weekly schedules and the bookable slots generated from them, "
            "with availability search in each room's own time zone."
        ),
        problem_mapping=PROBLEM_STATUSES,
        routers=[router],
        config=limits_of(settings),
        clock=clock,
    )
    return app
