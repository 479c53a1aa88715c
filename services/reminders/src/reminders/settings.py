"""Configuration of the reminders service, read from ``REMINDERS_*`` environment variables."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class RemindersSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REMINDERS_", extra="ignore")

    service_name: str = "reminders"
    database_url: str = "postgresql+asyncpg://platform:platform@127.0.0.1:55432/reminders"
    http_port: int = 8003
