"""Configuration of the booking service, read from ``BOOKING_*`` environment variables."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from booking.domain import RefundPolicy, RefundTier
from platform_runtime.settings import ServiceSettings


class RefundTierSetting(BaseModel):
    """``{"notice_hours": 24, "percent": 100}``: that much notice refunds that share."""

    notice_hours: Decimal = Field(ge=0)
    percent: Decimal = Field(ge=0, le=100)


class BookingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BOOKING_", extra="ignore")

    service_name: str = "booking"
    database_url: str = "postgresql+asyncpg://platform:platform@127.0.0.1:55432/booking"
    http_port: int = 8002

    hold_minutes: int = Field(default=15, ge=1, le=24 * 60)
    """How long a pending booking holds its place unpaid."""
    max_unpaid_holds: int = Field(default=5, ge=1, le=10_000)
    """Pending (unpaid) bookings one user may hold at a time; one more is refused (429)
    until one is paid, cancelled or expires. An admin booking for themselves is not capped.
    The database enforces it (each transaction that makes holds states it)."""
    max_waitlists: int = Field(default=10, ge=1, le=1000)
    """Waitlists one user may be in at a time (waiting or holding an offer)."""
    refund_tiers: list[RefundTierSetting] = Field(
        default_factory=lambda: [
            RefundTierSetting(notice_hours=Decimal(24), percent=Decimal(100)),
            RefundTierSetting(notice_hours=Decimal(6), percent=Decimal(50)),
        ]
    )
    """JSON list; less notice than every tier refunds nothing."""
    admin_refund_percent: Decimal = Field(default=Decimal(100), ge=0, le=100)
    expiry_interval_s: float = Field(default=1.0, gt=0)
    """How often the hold sweeper looks for expired holds."""
    expiry_batch_size: int = Field(default=500, ge=1)
    create_batch_max: int = Field(default=64, ge=1, le=1000)
    """Concurrent ``POST /bookings`` of one API process written in one transaction, at
    most (request coalescing; 1 writes every request in a transaction of its own)."""

    def refund_policy(self) -> RefundPolicy:
        return RefundPolicy(
            tiers=tuple(
                RefundTier(timedelta(hours=float(t.notice_hours)), t.percent)
                for t in self.refund_tiers
            ),
            admin_percent=self.admin_refund_percent,
        )
