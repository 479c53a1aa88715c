"""One service process: database, broker, outbox relay, consumers and background loops.

Every service builds a :class:`ServiceRuntime` in its ``create_app(settings)``, registers
its consumers and background loops on it, and gets a FastAPI app whose lifespan starts and
stops all of it in order. Nothing is created at import time, so tests build as many
isolated runtimes as they like.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from fastapi import APIRouter, FastAPI
from sqlalchemy import MetaData, Table
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from booking_contracts.money import utc_now
from platform_runtime import tracing
from platform_runtime.db import asyncpg_dsn, make_engine, make_session_factory
from platform_runtime.http.app import create_service_app
from platform_runtime.http.auth import JwtConfig, JwtVerifier
from platform_runtime.http.context import RequestContext, install_context
from platform_runtime.http.health import Check, database_check, kafka_check
from platform_runtime.http.metrics import Metrics
from platform_runtime.inbox import InboxPurger
from platform_runtime.kafka import KafkaTransport
from platform_runtime.lag import ConsumerLagMonitor
from platform_runtime.messaging import EventConsumer, is_outage
from platform_runtime.outbox import Outbox, OutboxNotifier, OutboxRelay, RelayStats
from platform_runtime.settings import Role, ServiceSettings
from platform_runtime.timing import Clock, RetryPolicy, sleep_unless
from platform_runtime.transactions import SqlTransactions, Stores
from platform_runtime.transport import RecordPublisher, Transport

log = logging.getLogger(__name__)

T = TypeVar("T")

BackgroundLoop = Callable[[asyncio.Event], Awaitable[None]]
"""A coroutine function that runs until the given event is set."""


def jwt_verifier(settings: ServiceSettings) -> JwtVerifier:
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
    return JwtVerifier(
        JwtConfig(
            algorithm=settings.jwt_algorithm,
            secret=secret if settings.jwt_algorithm.startswith("HS") else None,
            public_key=settings.jwt_public_key,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    )


@dataclass(frozen=True)
class Database:
    """The service's PostgreSQL: its engine (traced) and the sessions made on it."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]


def database_of(settings: ServiceSettings) -> Database:
    engine = make_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        application_name=settings.service_name,
    )
    tracing.instrument(engine)
    return Database(engine, make_session_factory(engine))


def kafka_of(settings: ServiceSettings) -> KafkaTransport:
    """The service's broker, with its security and timeouts."""
    return KafkaTransport(
        settings.kafka_bootstrap_servers,
        security=settings.kafka_security(),
        request_timeout_ms=settings.kafka_request_timeout_ms,
    )


def relay_of(
    settings: ServiceSettings,
    database: Database,
    table: Table,
    publisher: RecordPublisher,
    on_stats: Callable[[RelayStats], None],
) -> OutboxRelay:
    return OutboxRelay(
        session_factory=database.sessions,
        table=table,
        publisher=publisher,
        listen_dsn=asyncpg_dsn(settings.database_url),
        batch_size=settings.outbox_batch_size,
        poll_interval_s=settings.outbox_poll_interval_s,
        on_stats=on_stats,
    )


class RelayMetrics:
    """The relay's figures as metrics: the backlog, its oldest row's age, what was published
    (by type) and what was parked on a dead-letter topic."""

    def __init__(self, metrics: Metrics) -> None:
        self._backlog = metrics.gauge("outbox_backlog", "Outbox rows not yet published")
        self._published = metrics.counter(
            "events_published", "Events this service published, by type", ["type"]
        )
        self._published_exported: dict[str, int] = {}
        self._backlog_age = metrics.gauge(
            "outbox_oldest_pending_age_seconds", "Age of the oldest unpublished outbox row"
        )
        self._parked = metrics.counter(
            "outbox_parked",
            "Outbox rows the broker refused for good, sent to the dead-letter topic instead",
        )
        self._parked_exported = 0

    def export(self, stats: RelayStats) -> None:
        self._backlog.set(stats.backlog)
        for event_type, count in stats.published_by_type.items():
            new = count - self._published_exported.get(event_type, 0)
            if new:
                self._published.labels(type=event_type).inc(new)
                self._published_exported[event_type] = count
        self._backlog_age.set(stats.oldest_pending_age_s)
        if stats.parked > self._parked_exported:
            self._parked.inc(stats.parked - self._parked_exported)
            self._parked_exported = stats.parked


def lag_monitor_of(
    settings: ServiceSettings,
    kafka: KafkaTransport,
    metrics: Metrics,
    groups: Sequence[EventConsumer],
) -> ConsumerLagMonitor:
    return ConsumerLagMonitor(
        bootstrap_servers=kafka.bootstrap_servers,
        client_id=f"{settings.service_name}-lag",
        groups=groups,
        gauge=metrics.gauge(
            "kafka_consumer_lag",
            "Records on the topic that the consumer group has not committed yet",
            ["consumer", "topic"],
        ),
        interval_s=settings.metrics_lag_interval_s,
        request_timeout_ms=kafka.request_timeout_ms,
        security=kafka.security,
    )


def inbox_purger_of(
    settings: ServiceSettings, database: Database, table: Table, metrics: Metrics | None
) -> InboxPurger:
    """``metrics``: where to count the purged rows (None: not counted here)."""
    return InboxPurger(
        session_factory=database.sessions,
        tables=[table],
        retention=timedelta(days=settings.inbox_retention_days),
        batch_size=settings.inbox_purge_batch_size,
        interval_s=settings.inbox_purge_interval_s,
        purged=metrics.counter(
            "inbox_rows_purged_total", "Inbox rows deleted once older than the retention", ["table"]
        )
        if metrics is not None
        else None,
    )


class ServiceRuntime:
    """Owns the I/O resources of one service process and their start/stop order."""

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        metadata: MetaData,
        source: str,
        produces: Iterable[str] = (),
        run_relay: bool = True,
        work_queues: Mapping[str, int] | None = None,
        transport: Transport | None = None,
    ) -> None:
        """``work_queues``: topics used as work queues, with their partition count (see
        :func:`platform_runtime.kafka.ensure_topics`). ``transport``: where records go and come
        from; by default the broker of the settings. Another one (the in-memory transport of the
        tests) has no readiness check and no lag monitor: both ask a real broker."""
        self.settings = settings
        self.role = settings.role
        self.work_queues = dict(work_queues or {})
        self.produces = tuple(produces)
        self.run_relay = run_relay
        tracing.configure(settings)
        self.database = database_of(settings)
        self.engine, self.sessions = self.database.engine, self.database.sessions
        self.outbox_table = metadata.tables["outbox"]
        self.inbox_table = metadata.tables["inbox"]
        self.outbox = Outbox(self.outbox_table, source=source)
        self.metrics = Metrics()
        self.kafka: KafkaTransport | None = None
        self.transport: Transport
        if transport is None:
            self.kafka = self.transport = kafka_of(settings)
        else:
            self.transport = transport
        self.broker = (
            None if self.kafka is None else self.kafka.broker(client_id=settings.service_name)
        )
        self.publisher = self.transport.publisher(client_id=f"{settings.service_name}-publisher")
        self.relay = relay_of(
            settings,
            self.database,
            self.outbox_table,
            self.publisher,
            RelayMetrics(self.metrics).export,
        )
        self.notifier = OutboxNotifier(
            asyncpg_dsn(settings.database_url), interval_s=settings.outbox_notify_interval_s
        )
        if self.runs_background and run_relay:
            self.outbox.on_commit = self.relay.wake  # the relay is in this process
        elif self.serves_api:
            self.outbox.on_commit = self.notifier.signal  # wake the worker processes' relays
        self.consumers: list[EventConsumer] = []
        self.lag_monitor = (
            None
            if self.kafka is None
            else lag_monitor_of(settings, self.kafka, self.metrics, self.consumers)
        )
        self.inbox_purger = inbox_purger_of(
            settings,
            self.database,
            self.inbox_table,
            self.metrics if self.runs_background else None,
        )
        self._loops: list[tuple[str, BackgroundLoop]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._intake_stop = asyncio.Event()
        self._intake: set[str] = set()

    @property
    def serves_api(self) -> bool:
        """This process serves the service's HTTP API (roles ``all`` and ``api``)."""
        return self.role is not Role.WORKER

    @property
    def runs_background(self) -> bool:
        """This process runs the relay, consumers and background loops (``all``, ``worker``)."""
        return self.role is not Role.API

    def stores(self, store: Callable[[AsyncSession], T]) -> Stores[AsyncSession, T]:
        """Transactions on the service's database, each seen through ``store`` (the SQL store
        its use cases take)."""
        return Stores(SqlTransactions(self.sessions, self.inbox_table), store)

    def consumer(
        self, name: str, *, permanent_errors: tuple[type[BaseException], ...] = ()
    ) -> EventConsumer:
        """A new consumer group of this service; register handlers with ``.on(Event)``.
        It runs as a background loop that takes batches (see :mod:`platform_runtime.messaging`)."""
        return self._add_consumer(name, permanent_errors=permanent_errors)

    def _retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.settings.consumer_max_attempts,
            initial=timedelta(seconds=self.settings.consumer_backoff_initial_s),
            maximum=timedelta(seconds=self.settings.consumer_backoff_max_s),
        )

    def batch_consumer(self, name: str, *, capacity: Callable[[], int]) -> EventConsumer:
        """A new work-queue consumer group: it takes at most ``capacity()`` records at a
        time and applies each batch with one function; register it with ``.on_batch(...)``."""
        return self._add_consumer(name, capacity=capacity)

    def _add_consumer(
        self,
        name: str,
        *,
        permanent_errors: tuple[type[BaseException], ...] = (),
        capacity: Callable[[], int] | None = None,
    ) -> EventConsumer:
        """A consumer group run as an intake loop: it is stopped before the other loops."""
        consumer = EventConsumer(
            name=name,
            transactions=SqlTransactions(self.sessions, self.inbox_table),
            dead_letters=self.publisher,
            retry=self._retry_policy(),
            permanent_errors=permanent_errors,
            metrics=self.metrics,
            transport=self.transport,
            fetch_max_wait_ms=self.settings.kafka_fetch_max_wait_ms,
            max_records=self.settings.consumer_batch_max_records,
            lanes=self.settings.consumer_lanes,
            capacity=capacity,
        )
        self.consumers.append(consumer)
        self.background(consumer.name, consumer.run)
        self._intake.add(consumer.name)
        return consumer

    def background(self, name: str, loop: BackgroundLoop) -> None:
        """Run ``loop(stop_event)`` while the service runs (sweepers, dispatchers)."""
        self._loops.append((name, loop))

    @property
    def topics(self) -> list[str]:
        consumed = {topic for c in self.consumers for topic in c.topics}
        return sorted(consumed | set(self.produces))

    async def start(self) -> None:
        self._refuse_insecure_settings()
        self._stop.clear()
        self._intake_stop.clear()
        if not self.runs_background:
            self._tasks = [
                asyncio.create_task(
                    self._supervise("outbox-notifier", self.notifier.run, self._stop),
                    name="outbox-notifier",
                )
            ]
            log.info("%s started: HTTP API only", self.settings.service_name)
            return
        await self.transport.ensure_topics(
            self.topics,
            partitions=self.settings.kafka_topic_partitions,
            replication_factor=self.settings.kafka_replication_factor,
            work_queues=self.work_queues,
        )
        if self.broker is not None:  # for the readiness check (consumers have their own clients)
            await self.broker.start()
        loops = list(self._loops)
        if self.run_relay:
            loops.insert(0, ("outbox-relay", self.relay.run))
        if self.consumers and self.lag_monitor is not None:
            loops.append(("kafka-consumer-lag", self.lag_monitor.run))
        loops.append(("inbox-purge", self.inbox_purger.run))
        self._tasks = [
            asyncio.create_task(
                self._supervise(
                    name, loop, self._intake_stop if name in self._intake else self._stop
                ),
                name=name,
            )
            for name, loop in loops
        ]
        log.info("%s started: topics %s", self.settings.service_name, ", ".join(self.topics))

    def _refuse_insecure_settings(self) -> None:
        """Raise :class:`~platform_runtime.settings.InsecureSettings` rather than serve the API with
        the public development secret outside development; say so loudly when development
        allows it."""
        self.settings.check_serving()
        if self.runs_background:
            self.settings.check_kafka_security()
            log.info(
                "%s connects to Kafka with %s",
                self.settings.service_name,
                self.settings.kafka_security().describe(),
            )
        if self.serves_api and self.settings.uses_dev_jwt_secret:
            log.warning(
                "%s accepts tokens signed with the public development JWT secret "
                "(development is on): never let anyone but developers reach it",
                self.settings.service_name,
            )

    async def stop(self) -> None:
        """Consumers first (no new work comes in), then the loops that do the work (they may
        finish or hand back what they hold), then the connections."""
        for consumer in self.consumers:
            consumer.stop()
        self._intake_stop.set()
        intake = [task for task in self._tasks if task.get_name() in self._intake]
        if intake:
            await asyncio.wait(intake, timeout=10)
        self._stop.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.broker is not None:
            with contextlib.suppress(Exception):
                await self.broker.stop()
        await self.publisher.stop()
        await self.engine.dispose()

    async def _supervise(self, name: str, loop: BackgroundLoop, stop: asyncio.Event) -> None:
        """Restart a background loop that crashed, after a pause, until ``stop``."""
        while not stop.is_set():
            try:
                await loop(stop)
            except Exception:
                log.exception("background loop %s crashed; restarting in 1s", name)
                await sleep_unless(stop, 1.0)
            else:
                return

    def checks(self) -> dict[str, Check]:
        """What readiness depends on: an API-only process needs its database alone."""
        checks = {"database": database_check(self.engine)}
        if self.runs_background and self.broker is not None:
            checks["kafka"] = kafka_check(self.broker.ping)
        return checks

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    def create_app(
        self,
        *,
        title: str,
        version: str,
        description: str | None = None,
        problem_mapping: Mapping[type[Exception], int] | None = None,
        routers: Iterable[APIRouter] = (),
        config: object = None,
        clock: Clock = utc_now,
    ) -> FastAPI:
        """The service's app: ``routers`` are its API, left out of a ``worker`` process
        (which serves health and metrics only); its routes get the runtime, ``config`` (the
        service's rules) and ``clock`` through ``platform_runtime.http.context.request_context``."""
        app = create_service_app(
            title=title,
            version=version,
            description=description,
            verifier=jwt_verifier(self.settings),
            metrics=self.metrics,
            checks=self.checks(),
            lifespan=self.lifespan,
            problem_mapping=problem_mapping or {},
            unavailable=is_outage,
            max_body_bytes=self.settings.http_max_body_bytes,
            expose_docs=self.settings.http_docs_enabled,
            expose_metrics=self.settings.http_metrics_enabled,
            traced=self.settings.tracing_enabled,
        )
        if self.serves_api:
            for router in routers:
                app.include_router(router)
        install_context(app, RequestContext(runtime=self, config=config, clock=clock))
        return app
