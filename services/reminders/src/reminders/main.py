"""Wiring of the reminders service: ``create_app(settings)`` is the only entry point."""

from __future__ import annotations

from fastapi import FastAPI

from reminders import models
from reminders.settings import RemindersSettings
from shared.events import topics
from shared.service import ServiceRuntime

VERSION = "0.1.0"


def create_runtime(settings: RemindersSettings) -> ServiceRuntime:
    return ServiceRuntime(
        settings,
        metadata=models.metadata,
        source="/reminders",
        produces=[topics.REMINDER_JOBS, topics.REMINDER_EVENTS],
    )


def create_app(settings: RemindersSettings | None = None) -> FastAPI:
    runtime = create_runtime(settings or RemindersSettings())
    return runtime.create_app(title="Reminders service", version=VERSION)
