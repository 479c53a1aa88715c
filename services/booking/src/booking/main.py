"""Wiring of the booking service: ``create_app(settings)`` is the only entry point."""

from __future__ import annotations

from fastapi import FastAPI

from booking import models
from booking.settings import BookingSettings
from shared.events import topics
from shared.service import ServiceRuntime

VERSION = "0.1.0"


def create_runtime(settings: BookingSettings) -> ServiceRuntime:
    return ServiceRuntime(
        settings, metadata=models.metadata, source="/booking", produces=[topics.BOOKING_EVENTS]
    )


def create_app(settings: BookingSettings | None = None) -> FastAPI:
    runtime = create_runtime(settings or BookingSettings())
    return runtime.create_app(title="Booking service", version=VERSION)
