"""The platform for end-to-end tests, one per test module: a Kafka broker and a PostgreSQL
server of its own (fresh topics, consumer groups and databases, and free to stop and start),
the three services as real processes (``REPLICAS`` of each, a module-level constant, default
1), the payment service stand-in, and a mail server that keeps what it receives."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import pytest
import pytest_asyncio

from platform_runtime.kafka import KafkaTransport
from platform_runtime.kafka_security import PLAINTEXT, KafkaSecurity
from platform_tooling.client import Api, connect
from platform_tooling.standins import MailSink, PaymentStandIn
from tests.support.broker import PrivateBroker, PrivatePostgres, private_broker, private_postgres
from tests.support.platform import Platform
from tests.support.ports import free_port

SETTINGS = {
    "reminders": {"DISPATCH_INTERVAL_S": "0.2", "SMTP_TIMEOUT_S": "5", "SMTP_IDLE_S": "2"},
    "booking": {"EXPIRY_INTERVAL_S": "0.2"},
}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateBroker]:
    kafka = private_broker(tmp_path_factory.mktemp("e2e-kafka"))
    kafka.start()
    yield kafka
    kafka.stop()


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivatePostgres]:
    server = private_postgres(tmp_path_factory.mktemp("e2e-postgres"))
    server.start()
    yield server
    server.stop()
    server.remove()


@pytest.fixture(scope="module")
def mail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailSink]:
    sink = MailSink(port=free_port(), directory=tmp_path_factory.mktemp("e2e-mail"))
    sink.start()
    yield sink
    sink.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def payments(broker: PrivateBroker) -> AsyncIterator[PaymentStandIn]:
    standin = PaymentStandIn(KafkaTransport(broker.bootstrap))
    await standin.start()
    yield standin
    await standin.stop()


def platform_on(
    database: PrivatePostgres,
    bootstrap: str,
    mail: MailSink,
    logs: Path,
    *,
    kafka_security: KafkaSecurity = PLAINTEXT,
    extra: Mapping[str, Mapping[str, str]] | None = None,
) -> Platform:
    """The three services (not started yet) on ``database`` and the broker at ``bootstrap``,
    sending their mail to ``mail``; ``extra``: more settings per service."""
    settings = {k: dict(v) for k, v in SETTINGS.items()}
    settings["reminders"] |= {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(mail.port)}
    for service, values in (extra or {}).items():
        settings.setdefault(service, {}).update(values)
    return Platform(
        postgres_dsn=database.dsn,
        kafka=bootstrap,
        logs=logs,
        settings=settings,
        kafka_security=kafka_security,
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def platform(
    request: pytest.FixtureRequest,
    database: PrivatePostgres,
    broker: PrivateBroker,
    mail: MailSink,
    payments: PaymentStandIn,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Platform]:
    running = platform_on(
        database, broker.bootstrap, mail, Path(tmp_path_factory.mktemp("e2e-logs"))
    )
    try:
        await running.start(replicas=getattr(request.module, "REPLICAS", 1))
        yield running
    finally:
        running.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def api(platform: Platform) -> AsyncIterator[Api]:
    async with connect(
        platform.url("timeslots"), platform.url("booking"), platform.url("reminders")
    ) as client:
        yield client
