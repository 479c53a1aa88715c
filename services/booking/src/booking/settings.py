"""Configuration of the booking service, read from ``BOOKING_*`` environment variables."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class BookingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BOOKING_", extra="ignore")

    service_name: str = "booking"
    database_url: str = "postgresql+asyncpg://platform:platform@127.0.0.1:55432/booking"
    http_port: int = 8002
