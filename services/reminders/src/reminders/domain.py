"""The rules of reminders, free of I/O: which reminders a booking gets, when a failed send is
retried, and what the messages say (email text, ``.ics`` calendar entry, SMS text)."""

from __future__ import annotations

import email.headerregistry
import email.policy
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from string import Template
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from booking_contracts.catalogue import ReminderChannel
from platform_runtime.text import one_line

Channel = ReminderChannel
"""``email_24h``, ``email_1h`` or ``sms``: the kind of a reminder."""


class Status(enum.StrEnum):
    PENDING = "pending"
    """Waiting for its time (``due_at``)."""
    QUEUED = "queued"
    """Handed to the workers as a job; a worker may hold a lease on it."""
    SENT = "sent"
    CANCELLED = "cancelled"
    FAILED = "failed"


LIVE = (Status.PENDING, Status.QUEUED)
"""The states of a reminder that may still be sent: at most one per booking and channel."""

EMAIL_CHANNELS = (Channel.EMAIL_24H, Channel.EMAIL_1H)
MESSAGE_ID_DOMAIN = "reminders.booking-platform"


class ImpossibleBooking(ValueError):
    """Booking facts no reminder can be written for (the event goes to the dead letters)."""


class BookingNotFound(Exception):
    """No reminder and no event of this booking is known here (404)."""


# --- what gets scheduled ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Schedule:
    """How long before the start each enabled channel reminds (configuration)."""

    offsets: Mapping[Channel, timedelta] = field(
        default_factory=lambda: {
            Channel.EMAIL_24H: timedelta(hours=24),
            Channel.EMAIL_1H: timedelta(hours=1),
        }
    )

    def plan(
        self, *, starts_at: datetime, has_phone: bool, as_of: datetime
    ) -> dict[Channel, datetime]:
        """When each reminder of a booking starting at ``starts_at`` is due, as seen at
        ``as_of``: SMS only for a contact with a phone, nothing whose time has passed."""
        planned: dict[Channel, datetime] = {}
        for channel, before in self.offsets.items():
            if channel is Channel.SMS and not has_phone:
                continue
            at = starts_at - before
            if at > as_of:
                planned[channel] = at
        return planned


def check_booking(*, starts_at: datetime, ends_at: datetime, time_zone: str) -> None:
    """Raise :class:`ImpossibleBooking` for facts a reminder cannot be written from."""
    if ends_at <= starts_at:
        raise ImpossibleBooking(f"the booking ends ({ends_at}) before it starts ({starts_at})")
    zone(time_zone)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ImpossibleBooking(f"unknown time zone {name!r}") from None


# --- messages --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reminder:
    """What a worker needs to write and send one reminder."""

    id: UUID
    booking_id: UUID
    channel: Channel
    scheduled_for: datetime
    contact_email: str
    contact_phone: str | None
    starts_at: datetime
    ends_at: datetime
    room_name: str
    room_time_zone: str
    slot_id: UUID | None = None
    """A waitlist offer's slot (``booking_id`` is then the waitlist entry)."""
    offer_expires_at: datetime | None = None
    """Until when a waitlist offer holds the place."""

    @property
    def message_id(self) -> str:
        """The same for every attempt (and a repeat after a crash), new when it moves."""
        return message_id(self.id, self.scheduled_for)


def message_id(reminder_id: UUID, scheduled_for: datetime) -> str:
    stamp = scheduled_for.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"<reminder-{reminder_id}.{stamp}@{MESSAGE_ID_DOMAIN}>"


_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


def local_date(moment: datetime, time_zone: str) -> str:
    """``Tuesday 3 March 2030`` in the room's zone (English, whatever the locale)."""
    local = moment.astimezone(zone(time_zone))
    return f"{_DAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]} {local.year}"


def local_time(moment: datetime, time_zone: str) -> str:
    return moment.astimezone(zone(time_zone)).strftime("%H:%M")


def local_when(moment: datetime, time_zone: str) -> str:
    """``Tuesday 3 March 2030, 10:00 (Europe/Berlin)``."""
    return f"{local_date(moment, time_zone)}, {local_time(moment, time_zone)} ({time_zone})"


SUBJECTS: Mapping[Channel, Template] = {
    Channel.EMAIL_24H: Template("Reminder: $room on $date at $time"),
    Channel.EMAIL_1H: Template("Starting soon: $room at $time"),
    Channel.WAITLIST_OFFER: Template("A place is free for you: $room on $date at $time"),
}

DEFAULT_OFFER_LINK = "http://127.0.0.1:8002/slots/{slot_id}/waitlist?offer_id={offer_id}"
"""Where a waiter takes or declines an offer: ``{slot_id}`` and ``{offer_id}`` are filled in
(the setting ``REMINDERS_OFFER_LINK_TEMPLATE``; in production, the booking page of the
platform's front end)."""

OFFER_BODY = Template(
    """Hello,

a place you have been waiting for is free, and it is held for you.

  Room:    $room
  Starts:  $starts
  Ends:    $ends
  Held until: $until

Book it before then: $link
(after that it goes to the next person in line).

Offer reference: $booking_id
"""
)


def offer_link(template: str, reminder: Reminder) -> str:
    """The link of an offer's email: ``template`` with the slot and the offer filled in."""
    return template.format(slot_id=reminder.slot_id, offer_id=reminder.booking_id)


def check_offer_link(template: str) -> str:
    """``template``, if it names no field but ``{slot_id}`` and ``{offer_id}``."""
    try:
        template.format(slot_id="s", offer_id="o")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"the offer link may name {{slot_id}} and {{offer_id}} only: {exc!r}"
        ) from None
    return template


BODY = Template(
    """Hello,

this is a reminder of your booking.

  Room:    $room
  Starts:  $starts
  Ends:    $ends

The attached calendar entry (booking.ics) puts it in your calendar.

Booking reference: $booking_id
"""
)

SMS_TEXT = Template("Reminder: $room, $starts. Ref $reference")


def _fields(reminder: Reminder) -> dict[str, str]:
    tz = reminder.room_time_zone
    return {
        "room": one_line(reminder.room_name),
        "date": local_date(reminder.starts_at, tz),
        "time": f"{local_time(reminder.starts_at, tz)} ({tz})",
        "starts": local_when(reminder.starts_at, tz),
        "ends": local_when(reminder.ends_at, tz),
        "booking_id": str(reminder.booking_id),
        "reference": str(reminder.booking_id)[:8],
    }


def email_subject(reminder: Reminder) -> str:
    return SUBJECTS[reminder.channel].substitute(_fields(reminder))


def email_body(reminder: Reminder, *, link_template: str = DEFAULT_OFFER_LINK) -> str:
    if reminder.channel is not Channel.WAITLIST_OFFER:
        return BODY.substitute(_fields(reminder))
    until = reminder.offer_expires_at or reminder.starts_at
    return OFFER_BODY.substitute(
        _fields(reminder),
        until=local_when(until, reminder.room_time_zone),
        link=offer_link(link_template, reminder),
    )


def sms_text(reminder: Reminder) -> str:
    return SMS_TEXT.substitute(_fields(reminder))


class _HeaderClasses(email.headerregistry.HeaderRegistry):
    """The standard header registry, making each header class once: the standard one makes a
    new class for every header it parses, about a fifth of the time a message takes."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[email.headerregistry.BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[email.headerregistry.BaseHeader]:
        made = self._made.get(name)
        if made is None:
            made = self._made[name] = super().__getitem__(name)
        return made


MAIL_POLICY = email.policy.SMTP.clone(header_factory=_HeaderClasses())
"""Lines end in CRLF; headers are folded at 78 characters and, where not ASCII, written as
RFC 2047 encoded words (UTF-8)."""


def email_message(
    reminder: Reminder,
    *,
    sender: str,
    now: datetime,
    link_template: str = DEFAULT_OFFER_LINK,
) -> bytes:
    """The complete email (RFC 5322, MIME): text body plus the ``.ics`` entry, with the
    stable Message-ID.

    Built by the standard library's ``EmailMessage``, which encodes every header and refuses
    a line break inside one, so nothing that came by event (the room's name, the address)
    can add a header or a body of its own; the room's name is made one line before that
    (:func:`platform_runtime.text.one_line`)."""
    message = EmailMessage(policy=MAIL_POLICY)
    message["From"] = sender
    message["To"] = reminder.contact_email
    message["Subject"] = email_subject(reminder)
    message["Date"] = now.astimezone(UTC)
    message["Message-ID"] = reminder.message_id
    message.set_content(email_body(reminder, link_template=link_template), cte="base64")
    if reminder.channel is Channel.WAITLIST_OFFER:
        return message.as_bytes()  # an offer is not a booking yet: no calendar entry
    message.add_attachment(
        calendar_entry(reminder),
        subtype="calendar",
        cte="base64",
        filename="booking.ics",
        params={"method": "PUBLISH"},
    )
    return message.as_bytes()


# --- iCalendar (RFC 5545) --------------------------------------------------------------


def _ics_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def ics_text(value: str) -> str:
    """Escape a TEXT value: backslash, semicolon, comma and line breaks."""
    return (
        value.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
    )


def fold(line: str, limit: int = 75) -> str:
    """Fold a content line into lines of at most ``limit`` octets (never inside a UTF-8
    character); continuation lines start with a space, lines end with CRLF."""
    parts: list[str] = []
    current = ""
    size = 0
    for char in line:
        width = len(char.encode())
        budget = limit if not parts else limit - 1
        if size + width > budget:
            parts.append(current)
            current, size = "", 0
        current += char
        size += width
    parts.append(current)
    return "\r\n ".join(parts) + "\r\n"


def calendar_entry(reminder: Reminder) -> str:
    """A ``METHOD:PUBLISH`` calendar with one event: the booking, times in UTC."""
    when = local_when(reminder.starts_at, reminder.room_time_zone)
    room = one_line(reminder.room_name)
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Booking Platform//Reminders//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "BEGIN:VEVENT",
        f"UID:booking-{reminder.booking_id}@{MESSAGE_ID_DOMAIN}",
        f"DTSTAMP:{_ics_time(reminder.scheduled_for)}",
        f"DTSTART:{_ics_time(reminder.starts_at)}",
        f"DTEND:{_ics_time(reminder.ends_at)}",
        f"SUMMARY:{ics_text(f'Booking: {room}')}",
        f"LOCATION:{ics_text(room)}",
        f"DESCRIPTION:{ics_text(f'{room}, {when}. Ref {reminder.booking_id}')}",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return "".join(fold(line) for line in lines)


@dataclass(frozen=True, slots=True)
class BookingFacts:
    """What a reminder needs to know of its booking."""

    booking_id: UUID
    user_id: str
    contact_email: str
    contact_phone: str | None
    starts_at: datetime
    ends_at: datetime
    room_name: str
    room_time_zone: str


@dataclass(frozen=True, slots=True)
class Delivered:
    """A reminder marked sent."""

    id: UUID
    booking_id: UUID
    channel: Channel
    scheduled_for: datetime
    sent_at: datetime
    message_id: str


@dataclass(frozen=True, slots=True)
class Undelivered:
    """A reminder whose attempt failed: ``pending`` again (to retry) or ``failed``."""

    id: UUID
    booking_id: UUID
    channel: Channel
    status: Status
    attempts: int
    last_error: str


@dataclass(frozen=True, slots=True)
class StoredReminder:
    """A reminder as stored, live or not: what an admin sees of it."""

    id: UUID
    channel: Channel
    status: Status
    scheduled_for: datetime
    due_at: datetime
    attempts: int
    last_error: str | None
    sent_at: datetime | None
    message_id: str | None
    contact_email: str
    contact_phone: str | None
    starts_at: datetime
    room_name: str
    room_time_zone: str
    created_at: datetime
    updated_at: datetime


# --- what the store is given and gives back -----------------------------------------


@dataclass(frozen=True, slots=True)
class Confirmation:
    """A confirmed booking to remember, as its event reports it: the booking's ``version``
    (0: unversioned) and ``as_of`` (the event's time), the event's order key."""

    facts: BookingFacts
    version: int
    as_of: datetime


@dataclass(frozen=True, slots=True)
class Due:
    id: UUID
    booking_id: UUID
    channel: Channel
    scheduled_for: datetime
    starts_at: datetime


@dataclass(frozen=True, slots=True)
class Lease:
    """A worker's claim on one reminder: ``attempt`` (with the scheduled time) fences the
    result it may record; the message goes out at ``not_before`` at the earliest."""

    reminder: Reminder
    attempt: int
    expires_at: datetime
    not_before: datetime


@dataclass(frozen=True, slots=True)
class Job:
    job_id: UUID
    reminder_id: UUID
    scheduled_for: datetime


@dataclass(frozen=True, slots=True)
class Sent:
    lease: Lease
    sent_at: datetime


@dataclass(frozen=True, slots=True)
class Failure:
    lease: Lease
    error: str
    retry_at: datetime | None
    """When to try again; None: no more attempts, the reminder failed."""
