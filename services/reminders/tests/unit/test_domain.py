"""The rules of reminders without I/O: the plan, retries, and what the messages say."""

from __future__ import annotations

import email
import email.policy
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from pydantic import ValidationError

from platform_runtime.timing import RetryPolicy
from reminders import domain
from reminders.domain import Channel, Reminder, Schedule
from reminders.settings import RemindersSettings

START = datetime(2030, 3, 5, 9, 0, tzinfo=UTC)  # Tuesday, 10:00 in Berlin
HOUR = timedelta(hours=1)
SMS_TOO = Schedule({**Schedule().offsets, Channel.SMS: 2 * HOUR})


def reminder(**changes: object) -> Reminder:
    values: dict[str, object] = {
        "id": uuid.UUID("11111111-2222-3333-4444-555555555555"),
        "booking_id": uuid.UUID("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"),
        "channel": Channel.EMAIL_24H,
        "scheduled_for": START - 24 * HOUR,
        "contact_email": "ada@example.com",
        "contact_phone": None,
        "starts_at": START,
        "ends_at": START + HOUR,
        "room_name": "Room 7",
        "room_time_zone": "Europe/Berlin",
    }
    return Reminder(**(values | changes))  # type: ignore[arg-type]


def test_a_booking_days_ahead_gets_both_emails_and_an_sms_with_a_phone() -> None:
    plan = SMS_TOO.plan(starts_at=START, has_phone=True, as_of=START - 72 * HOUR)

    assert plan == {
        Channel.EMAIL_24H: START - 24 * HOUR,
        Channel.EMAIL_1H: START - HOUR,
        Channel.SMS: START - 2 * HOUR,
    }


def test_a_booking_three_hours_ahead_gets_only_the_one_hour_email() -> None:
    assert Schedule().plan(starts_at=START, has_phone=False, as_of=START - 3 * HOUR) == {
        Channel.EMAIL_1H: START - HOUR
    }
    assert SMS_TOO.plan(starts_at=START, has_phone=False, as_of=START - 3 * HOUR) == {
        Channel.EMAIL_1H: START - HOUR
    }


def test_a_reminder_exactly_at_confirmation_time_is_already_past() -> None:
    assert Schedule().plan(starts_at=START, has_phone=False, as_of=START - HOUR) == {}


def test_impossible_booking_facts_are_refused_with_the_reason() -> None:
    with pytest.raises(domain.ImpossibleBooking, match="unknown time zone 'Nowhere/City'"):
        domain.check_booking(starts_at=START, ends_at=START + HOUR, time_zone="Nowhere/City")
    with pytest.raises(domain.ImpossibleBooking, match="ends"):
        domain.check_booking(starts_at=START, ends_at=START, time_zone="UTC")
    with pytest.raises(domain.ImpossibleBooking):
        domain.zone("../etc/passwd")


def test_the_message_id_is_stable_per_reminder_and_time_and_new_when_it_moves() -> None:
    first = reminder()

    assert first.message_id == (
        "<reminder-11111111-2222-3333-4444-555555555555.20300304T090000Z"
        "@reminders.booking-platform>"
    )
    assert reminder().message_id == first.message_id
    assert reminder(scheduled_for=START - 23 * HOUR).message_id != first.message_id


def test_times_are_shown_in_the_room_time_zone_in_english() -> None:
    berlin = "Europe/Berlin"
    assert domain.local_when(START, berlin) == "Tuesday 5 March 2030, 10:00 (Europe/Berlin)"
    assert domain.local_when(START, "America/New_York") == (
        "Tuesday 5 March 2030, 04:00 (America/New_York)"
    )
    summer = datetime(2030, 7, 1, 22, 30, tzinfo=UTC)
    assert domain.local_when(summer, berlin) == "Tuesday 2 July 2030, 00:30 (Europe/Berlin)"


def test_email_subjects_and_body_say_room_and_local_time() -> None:
    assert domain.email_subject(reminder()) == (
        "Reminder: Room 7 on Tuesday 5 March 2030 at 10:00 (Europe/Berlin)"
    )
    assert domain.email_subject(reminder(channel=Channel.EMAIL_1H)) == (
        "Starting soon: Room 7 at 10:00 (Europe/Berlin)"
    )
    body = domain.email_body(reminder())
    assert "Starts:  Tuesday 5 March 2030, 10:00 (Europe/Berlin)" in body
    assert "Ends:    Tuesday 5 March 2030, 11:00 (Europe/Berlin)" in body
    assert domain.sms_text(reminder(channel=Channel.SMS)) == (
        "Reminder: Room 7, Tuesday 5 March 2030, 10:00 (Europe/Berlin). Ref aaaaaaaa"
    )


def test_the_email_carries_headers_text_and_the_calendar_attachment() -> None:
    now = START - 24 * HOUR + timedelta(seconds=2)
    raw = domain.email_message(reminder(), sender="Reminders <r@example.com>", now=now)
    message = email.message_from_bytes(raw, policy=email.policy.default)

    assert isinstance(message, EmailMessage)
    assert message.defects == []
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert message["To"] == "ada@example.com"
    assert message["From"] == "Reminders <r@example.com>"
    assert message["Subject"] == domain.email_subject(reminder())
    assert message["Message-ID"] == reminder().message_id
    assert message["Date"] == "Mon, 04 Mar 2030 09:00:02 +0000"
    body = message.get_body(("plain",))
    assert body is not None
    assert body.get_content().replace("\r\n", "\n") == domain.email_body(reminder())
    (attachment,) = message.iter_attachments()
    assert isinstance(attachment, EmailMessage)
    assert attachment.get_content_type() == "text/calendar"
    assert attachment.get_param("method") == "PUBLISH"
    assert attachment.get_filename() == "booking.ics"
    assert attachment.get_payload(decode=True) == domain.calendar_entry(reminder()).encode()


def test_a_subject_beyond_ascii_travels_as_encoded_words() -> None:
    room = "Großer Saal, très grand, with a name long enough to need several encoded words"
    raw = domain.email_message(reminder(room_name=room), sender="r@example.com", now=START)
    message = email.message_from_bytes(raw, policy=email.policy.default)

    assert (
        message["Subject"] == f"Reminder: {room} on Tuesday 5 March 2030 at 10:00 (Europe/Berlin)"
    )
    headers = raw.split(b"\r\n\r\n")[0].split(b"\r\n")
    subject = [line for line in headers if line.startswith(b"Subject:")]
    assert len(subject) == 1
    assert b"=?utf-8?" in subject[0]  # RFC 2047 encoded words, the header itself ASCII
    assert raw.isascii()
    assert all(len(line) <= 78 for line in headers if not line.startswith(b"Message-ID:"))


def test_the_calendar_entry_is_rfc_5545_with_utc_times_and_crlf() -> None:
    ics = domain.calendar_entry(reminder())

    assert ics == (
        "BEGIN:VCALENDAR\r\n"
        "VERSION:2.0\r\n"
        "PRODID:-//Booking Platform//Reminders//EN\r\n"
        "CALSCALE:GREGORIAN\r\n"
        "METHOD:PUBLISH\r\n"
        "BEGIN:VEVENT\r\n"
        "UID:booking-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee@reminders.booking-platform\r\n"
        "DTSTAMP:20300304T090000Z\r\n"
        "DTSTART:20300305T090000Z\r\n"
        "DTEND:20300305T100000Z\r\n"
        "SUMMARY:Booking: Room 7\r\n"
        "LOCATION:Room 7\r\n"
        "DESCRIPTION:Room 7\\, Tuesday 5 March 2030\\, 10:00 (Europe/Berlin). Ref aaaa\r\n"
        " aaaa-bbbb-cccc-dddd-eeeeeeeeeeee\r\n"
        "END:VEVENT\r\n"
        "END:VCALENDAR\r\n"
    )


def test_text_values_are_escaped() -> None:
    assert domain.ics_text("a\\b;c,d\ne\r\nf") == "a\\\\b\\;c\\,d\\ne\\nf"


@pytest.mark.parametrize("text", ["x" * 200, "ä" * 100, "Saal " + "€" * 60 + " end", "short"])
def test_long_lines_fold_at_75_octets_without_splitting_characters(text: str) -> None:
    folded = domain.fold(f"SUMMARY:{text}")
    lines = folded.encode().split(b"\r\n")

    assert folded.endswith("\r\n")
    assert lines[-1] == b""
    assert all(len(line) <= 75 for line in lines)
    assert all(line.startswith(b" ") for line in lines[1:-1])
    assert folded.replace("\r\n ", "").removesuffix("\r\n") == f"SUMMARY:{text}"


def test_settings_turn_channels_and_offsets_into_the_schedule() -> None:
    settings = RemindersSettings(
        sms_enabled=True,
        sms_provider_url="http://sms.example/send",
        sms_before_minutes=30,
        email_24h_enabled=False,
        email_1h_before_minutes=90,
    )

    assert settings.schedule() == Schedule(
        {Channel.EMAIL_1H: timedelta(minutes=90), Channel.SMS: timedelta(minutes=30)}
    )
    assert RemindersSettings().schedule() == Schedule()
    assert RemindersSettings(max_attempts=2, retry_initial_s=1).retry_policy() == RetryPolicy(
        max_attempts=2, initial=timedelta(seconds=1), maximum=timedelta(hours=1)
    )


def test_settings_refuse_sms_without_a_provider_and_leases_shorter_than_a_send() -> None:
    with pytest.raises(ValidationError, match="sms_provider_url"):
        RemindersSettings(sms_enabled=True)
    with pytest.raises(ValidationError, match="lease_s"):
        RemindersSettings(lease_s=5, smtp_timeout_s=10)


def test_settings_refuse_a_login_that_would_go_unencrypted() -> None:
    with pytest.raises(ValidationError, match="smtp_username needs TLS"):
        RemindersSettings(smtp_username="reminders", smtp_start_tls=False)
    assert RemindersSettings(smtp_username="reminders", smtp_use_tls=True).smtp_username
    assert RemindersSettings(smtp_username="reminders").smtp_start_tls is None  # required


def test_a_room_name_with_line_breaks_stays_one_line_in_every_message() -> None:
    injected = reminder(room_name="Room 9\r\nBcc: everyone@example.com\r\n\r\nPay here")
    shown = "Room 9 Bcc: everyone@example.com Pay here"

    raw = domain.email_message(injected, sender="r@example.com", now=START)
    message = email.message_from_bytes(raw, policy=email.policy.default)

    assert message.defects == []
    assert sorted(message.keys()) == sorted(
        ["From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"]
    )
    assert (
        message["Subject"] == f"Reminder: {shown} on Tuesday 5 March 2030 at 10:00 (Europe/Berlin)"
    )
    assert f"Room:    {shown}\n" in domain.email_body(injected)
    assert domain.sms_text(injected).startswith(f"Reminder: {shown}, ")
    assert "\n" not in domain.sms_text(injected)
    assert f"LOCATION:{shown}\r\n" in domain.calendar_entry(injected)
