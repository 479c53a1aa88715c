"""The payload models of every event of the platform (version 1).

Producers and consumers import these models and nothing else of each other. A change that
a consumer could not read is a new version (``version = 2``) published beside the old one.

Every model and field is described where it is declared (class docstrings, and the docstring
under each field): those texts are the ``description`` of the JSON Schemas in ``docs/events``
that other teams build against. A field whose type already carries a generic description
(free text, a correlation id) says what it means with ``Field(description=...)`` instead, as
a docstring would not replace the type's.
"""

from __future__ import annotations

import enum
from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from booking_contracts import topics
from booking_contracts.bounds import Count, EmailAddress, Identifier, Label, Note, ZoneName
from booking_contracts.envelope import Event, EventCatalogue
from booking_contracts.money import ExactDecimal, Money, UtcDatetime


def _event(cls: type[Event]) -> type[Event]:
    return EventCatalogue.register(cls)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


# --- timeslots -------------------------------------------------------------------------


class RoomType(enum.StrEnum):
    """What a room is for: ``office``, ``consultation``, ``meeting`` or ``treatment``."""

    OFFICE = "office"
    CONSULTATION = "consultation"
    MEETING = "meeting"
    TREATMENT = "treatment"


class SlotStatus(enum.StrEnum):
    """Whether a slot is for sale: ``open`` takes bookings while it has places left;
    ``blocked`` (taken out of sale by an admin, e.g. for maintenance) takes none, and the
    bookings it already has stay."""

    OPEN = "open"
    BLOCKED = "blocked"


class RoomSnapshot(_Frozen):
    """A room as the timeslot service holds it after the change the event reports: the whole
    room, not only what changed."""

    room_id: UUID
    """The room's id (a UUID the timeslot service issued)."""
    name: Label
    """The room's name as people see it (in reminder emails too); at most 200 characters."""
    room_type: RoomType
    """What the room is for."""
    capacity: Count
    """How many people the room holds."""
    time_zone: ZoneName
    """The IANA name of the room's time zone (``Europe/Berlin``): the room's local dates and
    times are in it. Timestamps in events are UTC all the same."""
    hourly_rate: Money
    """The price of one hour in the room: a generated slot costs the rate times its length
    (rounded half-up to the currency's minor unit) unless an admin gave it a price."""
    active: bool
    """False once the room is deactivated: it takes no new bookings and gets no new slots;
    the bookings it has stay."""


class SlotSnapshot(_Frozen):
    """A slot as the timeslot service holds it after the change the event reports (the whole
    slot); ``revision`` grows with every change."""

    slot_id: UUID
    """The slot's id (a UUID the timeslot service issued)."""
    room_id: UUID
    """The id of the room the slot belongs to."""
    starts_at: UtcDatetime
    """When the slot starts: an ISO 8601 instant in UTC (``2030-01-07T08:00:00Z``); the room's
    time zone gives its local time."""
    ends_at: UtcDatetime
    """When the slot ends (the slot is the time from ``starts_at`` up to this instant): ISO
    8601, UTC, after ``starts_at``."""
    price: Money
    """What one booking of the slot costs."""
    max_bookings: Count
    """How many bookings the slot takes at most (1: the room is booked whole)."""
    status: SlotStatus
    """Whether the slot is for sale."""
    revision: Count
    """The slot's revision: 1 when it was created, one higher after every change. Keep the
    snapshot with the highest revision: an older one that arrives late changes nothing."""


ROOM_VERSION = (
    "The room's version after this change: 1 when it was created, higher after every change "
    "(counted by the timeslot service's database, never by a clock). Keep the event with the "
    "highest version. Absent in events written before versions existed."
)
BOOKING_VERSION = (
    "The booking's version after the change this event reports: 1 when it was made, higher "
    "after every change (counted by the booking service's database, never by a clock). Keep "
    "the event with the highest version. Absent in a refund request for a payment no booking "
    "took, and in events written before versions existed."
)
# Events of one room, and events of one booking, carry the version of their aggregate after
# the change they report: it starts at 1 and every change adds at least one, counted by the
# database of the service that owns the aggregate (a trigger), never by a clock. A reader that
# keeps a copy applies an event only when its version is higher than the one it holds, so an
# event that arrives late (a dead letter replayed days later) never undoes a newer one, however
# far apart the clocks of the replicas that wrote them are. Events written before versions
# existed have none; readers order those by their envelope time, below every versioned one.


class _RoomEvent(Event):
    topic: ClassVar[str] = topics.TIMESLOTS_EVENTS
    room_id: UUID
    """The room the event is about (a UUID the timeslot service issued)."""

    def aggregate_id(self) -> str:
        return str(self.room_id)


@_event
class RoomUpserted(_RoomEvent):
    """A room was created, its details changed, or it was activated again."""

    name: ClassVar[str] = "RoomUpserted"
    room: RoomSnapshot
    """The room after the change."""
    room_version: Count | None = Field(default=None, description=ROOM_VERSION)


@_event
class RoomDeactivated(_RoomEvent):
    """A room takes no new bookings; existing ones stay."""

    name: ClassVar[str] = "RoomDeactivated"
    deactivated_at: UtcDatetime
    """When the room was deactivated: an ISO 8601 instant in UTC."""
    room_version: Count | None = Field(default=None, description=ROOM_VERSION)


@_event
class SlotsGenerated(_RoomEvent):
    """A batch of new slots of one room (generation publishes them in chunks)."""

    name: ClassVar[str] = "SlotsGenerated"
    slots: list[SlotSnapshot] = Field(min_length=1)
    """The new slots of the room, at least one."""


@_event
class SlotChanged(_RoomEvent):
    """A slot's price, capacity or status changed (blocking and unblocking included)."""

    name: ClassVar[str] = "SlotChanged"
    slot: SlotSnapshot
    """The slot after the change."""


MAX_RULE_MINUTES = 10 * 366 * 24 * 60
"""The longest notice, horizon, hold or offer a rule may set: ten years, in minutes."""
Minutes = Annotated[int, Field(ge=0, le=MAX_RULE_MINUTES)]
Percent = Annotated[
    ExactDecimal,
    Field(ge=0, le=100, description="A percentage from 0 to 100, as a decimal string"),
]


class QuotaPeriod(enum.StrEnum):
    """The window of the room's own calendar a quota counts in: ``day`` (local midnight to
    local midnight), ``week`` (an ISO week, from Monday) or ``month`` (a calendar month)."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class QuotaScope(enum.StrEnum):
    """What a quota counts: bookings of this ``room``, or of every room of its ``room_type``."""

    ROOM = "room"
    ROOM_TYPE = "room_type"


class BookingQuota(_Frozen):
    """One user holds at most ``most`` bookings whose slots start in one ``per`` window of the
    room's time zone, counted over ``scope``. A booking counts from when it is made until it
    is cancelled or expires: a completed booking (or a no-show) still counts."""

    most: Count
    """The most bookings one user may hold in one window."""
    per: QuotaPeriod
    """The window counted in."""
    scope: QuotaScope = QuotaScope.ROOM
    """Which bookings count."""


class RefundTierRule(_Frozen):
    """A user's cancellation at least ``notice_minutes`` before the start refunds ``percent``
    of the price."""

    notice_minutes: Minutes
    """The notice the cancellation must give, in minutes."""
    percent: Percent


class RoomRules(_Frozen):
    """The booking rules of a room: what the booking service checks a request against. Every
    duration is in whole minutes; a notice is met when at least that much time is left before
    the start. The rules in force: the room's own, else its room type's default, else the
    platform's, merged rule by rule by the timeslot service."""

    book_notice_minutes: Minutes = 0
    """A booking is made at least this long before the start."""
    cancel_notice_minutes: Minutes = 0
    """A user cancels at least this long before the start (an admin at any time)."""
    reschedule_notice_minutes: Minutes = 0
    """A user moves a booking at least this long before the start it leaves."""
    horizon_minutes: Annotated[int, Field(ge=1, le=MAX_RULE_MINUTES)] | None = None
    """A slot is booked at most this long before its start; null: no limit."""
    quotas: list[BookingQuota] = Field(default_factory=list, max_length=6)
    """Bookings per user and window; at most one per window and scope."""
    max_reschedules: Annotated[int, Field(ge=0, le=1000)] | None = None
    """How many times one booking may be moved; null: no limit."""
    hold_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)] | None = None
    """How long an unpaid booking holds its place; null: the booking service's setting."""
    refund_tiers: list[RefundTierRule] | None = Field(default=None, max_length=10)
    """What a user's cancellation refunds by the notice it gives, at most one tier per notice
    (less notice than every tier refunds nothing); null: the booking service's setting."""
    offer_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)] = 15
    """How long a place freed for the first waiter in line is held for them."""

    @model_validator(mode="after")
    def _consistent(self) -> RoomRules:
        if self.horizon_minutes is not None and self.horizon_minutes <= self.book_notice_minutes:
            raise ValueError("horizon_minutes must be longer than book_notice_minutes")
        kinds = [(quota.per, quota.scope) for quota in self.quotas]
        if len(set(kinds)) != len(kinds):
            raise ValueError("at most one quota per window and scope")
        notices = [tier.notice_minutes for tier in self.refund_tiers or ()]
        if len(set(notices)) != len(notices):
            raise ValueError("at most one refund tier per notice")
        return self


@_event
class RoomRulesSet(_RoomEvent):
    """The booking rules in force for a room: published when the room is created and whenever
    its rules, its type's defaults or the platform's defaults change what is in force. Each
    event carries the whole set; requests made after a booking service applied it follow it,
    and bookings made before keep what they got."""

    name: ClassVar[str] = "RoomRulesSet"
    rules: RoomRules
    """The rules in force."""
    room_version: Count = Field(description=ROOM_VERSION)


# --- booking ---------------------------------------------------------------------------


class Contact(_Frozen):
    """How to reach the person a booking is for: where its reminders go."""

    email: EmailAddress
    """The email address reminders are sent to."""
    phone: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{6,14}$")
    """A mobile number in E.164 form (``+4915112345678``) for SMS reminders; null when none was
    given (then no SMS is sent)."""


class Actor(enum.StrEnum):
    """Who did something: ``user`` (the person the booking is for), ``admin`` (an
    administrator, for them) or ``system`` (the platform itself, e.g. after a failed
    payment)."""

    USER = "user"
    ADMIN = "admin"
    SYSTEM = "system"


class _BookingEvent(Event):
    topic: ClassVar[str] = topics.BOOKING_EVENTS
    booking_id: UUID
    """The booking the event is about (a UUID the booking service issued); in a refund request
    for a payment no booking took, the booking id that payment named."""
    booking_version: Count | None = Field(default=None, description=BOOKING_VERSION)

    def aggregate_id(self) -> str:
        return str(self.booking_id)


@_event
class BookingCreated(_BookingEvent):
    """A place is held for a user until ``hold_expires_at``: what the payment service charges."""

    name: ClassVar[str] = "BookingCreated"
    user_id: Identifier
    """The user the booking is for: the subject (``sub``) of their access token."""
    slot_id: UUID
    """The slot the place is held in."""
    room_id: UUID
    """The room of the slot."""
    starts_at: UtcDatetime
    """When the slot starts: an ISO 8601 instant in UTC."""
    ends_at: UtcDatetime
    """When the slot ends: an ISO 8601 instant in UTC, after ``starts_at``."""
    price: Money
    """What the booking costs (the slot's price when it was booked): the amount to charge."""
    hold_expires_at: UtcDatetime
    """Until when the place is held unpaid (ISO 8601, UTC): a booking not paid by then expires
    (``BookingExpired``)."""


@_event
class BookingConfirmed(_BookingEvent):
    """Paid and confirmed: what the reminder service needs to remind."""

    name: ClassVar[str] = "BookingConfirmed"
    user_id: Identifier
    """The user the booking is for: the subject (``sub``) of their access token."""
    slot_id: UUID
    """The slot the booking holds a place in."""
    room_id: UUID
    """The room of the slot."""
    room_name: Label
    """The room's name when the booking was confirmed (for reminder texts)."""
    room_time_zone: ZoneName
    """The IANA name of the room's time zone (``Europe/Berlin``): show the start and end to
    people in it."""
    starts_at: UtcDatetime
    """When the booked slot starts: an ISO 8601 instant in UTC."""
    ends_at: UtcDatetime
    """When the booked slot ends: an ISO 8601 instant in UTC, after ``starts_at``."""
    contact: Contact
    """Where the booking's reminders go."""
    payment_id: Identifier
    """The payment service's id of the payment that paid the booking."""
    price: Money
    """What was paid for the booking."""


@_event
class BookingCancelled(_BookingEvent):
    """A pending or confirmed booking was cancelled and its place is free again; what a paid
    one gets back by the refund policy is ``refund`` (a ``RefundRequested`` asks for it)."""

    name: ClassVar[str] = "BookingCancelled"
    user_id: Identifier
    """The user the booking was for: the subject (``sub``) of their access token."""
    slot_id: UUID
    """The slot whose place was freed."""
    room_id: UUID
    """The room of the slot."""
    cancelled_by: Actor
    """Who cancelled: the user, an admin, or the system (a failed payment)."""
    reason: Note | None = None
    """Why, in the canceller's words (cut to 1000 characters); null when none was given."""
    refund: Money | None = None
    """What is refunded, by the refund policy; null when nothing is (the booking was not paid,
    or it was cancelled too late for a refund)."""


@_event
class RefundRequested(_BookingEvent):
    """Asks the payment service to return ``amount`` of ``payment_id``."""

    name: ClassVar[str] = "RefundRequested"
    refund_id: UUID
    """The refund's id, chosen by the booking service: a request repeated for the same refund
    has the same id, so refund each id once. Its outcome names it."""
    payment_id: Identifier
    """The payment service's id of the payment to refund from."""
    amount: Money
    """How much to return, in the payment's currency; never more than was paid."""
    reason: Note = Field(
        description="Why the money is returned (the refund policy applied to a cancellation, "
        "a move to a cheaper slot, or a payment no booking took), for people to read; cut to "
        "1000 characters"
    )


@_event
class BookingRescheduled(_BookingEvent):
    """A confirmed booking moved to another slot of the same room before it started; the old
    slot's place is free again. A cheaper slot's difference is refunded (``RefundRequested``)."""

    name: ClassVar[str] = "BookingRescheduled"
    user_id: Identifier
    """The user the booking is for: the subject (``sub``) of their access token."""
    room_id: UUID
    """The room of both slots."""
    old_slot_id: UUID
    """The slot the booking left."""
    new_slot_id: UUID
    """The slot the booking holds a place in now."""
    old_starts_at: UtcDatetime
    """When the old slot starts: an ISO 8601 instant in UTC."""
    new_starts_at: UtcDatetime
    """When the new slot starts: an ISO 8601 instant in UTC."""
    new_ends_at: UtcDatetime
    """When the new slot ends: an ISO 8601 instant in UTC, after ``new_starts_at``."""
    room_time_zone: ZoneName
    """The IANA name of the room's time zone (``Europe/Berlin``): show the times to people in
    it."""
    price_difference: Money
    """The new slot's price minus what the booking cost before the move, in the booking's
    currency: zero, or negative when the new slot is cheaper (that much is refunded). A move
    to a slot that costs more is refused."""


@_event
class BookingCompleted(_BookingEvent):
    """An admin marked a confirmed booking whose slot has started as completed."""

    name: ClassVar[str] = "BookingCompleted"
    slot_id: UUID
    """The booked slot."""
    room_id: UUID
    """The room of the slot."""


@_event
class BookingNoShow(_BookingEvent):
    """An admin marked a confirmed booking whose slot has started as a no-show: the person
    did not come. Nothing is refunded."""

    name: ClassVar[str] = "BookingNoShow"
    slot_id: UUID
    """The booked slot."""
    room_id: UUID
    """The room of the slot."""


@_event
class BookingExpired(_BookingEvent):
    """The hold ran out unpaid; the place is free again."""

    name: ClassVar[str] = "BookingExpired"
    user_id: Identifier
    """The user the booking was for: the subject (``sub``) of their access token."""
    slot_id: UUID
    """The slot whose place was freed."""
    room_id: UUID
    """The room of the slot."""


# --- the waitlist (published by the booking service) ------------------------------------
#
# Events of one slot's line are keyed by the slot, so they stay in order on one partition.


class WaitlistEntryEnd(enum.StrEnum):
    """Why an entry left the line without an offer taken: ``left`` (the user left it, or
    declined the offer), ``skipped`` (passed over: they held a booking at the slot's time when
    a place freed)."""

    LEFT = "left"
    SKIPPED = "skipped"


class _WaitlistEvent(Event):
    topic: ClassVar[str] = topics.BOOKING_EVENTS
    entry_id: UUID
    """The waitlist entry (a UUID the booking service issued)."""
    slot_id: UUID
    """The full slot the user waits for."""
    room_id: UUID
    """The room of the slot."""
    user_id: Identifier
    """The user in line: the subject (``sub``) of their access token."""

    def aggregate_id(self) -> str:
        return str(self.slot_id)


@_event
class WaitlistJoined(_WaitlistEvent):
    """A user joined the line for a full slot."""

    name: ClassVar[str] = "WaitlistJoined"
    position: Count
    """Their place in the line when they joined (1: first)."""


@_event
class WaitlistLeft(_WaitlistEvent):
    """An entry left the line: the user left it or declined an offer, or it was passed over."""

    name: ClassVar[str] = "WaitlistLeft"
    reason: WaitlistEntryEnd
    """Why it left."""
    declined_offer: bool = False
    """True when the user declined a place held for them (it goes to the next in line)."""


@_event
class WaitlistOfferMade(_WaitlistEvent):
    """A freed place of the slot is held for the first waiter in line until
    ``offer_expires_at``: they book it with the offer (``POST /bookings`` with ``offer_id``),
    decline it, or let it lapse, and the next waiter gets it. What the reminder service needs
    to tell them."""

    name: ClassVar[str] = "WaitlistOfferMade"
    offer_expires_at: UtcDatetime
    """Until when the place is held for them: an ISO 8601 instant in UTC."""
    starts_at: UtcDatetime
    """When the slot starts: an ISO 8601 instant in UTC."""
    ends_at: UtcDatetime
    """When the slot ends: an ISO 8601 instant in UTC, after ``starts_at``."""
    room_name: Label
    """The room's name (for the message)."""
    room_time_zone: ZoneName
    """The IANA name of the room's time zone: show the times to people in it."""
    contact: Contact
    """Where to tell them."""


@_event
class WaitlistOfferTaken(_WaitlistEvent):
    """The waiter booked the place held for them: an ordinary pending booking, paid as usual."""

    name: ClassVar[str] = "WaitlistOfferTaken"
    booking_id: UUID
    """The booking made with the offer."""


@_event
class WaitlistOfferLapsed(_WaitlistEvent):
    """The waiter let the offer run out; the place goes to the next in line."""

    name: ClassVar[str] = "WaitlistOfferLapsed"


@_event
class WaitlistExpired(_WaitlistEvent):
    """The slot started while the entry was in line (with or without an offer): the line is
    closed."""

    name: ClassVar[str] = "WaitlistExpired"


# --- payments (published by the external payment service) ------------------------------


class _PaymentEvent(Event):
    topic: ClassVar[str] = topics.PAYMENT_EVENTS
    booking_id: UUID
    """The booking the payment is for: the ``booking_id`` of its ``BookingCreated``."""
    payment_id: Identifier
    """The payment service's id of the payment (a refund names it)."""

    def aggregate_id(self) -> str:
        return str(self.booking_id)


@_event
class PaymentSucceeded(_PaymentEvent):
    """The payment service charged for a booking. A payment of the price of a pending booking
    confirms it; any other (of another amount or currency, for a booking that does not exist,
    too late, or a second one) is returned in full (``RefundRequested``)."""

    name: ClassVar[str] = "PaymentSucceeded"
    amount: Money
    """What was charged."""


@_event
class PaymentFailed(_PaymentEvent):
    """The payment service could not charge for a booking: the pending booking is cancelled
    (by ``system``) and its place is free again."""

    name: ClassVar[str] = "PaymentFailed"
    reason: Note = Field(
        description="Why the payment failed, in the payment service's words, for people to "
        "read; cut to 1000 characters"
    )


class _RefundOutcome(_PaymentEvent):
    """What became of a ``RefundRequested`` (same ``refund_id``, ``payment_id`` and amount)."""

    refund_id: UUID
    """The ``refund_id`` of the ``RefundRequested`` this answers."""
    amount: Money
    """The ``amount`` of that request."""


@_event
class RefundSucceeded(_RefundOutcome):
    """The payment service returned ``amount`` of ``payment_id`` to the payer."""

    name: ClassVar[str] = "RefundSucceeded"


@_event
class RefundFailed(_RefundOutcome):
    """The payment service could not return the money; ``reason`` says why."""

    name: ClassVar[str] = "RefundFailed"
    reason: Note = Field(
        description="Why the refund failed, in the payment service's words, for people to "
        "read; cut to 1000 characters"
    )


# --- reminders -------------------------------------------------------------------------


class ReminderChannel(enum.StrEnum):
    """How, and so when, a booking is reminded: ``email_24h`` and ``email_1h`` are emails
    (by default 24 hours and 1 hour before the start), ``sms`` a text message (only for a
    contact with a phone number); ``waitlist_offer`` the email telling a waiter that a place
    is held for them (its ``booking_id`` is then the waitlist entry's id)."""

    EMAIL_24H = "email_24h"
    EMAIL_1H = "email_1h"
    SMS = "sms"
    WAITLIST_OFFER = "waitlist_offer"


@_event
class ReminderDue(Event):
    """A job for the delivery workers: deliver this reminder now."""

    name: ClassVar[str] = "ReminderDue"
    topic: ClassVar[str] = topics.REMINDER_JOBS
    reminder_id: UUID
    """The reminder to deliver (a UUID the reminder service issued)."""
    booking_id: UUID
    """The booking the reminder is for."""
    channel: ReminderChannel
    """How to deliver it."""
    scheduled_for: UtcDatetime
    """When the reminder is due: an ISO 8601 instant in UTC."""

    def aggregate_id(self) -> str:
        return str(self.reminder_id)


class _ReminderOutcome(Event):
    topic: ClassVar[str] = topics.REMINDER_EVENTS
    reminder_id: UUID
    """The reminder (a UUID the reminder service issued)."""
    booking_id: UUID
    """The booking the reminder is for."""
    channel: ReminderChannel
    """How it was to be delivered."""

    def aggregate_id(self) -> str:
        return str(self.booking_id)


@_event
class ReminderSent(_ReminderOutcome):
    """A reminder was delivered: the mail server or SMS gateway accepted it."""

    name: ClassVar[str] = "ReminderSent"
    sent_at: UtcDatetime
    """When it was accepted: an ISO 8601 instant in UTC."""
    message_id: Identifier
    """The id it was sent with (the email's ``Message-ID``, the SMS gateway's idempotency key):
    the same for every attempt to deliver the reminder."""


@_event
class ReminderFailed(_ReminderOutcome):
    """A reminder could not be delivered and is given up: no further attempt is made."""

    name: ClassVar[str] = "ReminderFailed"
    attempts: Count
    """How many times delivery was tried."""
    error: Note = Field(
        description="Why the last attempt failed, for people to read; cut to 1000 characters"
    )
