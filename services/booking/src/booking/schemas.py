"""HTTP request and response bodies of the booking service (never the table rows)."""

from __future__ import annotations

from datetime import date as date_
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field

from booking import domain
from booking.domain import BookingStatus, PaymentStatus
from booking_contracts.bounds import EmailAddress
from booking_contracts.catalogue import Actor
from booking_contracts.money import Money
from platform_runtime.http.inputs import FreeFormObject, RequestModel

PHONE_PATTERN = r"^\+[1-9][0-9]{6,14}$"


class _In(RequestModel):
    """A request body: unknown members, NUL characters and NaN/Infinity are refused."""


class ContactIn(_In):
    email: EmailAddress | None = Field(
        default=None, description="Where reminders go; default: the email claim of the token"
    )
    phone: str | None = Field(
        default=None, pattern=PHONE_PATTERN, description="E.164, for SMS reminders"
    )


class BookingIn(_In):
    slot_id: UUID
    offer_id: UUID | None = Field(
        default=None,
        description="A waitlist offer of this slot held for the caller (WaitlistOfferMade's "
        "entry_id): the booking takes the place it holds",
    )
    contact: ContactIn = Field(default_factory=ContactIn)
    booking_type: str = Field(default="standard", min_length=1, max_length=32)
    notes: str = Field(default="", max_length=2000)
    attributes: FreeFormObject = Field(default_factory=dict)


class CancelIn(_In):
    reason: str | None = Field(default=None, max_length=500)


class RescheduleIn(_In):
    slot_id: UUID = Field(description="Another slot of the same room")


class ContactOut(BaseModel):
    email: str
    phone: str | None


class BookingOut(BaseModel):
    id: UUID
    user_id: str
    room_id: UUID
    slot_id: UUID
    starts_at: datetime
    ends_at: datetime
    status: BookingStatus
    booking_type: str
    price: Money = Field(
        description="What the booking costs; a move to a cheaper slot lowers it to that slot's"
    )
    payment_status: PaymentStatus = Field(
        description="pending, paid, then with refunds refund_pending until the payment service "
        "answers, refunded when every refund was made, refund_failed when one was not"
    )
    payment_id: str | None
    refund: Money | None = Field(description="Returned or being returned in all, if anything")
    refund_basis_starts_at: datetime | None = Field(
        description="The start the booking had when it was paid: cancellation notice counts to "
        "it, wherever the booking was moved since"
    )
    refund_failure_reason: str | None = Field(
        default=None, description="Why the payment service could not refund (admins only)"
    )
    notes: str
    attributes: dict[str, Any]
    contact: ContactOut
    hold_expires_at: datetime | None = Field(description="Until when an unpaid booking holds")
    created_at: datetime
    updated_at: datetime
    cancelled_at: datetime | None
    cancelled_by: Actor | None
    cancellation_reason: str | None

    @classmethod
    def of(cls, booking: domain.Booking, *, for_admin: bool = False) -> BookingOut:
        """The booking as the caller may see it: why a refund failed is for admins to act on
        (it may carry the payment provider's internals)."""
        out = cls.model_validate(booking, from_attributes=True)
        hidden: dict[str, Any] = {}
        if booking.status is not BookingStatus.PENDING:
            hidden["hold_expires_at"] = None  # nothing is held any more
        if not for_admin:
            hidden["refund_failure_reason"] = None
        return out.model_copy(update=hidden) if hidden else out


class BookingPage(BaseModel):
    items: list[BookingOut]
    next_cursor: str | None


class RefundQuoteOut(BaseModel):
    booking_id: UUID
    percent: Decimal = Field(description="Share of the price refunded if cancelled now")
    amount: Money
    reason: str
    quoted_at: datetime


class BookableSlotOut(BaseModel):
    slot_id: UUID
    starts_at: datetime
    ends_at: datetime
    price: Money
    places_left: int


class BookableOut(BaseModel):
    room_id: UUID
    date: date_
    time_zone: str = Field(description="The room's IANA time zone: the day is of its calendar")
    items: list[BookableSlotOut]

    @classmethod
    def of(cls, room: domain.Room, on: date_, slots: list[domain.Slot]) -> BookableOut:
        return cls(
            room_id=room.id,
            date=on,
            time_zone=room.time_zone,
            items=[
                BookableSlotOut(
                    slot_id=slot.id,
                    starts_at=slot.starts_at,
                    ends_at=slot.ends_at,
                    price=slot.price,
                    places_left=slot.max_bookings - slot.booked_count,
                )
                for slot in slots
            ],
        )


class WaitlistIn(_In):
    contact: ContactIn = Field(default_factory=ContactIn)


class WaitlistEntryOut(BaseModel):
    entry_id: UUID
    slot_id: UUID
    status: domain.WaitlistStatus
    position: int | None = Field(
        description="1: next when a place frees; null once an offer is made or the entry ended"
    )
    offer_expires_at: datetime | None = Field(
        description="While an offer is held for the caller: until when (book with offer_id)"
    )
    booking_id: UUID | None
    joined_at: datetime

    @classmethod
    def of(cls, entry: domain.WaitlistEntry, position: int | None) -> WaitlistEntryOut:
        return cls(
            entry_id=entry.id,
            slot_id=entry.slot_id,
            status=entry.status,
            position=position,
            offer_expires_at=entry.offer_expires_at,
            booking_id=entry.booking_id,
            joined_at=entry.created_at,
        )
