"""The payload models of every event of the platform (version 1).

Producers and consumers import these models and nothing else of each other. A change that
a consumer could not read is a new version (``version = 2``) published beside the old one.
"""

from __future__ import annotations

import enum
from typing import ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from shared.events import topics
from shared.events.bounds import Count, Identifier, Label, Note, ZoneName
from shared.events.envelope import Event, EventCatalogue
from shared.events.money import Money, UtcDatetime


def _event(cls: type[Event]) -> type[Event]:
    return EventCatalogue.register(cls)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- timeslots -------------------------------------------------------------------------


class RoomType(enum.StrEnum):
    OFFICE = "office"
    CONSULTATION = "consultation"
    MEETING = "meeting"
    TREATMENT = "treatment"


class SlotStatus(enum.StrEnum):
    OPEN = "open"
    BLOCKED = "blocked"


class RoomSnapshot(_Frozen):
    room_id: UUID
    name: Label
    room_type: RoomType
    capacity: Count
    time_zone: ZoneName
    hourly_rate: Money
    active: bool


class SlotSnapshot(_Frozen):
    """A slot as the timeslot service holds it; ``revision`` grows with every change."""

    slot_id: UUID
    room_id: UUID
    starts_at: UtcDatetime
    ends_at: UtcDatetime
    price: Money
    max_bookings: Count
    status: SlotStatus
    revision: Count


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

    def aggregate_id(self) -> str:
        return str(self.room_id)


@_event
class RoomUpserted(_RoomEvent):
    """A room was created or its details changed."""

    name: ClassVar[str] = "RoomUpserted"
    room: RoomSnapshot
    room_version: Count | None = Field(default=None, description=ROOM_VERSION)


@_event
class RoomDeactivated(_RoomEvent):
    """A room takes no new bookings; existing ones stay."""

    name: ClassVar[str] = "RoomDeactivated"
    deactivated_at: UtcDatetime
    room_version: Count | None = Field(default=None, description=ROOM_VERSION)


@_event
class SlotsGenerated(_RoomEvent):
    """A batch of new slots of one room (generation publishes them in chunks)."""

    name: ClassVar[str] = "SlotsGenerated"
    slots: list[SlotSnapshot] = Field(min_length=1)


@_event
class SlotChanged(_RoomEvent):
    """A slot's price, capacity or status changed (blocking and unblocking included)."""

    name: ClassVar[str] = "SlotChanged"
    slot: SlotSnapshot


# --- booking ---------------------------------------------------------------------------


class Contact(_Frozen):
    email: EmailStr
    phone: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{6,14}$")


class Actor(enum.StrEnum):
    USER = "user"
    ADMIN = "admin"
    SYSTEM = "system"


class _BookingEvent(Event):
    topic: ClassVar[str] = topics.BOOKING_EVENTS
    booking_id: UUID
    booking_version: Count | None = Field(default=None, description=BOOKING_VERSION)

    def aggregate_id(self) -> str:
        return str(self.booking_id)


@_event
class BookingCreated(_BookingEvent):
    """A place is held for a user until ``hold_expires_at``: what the payment service charges."""

    name: ClassVar[str] = "BookingCreated"
    user_id: Identifier
    slot_id: UUID
    room_id: UUID
    starts_at: UtcDatetime
    ends_at: UtcDatetime
    price: Money
    hold_expires_at: UtcDatetime


@_event
class BookingConfirmed(_BookingEvent):
    """Paid and confirmed: what the reminder service needs to remind."""

    name: ClassVar[str] = "BookingConfirmed"
    user_id: Identifier
    slot_id: UUID
    room_id: UUID
    room_name: Label
    room_time_zone: ZoneName
    starts_at: UtcDatetime
    ends_at: UtcDatetime
    contact: Contact
    payment_id: Identifier
    price: Money


@_event
class BookingCancelled(_BookingEvent):
    name: ClassVar[str] = "BookingCancelled"
    user_id: Identifier
    slot_id: UUID
    room_id: UUID
    cancelled_by: Actor
    reason: Note | None = None
    refund: Money | None = None


@_event
class RefundRequested(_BookingEvent):
    """Asks the payment service to return ``amount`` of ``payment_id``."""

    name: ClassVar[str] = "RefundRequested"
    refund_id: UUID
    payment_id: Identifier
    amount: Money
    reason: Note


@_event
class BookingRescheduled(_BookingEvent):
    name: ClassVar[str] = "BookingRescheduled"
    user_id: Identifier
    room_id: UUID
    old_slot_id: UUID
    new_slot_id: UUID
    old_starts_at: UtcDatetime
    new_starts_at: UtcDatetime
    new_ends_at: UtcDatetime
    room_time_zone: ZoneName
    price_difference: Money


@_event
class BookingCompleted(_BookingEvent):
    name: ClassVar[str] = "BookingCompleted"
    slot_id: UUID
    room_id: UUID


@_event
class BookingNoShow(_BookingEvent):
    name: ClassVar[str] = "BookingNoShow"
    slot_id: UUID
    room_id: UUID


@_event
class BookingExpired(_BookingEvent):
    """The hold ran out unpaid; the place is free again."""

    name: ClassVar[str] = "BookingExpired"
    user_id: Identifier
    slot_id: UUID
    room_id: UUID


# --- payments (published by the external payment service) ------------------------------


class _PaymentEvent(Event):
    topic: ClassVar[str] = topics.PAYMENT_EVENTS
    booking_id: UUID
    payment_id: Identifier

    def aggregate_id(self) -> str:
        return str(self.booking_id)


@_event
class PaymentSucceeded(_PaymentEvent):
    name: ClassVar[str] = "PaymentSucceeded"
    amount: Money


@_event
class PaymentFailed(_PaymentEvent):
    name: ClassVar[str] = "PaymentFailed"
    reason: Note


class _RefundOutcome(_PaymentEvent):
    """What became of a ``RefundRequested`` (same ``refund_id``, ``payment_id`` and amount)."""

    refund_id: UUID
    amount: Money


@_event
class RefundSucceeded(_RefundOutcome):
    """The payment service returned ``amount`` of ``payment_id`` to the payer."""

    name: ClassVar[str] = "RefundSucceeded"


@_event
class RefundFailed(_RefundOutcome):
    """The payment service could not return the money; ``reason`` says why."""

    name: ClassVar[str] = "RefundFailed"
    reason: Note


# --- reminders -------------------------------------------------------------------------


class ReminderChannel(enum.StrEnum):
    EMAIL_24H = "email_24h"
    EMAIL_1H = "email_1h"
    SMS = "sms"


@_event
class ReminderDue(Event):
    """A job for the delivery workers: deliver this reminder now."""

    name: ClassVar[str] = "ReminderDue"
    topic: ClassVar[str] = topics.REMINDER_JOBS
    reminder_id: UUID
    booking_id: UUID
    channel: ReminderChannel
    scheduled_for: UtcDatetime

    def aggregate_id(self) -> str:
        return str(self.reminder_id)


class _ReminderOutcome(Event):
    topic: ClassVar[str] = topics.REMINDER_EVENTS
    reminder_id: UUID
    booking_id: UUID
    channel: ReminderChannel

    def aggregate_id(self) -> str:
        return str(self.booking_id)


@_event
class ReminderSent(_ReminderOutcome):
    name: ClassVar[str] = "ReminderSent"
    sent_at: UtcDatetime
    message_id: Identifier


@_event
class ReminderFailed(_ReminderOutcome):
    name: ClassVar[str] = "ReminderFailed"
    attempts: Count
    error: Note
