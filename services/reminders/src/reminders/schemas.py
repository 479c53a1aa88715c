"""What the reminders service's HTTP API answers (an admin's view of a booking's reminders)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

from pydantic import BaseModel, Field

from reminders.domain import Channel, Status

if TYPE_CHECKING:
    from reminders.domain import StoredReminder


class ReminderOut(BaseModel):
    id: UUID
    channel: Channel
    status: Status
    scheduled_for: datetime = Field(description="The reminder's time: start minus its offset")
    due_at: datetime = Field(description="When it goes out (later than scheduled on retries)")
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

    @classmethod
    def of(cls, reminder: StoredReminder) -> ReminderOut:
        return cls.model_validate(reminder, from_attributes=True)


class BookingRemindersOut(BaseModel):
    booking_id: UUID
    reminders: list[ReminderOut] = Field(description="By scheduled time")
