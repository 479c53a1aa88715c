"""Wiring of the booking service: ``create_app(settings)`` is the only entry point."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from importlib.metadata import version

from fastapi import FastAPI

from booking import consumers, domain, handlers, models
from booking.api import Config, router
from booking.coalescing import CreateCoalescer
from booking.settings import BookingSettings
from booking.store import SqlStore
from booking_contracts import topics
from booking_contracts.money import utc_now
from platform_runtime.http.pagination import InvalidCursor
from platform_runtime.service import ServiceRuntime
from platform_runtime.timing import Clock, sleep_unless
from platform_runtime.transport import Transport

log = logging.getLogger(__name__)

VERSION = version("booking-service")
"""The service's version, from its package metadata (its ``pyproject.toml``)."""

PROBLEM_STATUSES: dict[type[Exception], int] = {
    domain.InvalidTransition: 409,
    domain.SlotUnavailable: 409,
    domain.BookingNotFound: 404,
    domain.SlotNotFound: 404,
    domain.RoomNotFound: 404,
    domain.InvalidBooking: 422,
    domain.IdempotencyConflict: 422,
    domain.Forbidden: 403,
    domain.PriceNotCovered: 409,
    domain.TooManyUnpaidHolds: 429,
    domain.RuleBroken: 409,
    domain.WaitlistRefused: 409,
    domain.NotInLine: 404,
    InvalidCursor: 422,
}


def rules_of(settings: BookingSettings) -> handlers.Rules:
    return handlers.Rules(
        hold=timedelta(minutes=settings.hold_minutes),
        refunds=settings.refund_policy(),
        max_unpaid_holds=settings.max_unpaid_holds,
        max_waitlists=settings.max_waitlists,
    )


def create_runtime(
    settings: BookingSettings, *, clock: Clock = utc_now, transport: Transport | None = None
) -> ServiceRuntime:
    """The service's runtime; ``transport``: its broker, by default the one of the settings."""
    runtime = ServiceRuntime(
        settings,
        metadata=models.metadata,
        source="/booking",
        produces=[topics.BOOKING_EVENTS],
        transport=transport,
    )
    consumers.register_inventory(
        runtime.consumer(consumers.INVENTORY_CONSUMER), SqlStore, runtime.outbox, clock
    )
    consumers.register_payments(
        runtime.consumer(consumers.PAYMENTS_CONSUMER, permanent_errors=(domain.BookingError,)),
        SqlStore,
        runtime.outbox,
        clock,
        runtime.metrics,
    )

    stores = runtime.stores(SqlStore)

    async def expire_holds(stop: asyncio.Event) -> None:
        """Expire unpaid holds; with a full batch, go again at once (catching up)."""
        while not stop.is_set():
            async with stores.begin() as store:
                expired = await handlers.expire_holds(
                    store, runtime.outbox, now=clock(), limit=settings.expiry_batch_size
                )
            if expired:
                log.info("expired %d unpaid holds", expired)
            if expired < settings.expiry_batch_size:
                await sleep_unless(stop, settings.expiry_interval_s)

    runtime.background("hold-expiry", expire_holds)

    async def sweep_waitlists(stop: asyncio.Event) -> None:
        """Lapse offers that ran out and close the lines of started slots."""
        while not stop.is_set():
            async with stores.begin() as store:
                changed = await handlers.sweep_waitlists(
                    store, runtime.outbox, now=clock(), limit=settings.expiry_batch_size
                )
            if changed < settings.expiry_batch_size:
                await sleep_unless(stop, settings.expiry_interval_s)

    runtime.background("waitlist-sweeper", sweep_waitlists)
    return runtime


def create_app(
    settings: BookingSettings | None = None,
    *,
    clock: Clock = utc_now,
    transport: Transport | None = None,
) -> FastAPI:
    settings = settings or BookingSettings()
    runtime = create_runtime(settings, clock=clock, transport=transport)
    app = runtime.create_app(
        title="Booking service",
        version=VERSION,
        description=(
            "Capacity-safe bookings of timeslots, confirmed by payment events, with refunds "
            "by policy, rescheduling and unpaid-hold expiry."
        ),
        problem_mapping=PROBLEM_STATUSES,
        routers=[router],
        config=Config(
            rules=rules_of(settings),
            coalescer=CreateCoalescer(
                runtime.stores(SqlStore),
                runtime.outbox,
                rules_of(settings),
                max_batch=settings.create_batch_max,
            ),
        ),
        clock=clock,
    )
    return app
