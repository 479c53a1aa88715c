"""Configuration of the timeslots service, read from ``TIMESLOTS_*`` environment variables."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class TimeslotsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TIMESLOTS_", extra="ignore")

    service_name: str = "timeslots"
    database_url: str = "postgresql+asyncpg://platform:platform@127.0.0.1:55432/timeslots"
    http_port: int = 8001
