"""Configuration of the timeslots service, read from ``TIMESLOTS_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class TimeslotsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TIMESLOTS_", extra="ignore")

    service_name: str = "timeslots"
    database_url: str = "postgresql+asyncpg://platform:platform@127.0.0.1:55432/timeslots"
    http_port: int = 8001

    generation_max_days: int = Field(default=366, ge=1, le=3660)
    """Longest date range one generation request may cover (inclusive days)."""
    search_max_days: int = Field(default=31, ge=1, le=366)
    """Longest date range one availability search may cover (inclusive days)."""
    custom_slots_max: int = Field(default=500, ge=1)
    """Most custom slots one request may add."""
    custom_slot_max_minutes: int = Field(default=24 * 60, ge=1)
    """Longest custom slot."""
    custom_slot_horizon_days: int = Field(default=2 * 366, ge=1)
    """How far ahead a custom slot may start."""
    slots_per_event: int = Field(default=500, ge=1, le=5_000)
    """Slots per ``SlotsGenerated`` event; keeps each Kafka message well under 1 MB."""
