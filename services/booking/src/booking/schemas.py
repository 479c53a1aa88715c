"""HTTP request and response bodies of the booking service (never the table rows)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from booking import store
from booking.domain import BookingStatus, PaymentStatus
from shared.events.catalogue import Actor
from shared.events.money import Money

PHONE_PATTERN = r"^\+[1-9]\d{6,14}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContactIn(_In):
    email: EmailStr | None = Field(
        default=None, description="Where reminders go; default: the email claim of the token"
    )
    phone: str | None = Field(
        default=None, pattern=PHONE_PATTERN, description="E.164, for SMS reminders"
    )


class BookingIn(_In):
    slot_id: UUID
    contact: ContactIn = Field(default_factory=ContactIn)
    booking_type: str = Field(default="standard", min_length=1, max_length=32)
    notes: str = Field(default="", max_length=2000)
    attributes: dict[str, Any] = Field(default_factory=dict, description="Free-form metadata")


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
    price: Money
    payment_status: PaymentStatus
    payment_id: str | None
    refund: Money | None
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
    def of(cls, booking: store.Booking) -> BookingOut:
        out = cls.model_validate(booking, from_attributes=True)
        if booking.status is not BookingStatus.PENDING:
            out = out.model_copy(update={"hold_expires_at": None})  # nothing is held any more
        return out


class BookingPage(BaseModel):
    items: list[BookingOut]
    next_cursor: str | None


class RefundQuoteOut(BaseModel):
    booking_id: UUID
    percent: Decimal = Field(description="Share of the price refunded if cancelled now")
    amount: Money
    reason: str
    quoted_at: datetime
