"""HTTP routes of the reminders service (besides health and metrics): an admin's view."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends

from platform_runtime.http.auth import AdminUser
from platform_runtime.http.context import RequestContext, request_context
from platform_runtime.http.problems import PROBLEM_RESPONSES
from reminders import handlers, schemas
from reminders.store import SqlStore

router = APIRouter(responses=PROBLEM_RESPONSES, tags=["reminders"])

Ctx = Annotated[RequestContext[None], Depends(request_context)]


@router.get("/bookings/{booking_id}/reminders")
async def booking_reminders(
    booking_id: UUID, ctx: Ctx, _: AdminUser
) -> schemas.BookingRemindersOut:
    """Every reminder of a booking, live or not, with its status (admins only)."""
    async with ctx.transaction() as session:
        rows = await handlers.booking_reminders(SqlStore(session), booking_id)
    return schemas.BookingRemindersOut(
        booking_id=booking_id, reminders=[schemas.ReminderOut.of(r) for r in rows]
    )
