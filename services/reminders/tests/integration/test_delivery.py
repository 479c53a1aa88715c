"""Reminders falling due and arriving: by email over SMTP and by SMS over HTTP, once each."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from datetime import timedelta
from email.message import EmailMessage
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from booking_contracts.catalogue import ReminderChannel, ReminderDue
from booking_contracts.envelope import Envelope

from .conftest import Service

HOUR = timedelta(hours=1)
SECOND = timedelta(seconds=1)


def _calendar(message: EmailMessage) -> tuple[EmailMessage, bytes]:
    (part,) = [p for p in message.iter_attachments() if isinstance(p, EmailMessage)]
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return part, payload


def _unfold(ics: str) -> list[str]:
    return ics.replace("\r\n ", "").split("\r\n")


async def test_an_email_arrives_on_time_with_local_time_room_and_calendar_entry(
    service: Service,
) -> None:
    start = service.day() + 11 * HOUR  # 20:00 UTC: 05:00 the next day in Tokyo
    room = "Großer Saal Fuji, 4th floor - the large one with the view over the bay and garden"
    booking = service.confirmed(start, time_zone="Asia/Tokyo", room_name=room)
    service.clock.set(start - 72 * HOUR)
    await service.confirm(booking, expect=2)
    address = f"{booking.booking_id}@example.com"

    service.clock.set(start - 24 * HOUR - SECOND)
    rows = await service.statuses(booking.booking_id, {"email_24h": "sent", "email_1h": "pending"})

    (received,) = service.smtp.to(address)
    message = received.message
    local = start.astimezone(ZoneInfo("Asia/Tokyo"))
    when = f"{local:%A} {local.day} {local:%B %Y}, 05:00 (Asia/Tokyo)"
    assert local.date() > start.date()
    assert message["Subject"] == f"Reminder: {room} on {when.split(',')[0]} at 05:00 (Asia/Tokyo)"
    body = message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert f"Starts:  {when}" in text
    assert f"Room:    {room}" in text
    assert str(booking.booking_id) in text
    sent = rows["email_24h"]
    assert message["Message-ID"] == sent["message_id"]
    assert sent["message_id"].startswith(f"<reminder-{sent['id']}.")
    assert sent["attempts"] == 1
    assert timedelta(0) <= sent["sent_at"] - sent["scheduled_for"] < 2 * SECOND

    part, ics = _calendar(message)
    assert part.get_content_type() == "text/calendar"
    assert part.get_param("method") == "PUBLISH"
    assert part.get_filename() == "booking.ics"
    assert b"\n" not in ics.replace(b"\r\n", b"")
    assert all(len(line) <= 75 for line in ics.split(b"\r\n"))
    lines = _unfold(ics.decode())
    assert lines[0] == "BEGIN:VCALENDAR"
    assert "METHOD:PUBLISH" in lines
    assert f"UID:booking-{booking.booking_id}@reminders.booking-platform" in lines
    assert f"DTSTART:{start:%Y%m%dT%H%M%SZ}" in lines
    assert f"DTEND:{start + HOUR:%Y%m%dT%H%M%SZ}" in lines
    assert "SUMMARY:Booking: " + room.replace(",", "\\,") in lines

    (event,) = await service.events(booking.booking_id, at_least=1)
    assert event["type"] == "ReminderSent.v1"
    assert event["data"]["message_id"] == sent["message_id"]
    assert event["data"]["channel"] == "email_24h"


INJECTED_ROOM = "Room 9\r\nBcc: everyone@example.com\r\n\r\nPay here: https://evil.example"
"""A room name (from old data or another producer) that would add a header and a body."""

MAIL_HEADERS = ["Content-Type", "Date", "From", "MIME-Version", "Message-ID", "Subject", "To"]


def _header_lines(raw: bytes) -> list[bytes]:
    """The header lines of a message as it travelled, continuation lines joined."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    return head.replace(b"\r\n ", b" ").replace(b"\r\n\t", b"\t").split(b"\r\n")


@pytest.mark.parametrize(
    ("room", "shown_as"),
    [
        (INJECTED_ROOM, "Room 9 Bcc: everyone@example.com Pay here: https://evil.example"),
        ("Salle Étoile — 3ᵉ", "Salle Étoile — 3ᵉ"),
    ],
    ids=["line-breaks", "non-ascii"],
)
async def test_a_room_name_from_an_event_stays_in_one_encoded_subject_header(
    service: Service, room: str, shown_as: str
) -> None:
    start = service.day()
    booking = service.confirmed(start, room_name=room)
    service.clock.set(start - 3 * HOUR)
    await service.confirm(booking, expect=1)

    service.clock.set(start - HOUR - SECOND)
    await service.statuses(booking.booking_id, {"email_1h": "sent"})

    (received,) = service.smtp.to(f"{booking.booking_id}@example.com")
    headers = _header_lines(received.raw)
    assert sorted(line.split(b":", 1)[0].decode() for line in headers) == MAIL_HEADERS
    (subject,) = [line for line in headers if line.startswith(b"Subject:")]
    assert received.raw.isascii()  # headers RFC 2047 encoded where needed, bodies base64
    if not room.isascii():
        assert b"=?utf-8?" in subject
    local = start.astimezone(ZoneInfo("Europe/Berlin"))
    message = received.message
    assert message["Subject"] == f"Starting soon: {shown_as} at {local:%H:%M} (Europe/Berlin)"
    body = message.get_body(("plain",))
    assert body is not None
    lines = body.get_content().splitlines()
    assert [line for line in lines if shown_as in line] == [f"  Room:    {shown_as}"]
    _, ics = _calendar(message)
    assert f"LOCATION:{shown_as}" in _unfold(ics.decode())


async def test_an_sms_goes_to_the_provider_with_the_token_and_a_stable_message_id(
    service: Service,
) -> None:
    start = service.day()
    booking = service.confirmed(start, phone="+4915100000001", time_zone="Europe/Lisbon")
    service.clock.set(start - 72 * HOUR)
    await service.confirm(booking, expect=3)

    service.clock.set(start - 2 * HOUR - SECOND)
    rows = await service.statuses(
        booking.booking_id, {"email_24h": "sent", "sms": "sent", "email_1h": "pending"}
    )

    (request,) = service.sms.to("+4915100000001")
    assert request.headers["authorization"] == f"Bearer {service.sms.token}"
    assert request.body["message_id"] == rows["sms"]["message_id"]
    assert request.headers["idempotency-key"] == rows["sms"]["message_id"]
    local = start.astimezone(ZoneInfo("Europe/Lisbon"))
    assert f"{local:%H:%M} (Europe/Lisbon)" in request.body["text"]
    assert "Room 7" in request.body["text"]


async def test_a_failing_smtp_server_that_recovers_gets_the_message_once(
    service: Service,
) -> None:
    start = service.day()
    booking = service.confirmed(start)
    address = f"{booking.booking_id}@example.com"
    service.clock.set(start - 3 * HOUR)
    await service.confirm(booking, expect=1)
    service.smtp.refuse.add(address)

    service.clock.set(start - HOUR - SECOND)

    async def refused_once() -> dict[str, Any] | None:
        # waiting for its retry: pending, or already handed out ahead of the retry time
        row = (await service.by_kind(booking.booking_id))["email_1h"]
        return row if row["last_error"] and row["status"] in ("pending", "queued") else None

    failed = await service.until(refused_once)
    service.smtp.refuse.discard(address)
    rows = await service.statuses(booking.booking_id, {"email_1h": "sent"})

    assert "451" in str(failed["last_error"])
    assert failed["due_at"] > failed["scheduled_for"]
    assert rows["email_1h"]["attempts"] >= 2  # a retry after the refusal sent it
    assert rows["email_1h"]["last_error"] is None
    assert rows["email_1h"]["sent_at"] >= failed["due_at"]  # not before the backoff ran out
    assert len(service.smtp.to(address)) == 1


async def test_a_reminder_that_keeps_failing_ends_failed_and_is_published(
    service: Service,
) -> None:
    start = service.day()
    phone = "+4915100000002"
    booking = service.confirmed(start, phone=phone)
    service.clock.set(start - 3 * HOUR)
    await service.confirm(booking, expect=2)
    service.sms.failing.add(phone)

    service.clock.set(start - 2 * HOUR - SECOND)
    rows = await service.statuses(booking.booking_id, {"sms": "failed", "email_1h": "pending"})

    assert rows["sms"]["attempts"] == 3
    assert "500" in rows["sms"]["last_error"]
    requests = service.sms.to(phone)
    assert len(requests) == 3
    assert len({r.body["message_id"] for r in requests}) == 1  # the same message, tried again
    (event,) = await service.events(booking.booking_id, at_least=1)
    assert event["type"] == "ReminderFailed.v1"
    assert event["data"]["attempts"] == 3
    assert "500" in event["data"]["error"]


async def test_after_downtime_everything_that_fell_due_is_caught_up(service: Service) -> None:
    start = service.day()
    service.clock.set(start - 72 * HOUR)
    bookings = [service.confirmed(start + i * 10 * SECOND) for i in range(3)]
    for booking in bookings:
        await service.confirm(booking, expect=2)

    service.clock.set(start - 30 * timedelta(minutes=1))  # both reminders' times passed
    for booking in bookings:
        await service.statuses(booking.booking_id, {"email_24h": "sent", "email_1h": "sent"})

    for booking in bookings:
        received = service.smtp.to(f"{booking.booking_id}@example.com")
        assert len({r.message_id for r in received}) == len(received) == 2


async def test_a_reminder_not_sent_before_the_booking_started_is_not_sent_at_all(
    service: Service,
) -> None:
    start = service.day()
    service.clock.set(start - 72 * HOUR)
    booking = service.confirmed(start)
    await service.confirm(booking, expect=2)

    service.clock.set(start + 10 * SECOND)
    rows = await service.statuses(
        booking.booking_id, {"email_24h": "cancelled", "email_1h": "cancelled"}
    )

    assert "started" in rows["email_1h"]["last_error"]
    assert service.smtp.to(f"{booking.booking_id}@example.com") == []


async def _dropped(service: Service) -> float:
    metrics = (await service.http.get("/metrics")).text
    pattern = r'^reminders_jobs_dropped_total\{reason="not_current"\} (\S+)$'
    found = re.findall(pattern, metrics, re.M)
    return float(found[0]) if found else 0.0


async def test_a_job_delivered_twice_or_for_a_cancelled_reminder_sends_nothing_more(
    service: Service,
) -> None:
    start = service.day()
    service.clock.set(start - 72 * HOUR)
    booking = service.confirmed(start)
    await service.confirm(booking, expect=2)
    service.clock.set(start - 24 * HOUR - SECOND)
    rows = await service.statuses(booking.booking_id, {"email_24h": "sent", "email_1h": "pending"})
    await service.publish(service.cancelled(booking))
    await service.statuses(booking.booking_id, {"email_24h": "sent", "email_1h": "cancelled"})
    (job,) = await service.jobs(rows["email_24h"]["id"], at_least=1)
    cancelled = rows["email_1h"]
    stale_job = Envelope.wrap(
        ReminderDue(
            reminder_id=cancelled["id"],
            booking_id=booking.booking_id,
            channel=ReminderChannel.EMAIL_1H,
            scheduled_for=cancelled["scheduled_for"],
        ),
        source="/reminders",
    )
    unknown_job = Envelope.wrap(
        ReminderDue(
            reminder_id=uuid.uuid4(),
            booking_id=booking.booking_id,
            channel=ReminderChannel.EMAIL_1H,
            scheduled_for=cancelled["scheduled_for"],
        ),
        source="/reminders",
    )
    dropped = await _dropped(service)

    republished = job.model_copy(update={"id": uuid.uuid4()})  # a new job id, same reminder
    for envelope in (job, republished, stale_job, unknown_job):
        await service.publish_raw(envelope, topic="reminders.jobs")
    await service.until(lambda: _more_dropped(service, dropped + 3))

    assert len(service.smtp.to(f"{booking.booking_id}@example.com")) == 1
    after = await service.by_kind(booking.booking_id)
    assert (after["email_24h"]["status"], after["email_24h"]["attempts"]) == ("sent", 1)
    assert (after["email_1h"]["status"], after["email_1h"]["attempts"]) == ("cancelled", 0)


async def test_a_reminder_handed_out_ahead_waits_for_its_time_and_is_dropped_if_cancelled(
    service: Service,
) -> None:
    start = service.day()
    service.clock.set(start - 2 * HOUR)  # only the 1 h reminder: the 24 h one has passed
    waiting, kept = service.confirmed(start), service.confirmed(start)
    await service.confirm(waiting, expect=1)
    await service.confirm(kept, expect=1)
    dropped = await _dropped(service)

    service.clock.set(start - HOUR - 3 * SECOND)  # due in 3 s, within the 10 s dispatched ahead
    for booking in (waiting, kept):
        await service.until(partial(_leased, service, booking.booking_id))
    await service.publish(service.cancelled(waiting))
    await service.statuses(waiting.booking_id, {"email_1h": "cancelled"})
    rows = await service.statuses(kept.booking_id, {"email_1h": "sent"})
    await service.until(lambda: _more_dropped(service, dropped + 1))

    assert service.smtp.to(f"{waiting.booking_id}@example.com") == []
    (received,) = service.smtp.to(f"{kept.booking_id}@example.com")
    sent = rows["email_1h"]
    assert received.message["Message-ID"] == sent["message_id"]
    assert timedelta(0) <= sent["sent_at"] - sent["scheduled_for"] < 2 * SECOND


async def _leased(service: Service, booking_id: uuid.UUID) -> bool:
    """A worker holds the booking's 1 h reminder (job taken, attempt counted)."""
    row = (await service.by_kind(booking_id))["email_1h"]
    return row["status"] == "queued" and row["job_id"] is None and row["attempts"] == 1


async def _more_dropped(service: Service, at_least: float) -> bool:
    return await _dropped(service) >= at_least


async def test_metrics_count_deliveries_and_lateness(service: Service) -> None:
    metrics = (await service.http.get("/metrics")).text

    counts = Counter(
        (m.group(1), m.group(2))
        for m in re.finditer(
            r'^reminders_delivered_total\{channel="(\w+)",outcome="(\w+)"\} [1-9]', metrics, re.M
        )
    )
    assert {("email_24h", "sent"), ("sms", "sent"), ("sms", "retry"), ("sms", "failed")} <= set(
        counts
    )
    assert "reminders_lateness_seconds_bucket" in metrics
    assert 'reminders_scheduled_total{channel="email_1h"}' in metrics
    assert 'reminders_dispatched_total{outcome="queued"}' in metrics


async def test_an_undecodable_job_goes_to_the_dead_letters_and_delivery_goes_on(
    service: Service,
) -> None:
    key = f"garbage-{uuid.uuid4()}".encode()
    await service.broker.publish("reminders.jobs", [b"{not json"], key=key)
    start = service.day()
    service.clock.set(start - 3 * HOUR)
    booking = service.confirmed(start)
    await service.confirm(booking, expect=1)
    service.clock.set(start - HOUR - SECOND)

    await service.statuses(booking.booking_id, {"email_1h": "sent"})
    (dead,) = await service.broker.read(
        "reminders.jobs.dlq", at_least=1, where=lambda r: r.key == key
    )
    headers = {k: v.decode() for k, v in dead.headers}
    assert headers["dlq_consumer"] == "reminders-delivery"
    assert headers["dlq_kind"] == "undecodable"
    assert "not JSON" in headers["dlq_reason"]
    assert dead.value == b"{not json"
