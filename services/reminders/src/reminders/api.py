"""HTTP routes of the reminders service (besides health and metrics): an admin's view."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from reminders import store
from reminders.domain import Channel, Status
from shared.http.auth import AdminUser
from shared.http.problems import PROBLEM_RESPONSES
from shared.service import ServiceRuntime

router = APIRouter(responses=PROBLEM_RESPONSES, tags=["reminders"])


class BookingNotFound(Exception):
    """No reminder and no event of this booking is known here."""


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
    def of(cls, row: Any) -> ReminderOut:
        v = row._mapping
        return cls(channel=v["kind"], **{k: v[k] for k in cls.model_fields if k != "channel"})


class BookingRemindersOut(BaseModel):
    booking_id: UUID
    reminders: list[ReminderOut] = Field(description="By scheduled time")


@router.get("/bookings/{booking_id}/reminders")
async def booking_reminders(
    booking_id: UUID, request: Request, _: AdminUser
) -> BookingRemindersOut:
    """Every reminder of a booking, live or not, with its status (admins only)."""
    runtime: ServiceRuntime = request.app.state.runtime
    async with runtime.sessions.begin() as session:
        rows = await store.reminders_of(session, booking_id)
        if not rows and not await store.booking_known(session, booking_id):
            raise BookingNotFound(f"no reminders of booking {booking_id} are known")
    return BookingRemindersOut(booking_id=booking_id, reminders=[ReminderOut.of(r) for r in rows])
