"""Configuration of the reminders service, read from ``REMINDERS_*`` environment variables."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Self

from pydantic import AfterValidator, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from platform_runtime.settings import ServiceSettings
from platform_runtime.timing import RetryPolicy
from reminders.domain import DEFAULT_OFFER_LINK, Channel, Schedule, check_offer_link


class RemindersSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REMINDERS_", extra="ignore")

    service_name: str = "reminders"
    database_url: str = "postgresql+asyncpg://platform:platform@127.0.0.1:55432/reminders"
    http_port: int = 8003

    # --- what gets scheduled -------------------------------------------------------------
    email_24h_enabled: bool = True
    email_24h_before_minutes: int = Field(default=24 * 60, ge=1)
    email_1h_enabled: bool = True
    email_1h_before_minutes: int = Field(default=60, ge=1)
    sms_enabled: bool = False
    """SMS reminders for contacts with a phone number (needs ``sms_provider_url``)."""
    sms_before_minutes: int = Field(default=120, ge=1)

    # --- which parts run in this process -------------------------------------------------
    scheduler_enabled: bool = True
    """Consume booking events and (re)schedule reminders."""
    dispatcher_enabled: bool = True
    """Turn due reminders into jobs on ``reminders.jobs``."""
    worker_enabled: bool = True
    """Consume jobs and deliver them (``reminders worker`` runs only this)."""

    # --- dispatcher ----------------------------------------------------------------------
    dispatch_batch_size: int = Field(default=500, ge=1)
    dispatch_interval_s: float = Field(default=0.5, gt=0)
    """Pause of the dispatcher after a batch that was not full."""
    job_timeout_s: float = Field(default=300.0, gt=0)
    """A job no worker took within this time is dispatched again."""
    dispatch_ahead_s: float = Field(default=10.0, ge=0)
    """Reminders are handed to the workers this long before their time; a worker holds
    each until its time and sends it then, so a burst of reminders due at one instant is
    already leased when it falls due. 0: hand out only what is due."""

    # --- workers -------------------------------------------------------------------------
    delivery_concurrency: int = Field(default=16, ge=1)
    """Sends in flight at once per worker process."""
    jobs_partitions: int = Field(default=12, ge=1)
    """Partitions of ``reminders.jobs`` (created so, or grown to it): the most worker
    processes that can share the jobs, and an even share for 2, 3, 4, 6 or 12 of them."""
    delivery_hold_max: int = Field(default=2000, ge=1)
    """Leases a worker process holds at most, counting jobs waiting for their time."""
    lease_s: float = Field(default=60.0, gt=0)
    """How long a worker owns a reminder it is sending; a dead worker's reminder is
    retried when it runs out. Must exceed the send timeouts."""
    max_attempts: int = Field(default=5, ge=1)
    retry_initial_s: float = Field(default=30.0, gt=0)
    retry_max_s: float = Field(default=3600.0, gt=0)

    # --- email (SMTP) --------------------------------------------------------------------
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_use_tls: bool = False
    """Implicit TLS (SMTPS, usually port 465)."""
    smtp_start_tls: bool | None = None
    """STARTTLS: True requires it, False never, None when the server offers it; required
    whenever ``smtp_username`` is set without ``smtp_use_tls``."""
    smtp_username: str | None = None
    """A login (with ``smtp_password``): it is only ever sent over TLS, implicit or STARTTLS;
    a server that offers neither fails each delivery attempt with an error saying so."""
    smtp_password: SecretStr | None = None
    smtp_timeout_s: float = Field(default=20.0, gt=0)
    smtp_idle_s: float = Field(default=10.0, gt=0)
    """A connection idle for longer is closed and opened anew before the next send."""
    mail_from: str = "Booking reminders <reminders@booking-platform.local>"
    offer_link_template: Annotated[str, AfterValidator(check_offer_link)] = Field(
        default=DEFAULT_OFFER_LINK, min_length=1, max_length=500
    )
    """The link of a waitlist offer's email; ``{slot_id}`` and ``{offer_id}`` are filled in."""

    # --- SMS (HTTP provider) -------------------------------------------------------------
    sms_provider_url: str | None = None
    sms_provider_token: SecretStr | None = None
    sms_timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.sms_enabled and not self.sms_provider_url:
            raise ValueError("sms_enabled needs sms_provider_url")
        if self.lease_s <= max(self.smtp_timeout_s, self.sms_timeout_s):
            raise ValueError("lease_s must be longer than the SMTP and SMS timeouts")
        if self.job_timeout_s <= self.dispatch_ahead_s:
            raise ValueError("job_timeout_s must be longer than dispatch_ahead_s")
        if (
            self.smtp_username is not None
            and not self.smtp_use_tls
            and self.smtp_start_tls is False
        ):
            raise ValueError(
                "smtp_username needs TLS: set smtp_use_tls, or leave smtp_start_tls unset"
            )
        return self

    def schedule(self) -> Schedule:
        offsets: dict[Channel, timedelta] = {}
        if self.email_24h_enabled:
            offsets[Channel.EMAIL_24H] = timedelta(minutes=self.email_24h_before_minutes)
        if self.email_1h_enabled:
            offsets[Channel.EMAIL_1H] = timedelta(minutes=self.email_1h_before_minutes)
        if self.sms_enabled:
            offsets[Channel.SMS] = timedelta(minutes=self.sms_before_minutes)
        return Schedule(offsets)

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            initial=timedelta(seconds=self.retry_initial_s),
            maximum=timedelta(seconds=self.retry_max_s),
        )
