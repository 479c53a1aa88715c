"""An SMTP login travels only over TLS: a server that offers no encryption gets no ``AUTH``,
one that offers STARTTLS gets the login once the connection is encrypted."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from reminders.senders import SmtpConfig, SmtpConnection
from tests.support.brokers import Broker
from tests.support.fixtures import CreateDatabase
from tests.support.senders import SmsProvider, SmtpSink, self_signed_tls

from .conftest import Service, serve

HOUR = timedelta(hours=1)
SECOND = timedelta(seconds=1)


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    """A server that invites a login on its unencrypted connection and has no STARTTLS."""
    sink = SmtpSink(offer_login=True)
    sink.start()
    yield sink
    sink.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(
    create_database: CreateDatabase, broker: Broker, smtp: SmtpSink, sms: SmsProvider
) -> AsyncIterator[Service]:
    async with serve(
        create_database, broker, smtp, sms, smtp_username="reminders", smtp_password="s3cret"
    ) as running_service:
        yield running_service


async def test_a_login_is_never_sent_to_a_server_that_offers_no_starttls(
    service: Service,
) -> None:
    start = service.day()
    booking = service.confirmed(start)
    service.clock.set(start - 3 * HOUR)
    await service.confirm(booking, expect=1)

    service.clock.set(start - HOUR - SECOND)

    async def attempted() -> dict[str, Any] | None:
        row = (await service.by_kind(booking.booking_id))["email_1h"]
        return row if row["last_error"] or row["status"] == "sent" else None

    row = await service.until(attempted)

    assert row["status"] != "sent"
    assert row["last_error"] == (
        f"PlaintextLoginRefused: the SMTP server 127.0.0.1:{service.smtp.port} does not offer "
        "STARTTLS, and the login is never sent unencrypted: use implicit TLS "
        "(REMINDERS_SMTP_USE_TLS=true) or a server that offers STARTTLS"
    )
    assert service.smtp.logins == []  # no AUTH command reached the server
    assert service.smtp.received == []


async def test_a_login_goes_over_starttls_when_the_server_offers_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context, certificate = self_signed_tls(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate))  # the client trusts this server
    sink = SmtpSink(tls=context, offer_login=True)
    sink.start()
    connection = SmtpConnection(
        SmtpConfig(host="127.0.0.1", port=sink.port, username="reminders", password="s3cret")
    )
    try:
        await connection.send("r@example.com", "ada@example.com", b"Subject: Hi\r\n\r\nHi\r\n")
    finally:
        await connection.close()
        sink.stop()

    assert sink.logins == [("PLAIN", "reminders", True)]  # once encrypted, never before
    assert [received.recipients for received in sink.received] == [["ada@example.com"]]
