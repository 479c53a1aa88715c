"""The payment and mail stand-ins, on the in-memory transport and a local SMTP port: what the
platform sees of them (answers on ``payments.events``, mail kept and written to files)."""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
import pytest_asyncio

from booking_contracts import topics
from booking_contracts.catalogue import (
    BookingCreated,
    PaymentFailed,
    PaymentSucceeded,
    RefundFailed,
    RefundRequested,
    RefundSucceeded,
)
from booking_contracts.envelope import Envelope, Event, decode
from booking_contracts.money import Money
from platform_runtime.memory import InMemoryTransport
from platform_runtime.transport import KafkaRecord
from platform_tooling import standins
from platform_tooling.polling import until
from platform_tooling.standins import REFUND_FAILURE, MailSink, PaymentStandIn, payment_id_of
from tests.support.ports import free_port
from tests.support.threads import in_thread

PRICE = Money(amount=Decimal("40.00"), currency="EUR")


def created(user_id: str, booking_id: UUID | None = None) -> BookingCreated:
    start = datetime(2027, 3, 8, 9, tzinfo=UTC)
    return BookingCreated(
        booking_id=booking_id or uuid4(),
        user_id=user_id,
        slot_id=uuid4(),
        room_id=uuid4(),
        starts_at=start,
        ends_at=start + timedelta(hours=1),
        price=PRICE,
        hold_expires_at=start - timedelta(days=1),
    )


def refund_of(booking_id: UUID) -> RefundRequested:
    return RefundRequested(
        booking_id=booking_id,
        refund_id=uuid4(),
        payment_id=payment_id_of(booking_id),
        amount=PRICE,
        reason="cancelled in time",
    )


async def publish(transport: InMemoryTransport, *events: Event) -> list[Envelope]:
    envelopes = [Envelope.wrap(e, source="/booking", correlation_id="c-1") for e in events]
    await transport.publisher(client_id="booking").send_records(
        [
            KafkaRecord(topics.BOOKING_EVENTS, str(e.subject).encode(), e.to_json_bytes())
            for e in envelopes
        ]
    )
    return envelopes


def answers(transport: InMemoryTransport) -> list[tuple[Envelope, Event]]:
    return [decode(r.value or b"") for r in transport.records(topics.PAYMENT_EVENTS)]


@pytest_asyncio.fixture
async def running() -> AsyncIterator[tuple[InMemoryTransport, PaymentStandIn]]:
    transport = InMemoryTransport()
    standin = PaymentStandIn(transport)
    await standin.start(timeout_s=5)
    try:
        yield transport, standin
    finally:
        await standin.stop()


async def answered(transport: InMemoryTransport, count: int) -> list[tuple[Envelope, Event]]:
    async def enough() -> list[tuple[Envelope, Event]] | None:
        seen = answers(transport)
        return seen if len(seen) >= count else None

    return await until(enough, timeout_s=5, interval_s=0.01, what=f"{count} answers")


async def test_a_booking_is_paid_in_full_in_its_conversation_and_offsets_follow(
    running: tuple[InMemoryTransport, PaymentStandIn],
) -> None:
    transport, standin = running
    (envelope,) = await publish(transport, created("alice"))

    ((reply, paid),) = await answered(transport, 1)

    assert isinstance(paid, PaymentSucceeded)
    assert paid.amount == PRICE
    assert paid.payment_id == payment_id_of(paid.booking_id)
    assert reply.causationid == str(envelope.id)
    assert reply.correlationid == "c-1"
    (answer,) = transport.records(topics.PAYMENT_EVENTS)
    assert answer.key == str(paid.booking_id).encode()
    assert standin.answered[paid.booking_id].id == reply.id
    assert await until(
        lambda: _committed(transport), timeout_s=5, interval_s=0.01, what="the commit"
    )


async def _committed(transport: InMemoryTransport) -> bool:
    return sum(transport.committed(standins.GROUP).values()) == 1


async def test_who_pays_who_is_declined_and_who_never_pays_is_decided_by_the_user_id(
    running: tuple[InMemoryTransport, PaymentStandIn],
) -> None:
    transport, standin = running
    never, declined, paid = created("unpaid-1"), created("declined-1"), created("bob")

    await publish(transport, never, declined, paid)
    outcomes = {
        e.booking_id: e
        for _, e in await answered(transport, 2)
        if isinstance(e, PaymentSucceeded | PaymentFailed)
    }

    assert isinstance(outcomes[declined.booking_id], PaymentFailed)
    assert isinstance(outcomes[paid.booking_id], PaymentSucceeded)
    assert never.booking_id not in outcomes
    assert standin.users[never.booking_id] == "unpaid-1"


async def test_a_repeated_booking_gets_the_same_payment_and_refunds_are_answered_once_each(
    running: tuple[InMemoryTransport, PaymentStandIn],
) -> None:
    transport, standin = running
    booking = created("carol")
    unrefundable = created("unrefundable-1")
    stranger = uuid4()  # a booking the stand-in never saw created
    await publish(transport, booking, booking, unrefundable)
    await answered(transport, 3)
    refunds = refund_of(booking.booking_id), refund_of(unrefundable.booking_id), refund_of(stranger)

    await publish(transport, *refunds)
    seen = [event for _, event in await answered(transport, 6)]

    paid = [e for e in seen if isinstance(e, PaymentSucceeded)]
    assert sorted(e.payment_id for e in paid) == sorted(
        [payment_id_of(booking.booking_id)] * 2 + [payment_id_of(unrefundable.booking_id)]
    )
    outcomes = {e.refund_id: e for e in seen if isinstance(e, RefundSucceeded | RefundFailed)}
    ok, failed, strangers = (outcomes[r.refund_id] for r in refunds)
    assert isinstance(ok, RefundSucceeded)
    assert isinstance(failed, RefundFailed)
    assert failed.reason == REFUND_FAILURE
    assert isinstance(strangers, RefundSucceeded)
    assert strangers.booking_id == stranger
    assert standin.refunds_of(booking.booking_id) == [refunds[0]]


async def test_records_it_cannot_read_or_does_not_answer_are_passed_over(
    running: tuple[InMemoryTransport, PaymentStandIn],
) -> None:
    transport, _ = running
    await transport.publisher(client_id="x").send_records(
        [KafkaRecord(topics.BOOKING_EVENTS, b"k", b"{not json")]
    )
    failed = PaymentFailed(booking_id=uuid4(), payment_id="p", reason="not ours")
    await transport.publisher(client_id="x").send_records(
        [
            KafkaRecord(
                topics.BOOKING_EVENTS, b"k", Envelope.wrap(failed, source="/x").to_json_bytes()
            )
        ]
    )
    await publish(transport, created("dave"))

    ((_, paid),) = await answered(transport, 1)
    assert isinstance(paid, PaymentSucceeded)


async def test_it_starts_over_after_a_broker_failure_and_answers_what_it_had_not_committed(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport = InMemoryTransport()
    failures = {"left": 1}
    real = transport.publisher

    def flaky_publisher(*, client_id: str) -> Any:
        publisher = real(client_id=client_id)
        send_batch = publisher.send_batch

        async def send(records: Any) -> None:
            if failures["left"]:
                failures["left"] -= 1
                raise ConnectionError("the broker went away")
            await send_batch(records)

        publisher.send_batch = send  # type: ignore[method-assign]
        return publisher

    monkeypatch.setattr(transport, "publisher", flaky_publisher)
    monkeypatch.setattr(standins, "RESTART_PAUSE_S", 0.0)
    standin = PaymentStandIn(transport)
    await standin.start(timeout_s=5)
    try:
        booking = created("erin")
        await publish(transport, booking)
        ((_, paid),) = await answered(transport, 1)
    finally:
        await standin.stop()

    assert isinstance(paid, PaymentSucceeded)
    assert paid.booking_id == booking.booking_id
    assert "starting over" in caplog.text


async def test_a_stand_in_that_gets_no_partitions_says_so_when_it_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    transport = InMemoryTransport()
    monkeypatch.setattr(standins, "UNASSIGNED_S", 0.0)
    standin = PaymentStandIn(transport)
    await transport.ensure_topics([topics.BOOKING_EVENTS, topics.PAYMENT_EVENTS])
    squatter = transport.group_consumer(
        [topics.BOOKING_EVENTS], group=standins.GROUP, hand_over=_nothing
    )
    await squatter.start()
    for _ in range(len(squatter.assignment()) - 1):  # two members more than partitions...
        await transport.group_consumer(
            [topics.BOOKING_EVENTS], group=standins.GROUP, hand_over=_nothing
        ).start()

    with pytest.raises(TimeoutError, match="no partitions"):
        await standin.start(timeout_s=0.5)
    await standin.stop()


async def _nothing() -> None:
    return None


def send_mail(port: int, to: str, subject: str) -> None:
    message = EmailMessage()
    message["From"] = "reminders@example.com"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid4()}@example.com>"
    message.set_content("See you soon.")
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
        smtp.send_message(message)


async def test_the_mail_sink_keeps_every_message_and_numbers_its_files_on(tmp_path: Path) -> None:
    (tmp_path / "00007.eml").write_bytes(b"from an earlier run")
    sink = MailSink(port=free_port(), directory=tmp_path)
    sink.start()
    try:
        await in_thread(send_mail, sink.port, "ann@example.com", "Your booking tomorrow")
        await in_thread(send_mail, sink.port, "ben@example.com", "Your booking in an hour")
    finally:
        sink.stop()

    (mail,) = sink.to("ann@example.com")
    assert mail.message["Subject"] == "Your booking tomorrow"
    assert mail.message_id.endswith("@example.com>")
    assert sorted(p.name for p in tmp_path.glob("*.eml")) == ["00007.eml", "00008.eml", "00009.eml"]
    assert b"Your booking in an hour" in (tmp_path / "00009.eml").read_bytes()
    assert (tmp_path / "00007.eml").read_bytes() == b"from an earlier run"


async def test_a_sink_without_a_directory_only_keeps_messages() -> None:
    sink = MailSink(port=free_port())
    sink.start()
    try:
        await in_thread(send_mail, sink.port, "ann@example.com", "Hello")
    finally:
        sink.stop()
    assert [m.recipients for m in sink.received] == [["ann@example.com"]]


async def test_as_a_process_it_serves_both_until_sigterm(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    transport = InMemoryTransport()
    monkeypatch.setattr(standins, "KafkaTransport", lambda *args, **kwargs: transport)
    port = free_port()
    serving = asyncio.create_task(standins._serve("unused:9092", port, tmp_path))

    async def ready() -> bool:
        return bool(transport.committed(standins.GROUP)) or bool(transport.topics())

    await until(ready, timeout_s=5, interval_s=0.01, what="the stand-ins")
    await publish(transport, created("frank"))
    await answered(transport, 1)
    await in_thread(send_mail, port, "frank@example.com", "Reminder")
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(serving, 10)

    assert (tmp_path / "00001.eml").exists()


def test_the_command_line_names_the_broker_the_smtp_port_and_the_mail_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[tuple[str, int, Path | None]] = []

    async def serve(kafka: str, smtp_port: int, mail_dir: Path | None) -> None:
        seen.append((kafka, smtp_port, mail_dir))

    monkeypatch.setattr(standins, "_serve", serve)
    argv = ["standins", "--kafka", "k:9", "--smtp-port", "2600", "--mail-dir", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    standins.main()
    assert seen == [("k:9", 2600, tmp_path)]
