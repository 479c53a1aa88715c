"""The whole platform as real processes, for end-to-end tests, fault tests and benchmarks.

Each service runs as ``python -m <service> serve`` (HTTP server, consumers, relay and
background loops: exactly what production runs), on a database of its own created and
migrated here, against the Kafka broker given. Any service can run as several replicas (same
consumer groups), and any replica can be killed (``SIGKILL``) and started again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from shared.db import asyncpg_dsn
from shared.events import topics as event_topics
from shared.lag import consumer_lag
from shared.migrations import upgrade

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("timeslots", "booking", "reminders")
CONSUMER_GROUPS = {  # group -> the topics it reads
    "timeslots-booking-counts": [event_topics.BOOKING_EVENTS],
    "booking-inventory": [event_topics.TIMESLOTS_EVENTS],
    "booking-payments": [event_topics.PAYMENT_EVENTS],
    "reminders-bookings": [event_topics.BOOKING_EVENTS],
    "reminders-delivery": [event_topics.REMINDER_JOBS],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alembic_ini(service: str) -> Path:
    return REPO / "services" / service / "alembic.ini"


FAST = {
    "OUTBOX_POLL_INTERVAL_S": "0.2",
    "KAFKA_FETCH_MAX_WAIT_MS": "20",
    "CONSUMER_BACKOFF_INITIAL_S": "0.05",
    "LOG_LEVEL": "INFO",
}
"""Settings every service gets here (short polls: tests should not wait on timers)."""


@dataclass
class Replica:
    service: str
    index: int
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.service, "serve", "--port", str(self.port)],
                env=self.env,
                cwd=REPO,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """``kill -9``: no shutdown of any kind."""
        if self.process is not None and self.process.poll() is None:
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

    async def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                if not self.running:
                    raise RuntimeError(f"{self.service}-{self.index} exited; see {self.log}")
                try:
                    response = await client.get(f"{self.url}/health/ready")
                    if response.status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.service}-{self.index} not ready; see {self.log}")
                await asyncio.sleep(0.2)


@dataclass
class Platform:
    """Three services (each as one or more replicas) on their own databases."""

    postgres_dsn: str
    kafka: str
    logs: Path
    settings: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Per service: extra settings without the prefix (``{"booking": {"HOLD_MINUTES": "1"}}``)."""
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
            await asyncio.to_thread(upgrade, alembic_ini(service), self.databases[service])

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
        values |= dict(self.settings.get(service, {}))
        clean = {k: v for k, v in os.environ.items() if not k.startswith(prefix)}
        return clean | {prefix + k: v for k, v in values.items()}

    def add_replica(self, service: str) -> Replica:
        replicas = self.replicas.setdefault(service, [])
        replica = Replica(
            service=service,
            index=len(replicas),
            env=self.env(service),
            log=self.logs / f"{service}-{len(replicas)}.log",
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

    async def wait_ready(self) -> None:
        await asyncio.gather(
            *(r.wait_ready() for rs in self.replicas.values() for r in rs if r.running)
        )

    def url(self, service: str, replica: int = 0) -> str:
        return self.replicas[service][replica].url

    def stop(self) -> None:
        for replicas in self.replicas.values():
            for replica in replicas:
                replica.terminate()


async def group_lag(kafka: str, group: str, topic: str) -> int:
    """Records of ``topic`` the group has not committed yet (the services' own measure)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    offsets = AIOKafkaConsumer(bootstrap_servers=kafka)
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
            if await group_lag(platform.kafka, group, topic):
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
