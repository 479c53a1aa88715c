"""The platform on a broker that lets in only TLS with a SCRAM-SHA-512 login, as in production.

The services, the payment stand-in and the test's own lag checks reach the broker of
``secure_kafka`` (its one listener SASL_SSL, a certificate authority of its own) through the
``<PREFIX>KAFKA_SECURITY_PROTOCOL``, ``_SASL_*`` and ``_SSL_CA_FILE`` settings alone: the
fixtures of this module replace the conftest's plaintext broker, stand-in and platform.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest
import pytest_asyncio

from platform_runtime.kafka import KafkaTransport
from platform_tooling.client import Api, expect, next_minute, unique_user, utc_now
from platform_tooling.polling import until
from platform_tooling.standins import MailSink, PaymentStandIn
from tests.support.broker import PrivatePostgres, SecureBroker
from tests.support.platform import Platform, quiet

from .conftest import platform_on


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def payments(secure_kafka: SecureBroker) -> AsyncIterator[PaymentStandIn]:
    standin = PaymentStandIn(
        KafkaTransport(secure_kafka.bootstrap, security=secure_kafka.security())
    )
    await standin.start()
    yield standin
    await standin.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def platform(
    database: PrivatePostgres,
    secure_kafka: SecureBroker,
    mail: MailSink,
    payments: PaymentStandIn,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Platform]:
    running = platform_on(
        database,
        secure_kafka.bootstrap,
        mail,
        Path(tmp_path_factory.mktemp("e2e-secure-logs")),
        kafka_security=secure_kafka.security(),
    )
    try:
        await running.start_roles(workers=1, api_workers=1)
        yield running
    finally:
        running.stop()


async def test_a_booking_is_paid_counted_reminded_cancelled_and_refunded_over_tls_and_scram(
    api: Api, payments: PaymentStandIn, platform: Platform, secure_kafka: SecureBroker
) -> None:
    room = await api.create_room("Secure room", hourly_rate="40.00", currency="EUR")
    slot = await api.custom_slot(room["id"], next_minute(utc_now() + timedelta(hours=48)))
    user = unique_user()

    booking = expect(await api.book(user, slot["id"]), 201)  # booking knows the slot: Kafka
    await api.wait_status(user, booking["id"], "confirmed")  # paid by the stand-in: Kafka

    async def counted() -> bool | None:
        return (await api.slot(slot["id"]))["booked_count"] == 1 or None

    await until(counted, what="timeslots counting the booking")
    await api.wait_reminders(booking["id"], {"email_24h": "pending", "email_1h": "pending"})
    cancelled = await api.cancel(user, booking["id"], reason="plans changed")
    assert cancelled["refund"] == {"amount": "40.00", "currency": "EUR"}

    async def refunded() -> str | None:
        shown = await api.get_booking(user, booking["id"])
        return str(shown["payment_status"]) if shown["payment_status"] == "refunded" else None

    assert await until(refunded, what="the refund made") == "refunded"
    await api.wait_reminders(booking["id"], {"email_24h": "cancelled", "email_1h": "cancelled"})
    assert [r.booking_id for r in payments.refunds] == [UUID(booking["id"])]
    await quiet(platform)  # every consumer group caught up, measured over SASL_SSL too

    logs = "".join(path.read_text() for path in platform.logs.glob("*-worker.log"))
    assert logs.count("connects to Kafka with SASL_SSL (SCRAM-SHA-512 as platform)") == 3
    assert secure_kafka.password.get_secret_value() not in logs
