"""The whole platform as real processes, for end-to-end tests, fault tests and benchmarks.

Each service runs as ``python -m <service> serve`` (HTTP server, consumers, relay and
background loops in one process), on a database of its own created and migrated here,
against the Kafka broker given. Any service can run as several replicas (same consumer
groups), and any replica can be killed (``SIGKILL``) and started again.

A replica can also run one role of the service (``serve --role api --workers N``: the HTTP
API alone in N uvicorn worker processes; ``serve --role worker``: relay, consumers and
background loops, with health and metrics only): :meth:`Platform.add_replica` with ``role=``,
or :meth:`Platform.start_roles` for one API process and N worker processes per service, the
layout production runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from booking_contracts import topics as event_topics
from platform_runtime.db import asyncpg_dsn
from platform_runtime.kafka_security import PLAINTEXT, KafkaSecurity, SecurityProtocol
from platform_runtime.lag import consumer_lag
from platform_runtime.migrations import upgrade
from tests.support.ports import free_port
from tests.support.threads import in_thread

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("timeslots", "booking", "reminders")
CONSUMER_GROUPS = {  # group -> the topics it reads
    "timeslots-booking-counts": [event_topics.BOOKING_EVENTS],
    "booking-inventory": [event_topics.TIMESLOTS_EVENTS],
    "booking-payments": [event_topics.PAYMENT_EVENTS],
    "reminders-bookings": [event_topics.BOOKING_EVENTS],
    "reminders-delivery": [event_topics.REMINDER_JOBS],
}


def alembic_ini(service: str) -> Path:
    return REPO / "services" / service / "alembic.ini"


FAST = {
    "OUTBOX_POLL_INTERVAL_S": "0.2",
    "KAFKA_FETCH_MAX_WAIT_MS": "20",
    "CONSUMER_BACKOFF_INITIAL_S": "0.05",
    "LOG_LEVEL": "INFO",
}
"""Settings every service gets here (short polls: tests should not wait on timers)."""

DEVELOPMENT = {"DEVELOPMENT": "true"}
"""Every service here runs as on a development machine: its API accepts tokens signed with
the development secret (``platform_runtime.settings.DEV_JWT_SECRET``), as the tests' tokens are."""


ROLES = ("all", "api", "worker")
"""What ``serve --role`` accepts (``platform_runtime.settings.Role``)."""

STARTED = b"Application startup complete"
"""What uvicorn logs once a serving process has started its app."""


@dataclass
class Replica:
    service: str
    index: int
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    role: str | None = None
    """``serve --role``: None runs ``serve`` without it (the service's default, ``all``)."""
    workers: int = 1
    """``serve --workers`` (uvicorn worker processes; more than 1 only for ``api``)."""
    args: Sequence[str] = ()
    """Further arguments of ``serve``."""
    _log_start: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def name(self) -> str:
        return f"{self.service}-{self.index}" + (f" ({self.role})" if self.role else "")

    @property
    def serves_api(self) -> bool:
        """Whether this replica serves the service's HTTP API (not only health and metrics)."""
        return self.role != "worker"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def own_session(self) -> bool:
        """A replica with worker processes runs in a session of its own, so that ``kill``
        reaches the workers too (a killed uvicorn supervisor leaves them serving)."""
        return self.workers > 1

    def command(self) -> list[str]:
        command = [sys.executable, "-m", self.service, "serve", "--port", str(self.port)]
        if self.role is not None:
            command += ["--role", self.role]
        if self.workers != 1:
            command += ["--workers", str(self.workers)]
        return command + list(self.args)

    def start(self) -> None:
        self._log_start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                self.command(),
                env=self.env,
                cwd=REPO,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=self.own_session,
            )

    def started_processes(self) -> int:
        """Serving processes that have started their app since the last :meth:`start`."""
        try:
            with self.log.open("rb") as log:
                log.seek(self._log_start)
                return log.read().count(STARTED)
        except OSError:
            return 0

    def kill(self) -> None:
        """``kill -9``: no shutdown of any kind (of the worker processes too)."""
        if self.process is not None and self.process.poll() is None:
            if self.own_session:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
            else:
                self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def terminate(self, timeout_s: float = 30.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.own_session:
            # worker processes that outlived their supervisor
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    async def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                if not self.running:
                    raise RuntimeError(f"{self.name} exited; see {self.log}")
                try:
                    response = await client.get(f"{self.url}/health/ready")
                    # with worker processes: once every one of them has started its app
                    if response.status_code == 200 and (
                        self.workers == 1 or self.started_processes() >= self.workers
                    ):
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.name} not ready; see {self.log}")
                await asyncio.sleep(0.2)


@dataclass
class Platform:
    """Three services (each as one or more replicas) on their own databases."""

    postgres_dsn: str
    kafka: str
    logs: Path
    settings: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Per service: extra settings without the prefix (``{"booking": {"HOLD_MINUTES": "1"}}``)."""
    kafka_security: KafkaSecurity = PLAINTEXT
    """How the services (and :func:`quiet`) connect to ``kafka``."""
    databases: dict[str, str] = field(default_factory=dict)
    replicas: dict[str, list[Replica]] = field(default_factory=dict)

    def database_url(self, service: str) -> str:
        return self.databases[service]

    async def create_databases(self) -> None:
        admin = await asyncpg.connect(f"{self.postgres_dsn}/postgres")
        try:
            for service in SERVICES:
                name = f"e2e_{service}_{uuid.uuid4().hex[:8]}"
                await admin.execute(f'CREATE DATABASE "{name}"')
                url = f"{self.postgres_dsn.replace('postgresql://', 'postgresql+asyncpg://', 1)}"
                self.databases[service] = f"{url}/{name}"
        finally:
            await admin.close()
        for service in SERVICES:
            await in_thread(upgrade, alembic_ini(service), self.databases[service])

    async def drop_databases(self) -> None:
        admin = await asyncpg.connect(f"{self.postgres_dsn}/postgres")
        try:
            for url in self.databases.values():
                name = url.rsplit("/", 1)[1]
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    def env(self, service: str) -> dict[str, str]:
        prefix = service.upper() + "_"
        values = FAST | {
            "DATABASE_URL": self.databases[service],
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka,
        }
        values |= security_settings(self.kafka_security)
        values |= DEVELOPMENT | dict(self.settings.get(service, {}))
        clean = {k: v for k, v in os.environ.items() if not k.startswith(prefix)}
        return clean | {prefix + k: v for k, v in values.items()}

    def add_replica(
        self,
        service: str,
        *,
        role: str | None = None,
        workers: int = 1,
        args: Sequence[str] = (),
    ) -> Replica:
        """Start one more process of ``service``: ``serve`` as it is by default, or one
        ``role`` of it (``api`` with ``workers`` uvicorn worker processes, ``worker``)."""
        if role is not None and role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        if workers < 1:
            raise ValueError("workers must be at least 1")
        replicas = self.replicas.setdefault(service, [])
        index = len(replicas)
        replica = Replica(
            service=service,
            index=index,
            env=self.env(service),
            log=self.logs
            / (f"{service}-{index}.log" if role is None else f"{service}-{index}-{role}.log"),
            role=role,
            workers=workers,
            args=tuple(args),
        )
        replicas.append(replica)
        replica.start()
        return replica

    async def start(self, replicas: int = 1) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        if not self.databases:
            await self.create_databases()
        for service in SERVICES:
            for _ in range(replicas):
                self.add_replica(service)
        await self.wait_ready()

    async def start_roles(self, *, workers: int = 1, api_workers: int = 2) -> None:
        """Per service one API process (``serve --role api --workers api_workers``) and
        ``workers`` worker processes (``serve --role worker``: their consumer groups share
        the partitions)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        if not self.databases:
            await self.create_databases()
        for service in SERVICES:
            self.add_replica(service, role="api", workers=api_workers)
            for _ in range(workers):
                self.add_replica(service, role="worker")
        await self.wait_ready()

    async def wait_ready(self) -> None:
        await asyncio.gather(
            *(r.wait_ready() for rs in self.replicas.values() for r in rs if r.running)
        )

    def url(self, service: str, replica: int = 0) -> str:
        return self.replicas[service][replica].url

    def api_url(self, service: str) -> str:
        """The first replica of ``service`` that serves its HTTP API."""
        for replica in self.replicas[service]:
            if replica.serves_api:
                return replica.url
        raise LookupError(f"no replica of {service} serves its API")

    def stop(self) -> None:
        for replicas in self.replicas.values():
            for replica in replicas:
                replica.terminate()


def security_settings(security: KafkaSecurity) -> dict[str, str]:
    """The ``KAFKA_*`` settings (without a service's prefix) that give a service ``security``."""
    if security.protocol is SecurityProtocol.PLAINTEXT:
        return {}
    values = {
        "KAFKA_SECURITY_PROTOCOL": str(security.protocol),
        "KAFKA_SASL_MECHANISM": str(security.sasl_mechanism),
        "KAFKA_SASL_USERNAME": security.username,
        "KAFKA_SASL_PASSWORD": security.password.get_secret_value() if security.password else None,
        "KAFKA_SSL_CA_FILE": security.ssl_ca_file,
        "KAFKA_SSL_CERT_FILE": security.ssl_cert_file,
        "KAFKA_SSL_KEY_FILE": security.ssl_key_file,
    }
    return {name: value for name, value in values.items() if value}


async def group_lag(
    kafka: str, group: str, topic: str, *, security: KafkaSecurity = PLAINTEXT
) -> int:
    """Records of ``topic`` the group has not committed yet (the services' own measure)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka, **security.client_options())
    offsets = AIOKafkaConsumer(bootstrap_servers=kafka, **security.client_options())
    try:
        await admin.start()
        await offsets.start()
        lag = await consumer_lag(admin, offsets, group=group, topics=[topic])
    finally:
        await offsets.stop()
        await admin.close()
    if topic not in lag:
        raise AssertionError(f"{topic} does not exist")
    return lag[topic]


async def _relayed(platform: Platform) -> bool:
    for service in SERVICES:
        connection = await asyncpg.connect(asyncpg_dsn(platform.database_url(service)))
        try:
            if await connection.fetchval("SELECT 1 FROM outbox WHERE published_at IS NULL LIMIT 1"):
                return False
        finally:
            await connection.close()
    return True


async def _caught_up(platform: Platform) -> bool:
    for group, topics in CONSUMER_GROUPS.items():
        for topic in topics:
            if await group_lag(platform.kafka, group, topic, security=platform.kafka_security):
                return False
    return True


async def quiet(platform: Platform, *, timeout_s: float = 90.0) -> None:
    """Until every outbox is relayed and then every consumer group has caught up: nothing the
    platform was told is still travelling between its services."""
    deadline = time.monotonic() + timeout_s
    for done, what in ((_relayed, "every outbox relayed"), (_caught_up, "every group caught up")):
        while not await done(platform):
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout_s:g}s for {what}")
            await asyncio.sleep(0.1)
