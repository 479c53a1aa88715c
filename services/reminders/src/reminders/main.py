"""Wiring of the reminders service: ``create_app(settings)`` is the only entry point.

One process may run any of the three parts (settings ``scheduler_enabled``,
``dispatcher_enabled``, ``worker_enabled``); ``reminders serve`` runs all three by default and
``reminders worker`` only the delivery workers.
"""

from __future__ import annotations

from datetime import timedelta
from importlib.metadata import version

from fastapi import FastAPI

from booking_contracts import topics
from booking_contracts.catalogue import ReminderDue
from booking_contracts.money import utc_now
from platform_runtime.service import ServiceRuntime
from platform_runtime.timing import Clock
from platform_runtime.transport import Transport
from reminders import api, consumers, delivery, domain, models
from reminders.dispatcher import Dispatcher
from reminders.senders import SmsConfig, SmtpConfig
from reminders.settings import RemindersSettings
from reminders.store import SqlStore

VERSION = version("reminders-service")
"""The service's version, from its package metadata (its ``pyproject.toml``)."""


PROBLEM_STATUSES: dict[type[Exception], int] = {domain.BookingNotFound: 404}


def smtp_config(settings: RemindersSettings) -> SmtpConfig:
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    return SmtpConfig(
        host=settings.smtp_host,
        port=settings.smtp_port,
        use_tls=settings.smtp_use_tls,
        start_tls=settings.smtp_start_tls,
        username=settings.smtp_username,
        password=password,
        timeout_s=settings.smtp_timeout_s,
        idle_s=settings.smtp_idle_s,
    )


def sms_config(settings: RemindersSettings) -> SmsConfig | None:
    if not settings.sms_provider_url:
        return None
    token = settings.sms_provider_token
    return SmsConfig(
        url=settings.sms_provider_url,
        token=token.get_secret_value() if token else None,
        timeout_s=settings.sms_timeout_s,
    )


def create_runtime(
    settings: RemindersSettings, *, clock: Clock = utc_now, transport: Transport | None = None
) -> ServiceRuntime:
    """The service's runtime; ``transport``: its broker, by default the one of the settings."""
    runtime = ServiceRuntime(
        settings,
        metadata=models.metadata,
        source="/reminders",
        produces=[topics.REMINDER_JOBS, topics.REMINDER_EVENTS],
        work_queues={topics.REMINDER_JOBS: settings.jobs_partitions},
        transport=transport,
    )
    if settings.scheduler_enabled:
        consumers.register(
            runtime.consumer(consumers.CONSUMER, permanent_errors=(domain.ImpossibleBooking,)),
            SqlStore,
            settings.schedule(),
            runtime.metrics.counter(
                "reminders_scheduled_total", "Reminders scheduled by channel", ["channel"]
            ),
            clock,
        )
    if settings.dispatcher_enabled:
        dispatcher = Dispatcher(
            stores=runtime.stores(SqlStore),
            outbox=runtime.outbox,
            clock=clock,
            batch_size=settings.dispatch_batch_size,
            interval_s=settings.dispatch_interval_s,
            job_timeout=timedelta(seconds=settings.job_timeout_s),
            ahead=timedelta(seconds=settings.dispatch_ahead_s),
            dispatched=runtime.metrics.counter(
                "reminders_dispatched_total",
                "Due reminders handed to the workers (queued) or dropped as too late",
                ["outcome"],
            ),
        )
        runtime.background("dispatcher", dispatcher.run)
    if settings.worker_enabled:
        worker = delivery.Delivery(
            stores=runtime.stores(SqlStore),
            outbox=runtime.outbox,
            clock=clock,
            policy=settings.retry_policy(),
            smtp=smtp_config(settings),
            sms=sms_config(settings),
            mail_from=settings.mail_from,
            metrics=runtime.metrics,
            offer_link=settings.offer_link_template,
            lease=timedelta(seconds=settings.lease_s),
            concurrency=settings.delivery_concurrency,
            hold_max=settings.delivery_hold_max,
        )
        jobs = runtime.batch_consumer(delivery.CONSUMER, capacity=worker.room)
        jobs.on_batch(ReminderDue, worker.take, worker.hand_out)
        runtime.background("delivery", worker.run)
    return runtime


def create_app(
    settings: RemindersSettings | None = None,
    *,
    clock: Clock = utc_now,
    transport: Transport | None = None,
) -> FastAPI:
    runtime = create_runtime(settings or RemindersSettings(), clock=clock, transport=transport)
    app = runtime.create_app(
        title="Reminders service",
        version=VERSION,
        description=(
            "Email and SMS reminders of confirmed bookings: scheduled from booking events, "
            "dispatched when due, delivered exactly once by a scalable group of workers."
        ),
        problem_mapping=PROBLEM_STATUSES,
        routers=[api.router],
        clock=clock,
    )
    return app
