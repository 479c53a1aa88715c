"""The kernel's Kafka clients against a broker that lets in only TLS with a SCRAM-SHA-512 login.

``secure_kafka`` is a broker of its own (:class:`tests.support.broker.SecureBroker`): its one
client listener is SASL_SSL, its certificate is signed by an authority made for the session.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
from aiokafka.errors import GroupCoordinatorNotAvailableError, KafkaConnectionError
from sqlalchemy import insert, select

from booking_contracts.envelope import Envelope
from platform_runtime.db import make_engine
from platform_runtime.http.metrics import Metrics
from platform_runtime.kafka import KafkaPublisher, KafkaTransport, ensure_topics
from platform_runtime.kafka_security import KafkaSecurity, SecurityProtocol
from platform_runtime.lag import ConsumerLagMonitor
from platform_runtime.messaging import EventConsumer, EventContext
from platform_runtime.outbox import OutboundRecord
from platform_runtime.service import ServiceRuntime
from platform_runtime.settings import ServiceSettings
from platform_runtime.transactions import SqlTransactions
from platform_tooling.polling import eventually
from tests.support.broker import SecureBroker
from tests.support.fixtures import CreateDatabase
from tests.support.service import bearer, running

from .conftest import Db, KernelTestEvent, effects, inbox, metadata
from .helpers import consuming, effect_notes

REFUSED_WITHIN_S = 30


def records(topic: str, *notes: str) -> list[OutboundRecord]:
    out = []
    for note in notes:
        envelope = Envelope.wrap(KernelTestEvent(order_id=uuid.uuid4(), note=note), source="/t")
        out.append(
            OutboundRecord(
                topic=topic,
                key=envelope.subject or note,
                value=envelope.to_json_bytes(),
                headers=envelope.headers(),
            )
        )
    return out


async def test_the_publisher_a_consumer_and_the_lag_monitor_work_over_tls_with_a_scram_login(
    secure_kafka: SecureBroker, db: Db, unique: Callable[[str], str]
) -> None:
    security = secure_kafka.security()
    topic, group = unique("secure"), unique("secure-group")
    KernelTestEvent.topic = topic
    assert await ensure_topics(secure_kafka.bootstrap, [topic], security=security) == [
        topic,
        f"{topic}.dlq",
    ]
    publisher = KafkaPublisher(secure_kafka.bootstrap, client_id=group, security=security)
    consumer = EventConsumer(
        name=group,
        transactions=SqlTransactions(db.sessions, inbox),
        dead_letters=publisher,
        transport=KafkaTransport(secure_kafka.bootstrap, security=security),
    )

    @consumer.on(KernelTestEvent)
    async def apply(event: KernelTestEvent, ctx: EventContext) -> None:
        await ctx.session.execute(insert(effects).values(order_id=event.order_id, note=event.note))

    metrics = Metrics()
    gauge = metrics.gauge("kafka_consumer_lag", "lag", ["consumer", "topic"])
    monitor = ConsumerLagMonitor(
        bootstrap_servers=secure_kafka.bootstrap,
        client_id=f"{group}-lag",
        groups=[consumer],
        gauge=gauge,
        interval_s=60,
        security=security,
    )

    async def lag() -> float | None:
        try:
            await monitor.measure()
        except GroupCoordinatorNotAvailableError:  # a fresh broker makes its offsets topic
            return None
        return float(gauge.labels(consumer=group, topic=topic)._value.get())

    try:
        await publisher.send_batch(records(topic, "one", "two", "three"))
        lag_before = await eventually(lag, lambda value: value is not None)
        async with consuming(consumer):
            notes = await eventually(lambda: effect_notes(db), lambda n: len(n) == 3)
            lag_after = await eventually(lag, lambda value: value == 0)
    finally:
        await monitor._disconnect()
        await publisher.stop()

    assert sorted(notes) == ["one", "three", "two"]
    assert (lag_before, lag_after) == (3, 0)


async def test_a_whole_service_runs_on_the_broker_from_its_settings(
    secure_kafka: SecureBroker, create_database: CreateDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relay, consumer, topic creation, lag monitor and the FastStream broker of the
    readiness check, all configured by the ``<PREFIX>KAFKA_*`` settings alone."""
    url = await create_database("secure_runtime")
    engine = make_engine(url, pool_size=1)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    await engine.dispose()
    for name, value in secure_kafka.settings_env("KERNEL_").items():
        monkeypatch.setenv(name, value)

    class KernelSettings(ServiceSettings):
        model_config = {**ServiceSettings.model_config, "env_prefix": "KERNEL_"}

    settings = KernelSettings(
        service_name="kernel-secure", database_url=url, development=True, metrics_lag_interval_s=0.2
    )
    assert settings.kafka_security_protocol is SecurityProtocol.SASL_SSL
    assert secure_kafka.password.get_secret_value() not in repr(settings)
    topic = f"kernel-secure-{uuid.uuid4().hex[:8]}"
    KernelTestEvent.topic = topic
    runtime = ServiceRuntime(settings, metadata=metadata, source="/kernel-secure", produces=[topic])
    group = f"kernel-secure-{uuid.uuid4().hex[:8]}"

    @runtime.consumer(group).on(KernelTestEvent)
    async def apply(event: KernelTestEvent, ctx: EventContext) -> None:
        await ctx.session.execute(
            insert(effects).values(order_id=event.order_id, note=f"consumed:{event.note}")
        )

    app = runtime.create_app(title="Kernel secure", version="1")

    @app.post("/orders", status_code=201)
    async def place_order() -> None:
        async with runtime.sessions() as session, session.begin():
            order = KernelTestEvent(order_id=uuid.uuid4(), note="secure")
            await runtime.outbox.add(session, order)

    async def notes() -> list[str]:
        async with runtime.sessions() as session:
            return list((await session.scalars(select(effects.c.note))).all())

    async with running(app) as client:
        placed = await client.post("/orders", headers=bearer("alice"))
        consumed = await eventually(notes, lambda n: "consumed:secure" in n)
        ready = (await client.get("/health/ready")).json()
        lag_line = f'kafka_consumer_lag{{consumer="{group}",topic="{topic}"}} 0.0'

        async def metrics_text() -> str:
            return (await client.get("/metrics")).text

        metrics = await eventually(metrics_text, lambda text: lag_line in text)

    assert placed.status_code == 201
    assert consumed == ["consumed:secure"]
    assert ready["checks"] == {"database": "ok", "kafka": "ok"}
    assert lag_line in metrics


async def test_a_client_with_a_wrong_password_is_refused(
    secure_kafka: SecureBroker, unique: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    wrong = secure_kafka.security(password="not-the-password")
    publisher = KafkaPublisher(
        secure_kafka.bootstrap, client_id="intruder", security=wrong, timeout_s=REFUSED_WITHIN_S
    )

    with pytest.raises(KafkaConnectionError):
        await ensure_topics(secure_kafka.bootstrap, [unique("intruder")], security=wrong)
    with pytest.raises(KafkaConnectionError):
        await publisher.send(unique("intruder"), key=b"k", value=b"{}", headers={})
    await publisher.stop()

    assert caplog.text.count("SaslAuthenticationFailed") >= 2
    assert "not-the-password" not in caplog.text


@pytest.mark.parametrize(
    "security",
    [
        pytest.param(KafkaSecurity(), id="plaintext"),
        pytest.param(KafkaSecurity(protocol=SecurityProtocol.SSL), id="tls-without-login"),
    ],
)
async def test_a_client_without_tls_or_without_a_login_cannot_talk_to_the_broker(
    secure_kafka: SecureBroker,
    unique: Callable[[str], str],
    security: KafkaSecurity,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if security.protocol is SecurityProtocol.SSL:
        security = KafkaSecurity(
            protocol=SecurityProtocol.SSL, ssl_ca_file=str(secure_kafka.ca_file)
        )

    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(
            ensure_topics(secure_kafka.bootstrap, [unique("plain")], security=security),
            REFUSED_WITHIN_S,
        )

    assert f"Connection at {secure_kafka.bootstrap} closed" in caplog.text


async def test_a_client_that_does_not_trust_the_brokers_authority_is_refused(
    secure_kafka: SecureBroker, unique: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    """Without the test authority's certificate, the broker's certificate does not verify
    (the system's authorities are used), so the password is never sent."""
    untrusting = KafkaSecurity(
        protocol=SecurityProtocol.SASL_SSL,
        username=secure_kafka.username,
        password=secure_kafka.password,
    )

    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(
            ensure_topics(secure_kafka.bootstrap, [unique("untrusting")], security=untrusting),
            REFUSED_WITHIN_S,
        )

    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
    assert "SaslAuthenticationFailed" not in caplog.text
