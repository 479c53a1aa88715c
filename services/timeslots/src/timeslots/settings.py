"""Configuration of the timeslots service, read from ``TIMESLOTS_*`` environment variables."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from booking_contracts.catalogue import RoomType
from platform_runtime.settings import ServiceSettings
from timeslots import domain


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

    default_rules: dict[str, Any] = Field(default_factory=dict)
    """The platform's booking rules, a JSON object of some ``RoomRules`` members
    (``{"cancel_notice_minutes": 1440}``); a rule left out keeps the contract's default (which
    refuses nothing). Under every room type's defaults and every room's own rules."""
    rules_by_room_type: dict[RoomType, dict[str, Any]] = Field(default_factory=dict)
    """Booking rules by room type, a JSON object of such objects
    (``{"treatment": {"book_notice_minutes": 120}}``), over the platform's."""

    @model_validator(mode="after")
    def _rules_make_sense(self) -> TimeslotsSettings:
        """Every rule is a ``RoomRules`` rule with a valid value, and each room type's rules
        over the platform's are consistent: otherwise the service does not start."""
        try:
            self.rule_defaults()
        except domain.InvalidRules as exc:
            raise ValueError(
                f"TIMESLOTS_DEFAULT_RULES or TIMESLOTS_RULES_BY_ROOM_TYPE refused: {exc}"
            ) from exc
        return self

    def rule_defaults(self) -> domain.RuleDefaults:
        return domain.RuleDefaults(
            platform=domain.PartialRules.checked(
                self.default_rules, whose="TIMESLOTS_DEFAULT_RULES"
            ),
            by_room_type={
                room_type: domain.PartialRules.checked(
                    rules, whose=f"TIMESLOTS_RULES_BY_ROOM_TYPE {room_type}"
                )
                for room_type, rules in self.rules_by_room_type.items()
            },
        )
