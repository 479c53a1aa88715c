"""Wiring of the timeslots service: ``create_app(settings)`` is the only entry point."""

from __future__ import annotations

from fastapi import FastAPI

from shared.events import topics
from shared.service import ServiceRuntime
from timeslots import models
from timeslots.settings import TimeslotsSettings

VERSION = "0.1.0"


def create_runtime(settings: TimeslotsSettings) -> ServiceRuntime:
    return ServiceRuntime(
        settings, metadata=models.metadata, source="/timeslots", produces=[topics.TIMESLOTS_EVENTS]
    )


def create_app(settings: TimeslotsSettings | None = None) -> FastAPI:
    runtime = create_runtime(settings or TimeslotsSettings())
    return runtime.create_app(title="Timeslots service", version=VERSION)
