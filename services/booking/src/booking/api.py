"""HTTP routes: request -> use case in one transaction -> response.

A user sees and changes only their own bookings (anyone else's answer 404, as if they did not
exist); admins see all and alone complete bookings or mark no-shows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Response

from booking import domain, handlers, schemas
from booking.coalescing import CreateCoalescer
from booking.domain import Action, BookingStatus, PaymentStatus
from booking.store import SqlStore
from booking_contracts.catalogue import Contact
from platform_runtime.http.auth import AdminUser, CurrentUser, Principal
from platform_runtime.http.context import RequestContext, request_context
from platform_runtime.http.inputs import Instant
from platform_runtime.http.pagination import TimeAndIdCursor, decode_time_and_id, encode_cursor
from platform_runtime.http.problems import PROBLEM_RESPONSES

router = APIRouter(responses=PROBLEM_RESPONSES, tags=["bookings"])


@dataclass(frozen=True)
class Config:
    """What the routes get besides the runtime and the clock: the rules, and the coalescer
    that writes concurrent creates a batch at a time."""

    rules: handlers.Rules
    coalescer: CreateCoalescer


Ctx = Annotated[RequestContext[Config], Depends(request_context)]


@asynccontextmanager
async def _store(ctx: RequestContext[Config]) -> AsyncIterator[SqlStore]:
    """The request's transaction, seen through the store."""
    async with ctx.transaction() as session:
        yield SqlStore(session)


def _caller(principal: Principal) -> handlers.Caller:
    return handlers.Caller(user_id=principal.subject, is_admin=principal.is_admin)


def _contact(given: schemas.ContactIn, principal: Principal) -> Contact:
    """Where the caller is told about a booking or an offer: the body's email, else the
    token's; neither is a 422 (nothing is changed)."""
    email = given.email or principal.email
    if not email:
        raise domain.InvalidBooking("give contact.email: the token carries no email")
    return Contact(email=email, phone=given.phone)


_TOO_MANY_UNPAID_HOLDS: dict[int | str, dict[str, Any]] = {
    429: PROBLEM_RESPONSES[409]
    | {"description": "The user already holds as many unpaid bookings as allowed"}
}


@router.post(
    "/bookings",
    status_code=201,
    response_model=schemas.BookingOut,
    responses=_TOO_MANY_UNPAID_HOLDS,
)
async def create_booking(
    body: schemas.BookingIn,
    ctx: Ctx,
    user: CurrentUser,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=255,
            description="Retrying with the same key returns the same booking",
        ),
    ] = None,
) -> Response:
    """Hold a place in a slot until ``hold_expires_at``; pay to confirm it.

    A user holds at most 5 unpaid (pending) bookings at a time (the service's setting
    ``BOOKING_MAX_UNPAID_HOLDS``): one more is refused with 429 until one of them is paid,
    cancelled or expires. An admin booking for themselves is not capped.

    A retry with the same ``Idempotency-Key`` and body answers the same booking (201 with
    ``Idempotent-Replayed: true``), also while the first request is still being made (the
    retry waits for it) and also when the user has reached the cap since.
    """
    request = handlers.NewBooking(
        slot_id=body.slot_id,
        contact=_contact(body.contact, user),
        booking_type=body.booking_type,
        notes=body.notes,
        attributes=body.attributes,
        idempotency_key=idempotency_key,
    )
    if body.offer_id is not None:
        async with _store(ctx) as store:
            created = await handlers.book_offer(
                store,
                ctx.runtime.outbox,
                _caller(user),
                request,
                body.offer_id,
                now=ctx.clock(),
                rules=ctx.config.rules,
            )
    else:
        created = await ctx.config.coalescer.create(_caller(user), request, now=ctx.clock())
    # The hot path: the answer is the model's JSON as it is (the model is the declared
    # response, so FastAPI's second validation and serialisation of it would add nothing).
    return Response(
        schemas.BookingOut.of(created.booking).model_dump_json(by_alias=True),
        status_code=201,
        media_type="application/json",
        headers={"Idempotent-Replayed": "true"} if created.replayed else None,
    )


@router.get("/bookings")
async def list_bookings(
    ctx: Ctx,
    user: CurrentUser,
    status: Annotated[list[BookingStatus] | None, Query()] = None,
    payment_status: Annotated[
        list[PaymentStatus] | None,
        Query(description="e.g. refund_failed: the refunds an admin has to look at"),
    ] = None,
    starts_from: Annotated[Instant | None, Query(description="Starting at or after")] = None,
    starts_before: Annotated[Instant | None, Query(description="Starting before")] = None,
    user_id: Annotated[str | None, Query(max_length=255, description="Admins only")] = None,
    room_id: Annotated[UUID | None, Query(description="Admins only")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: TimeAndIdCursor = None,
) -> schemas.BookingPage:
    """The caller's bookings by start time; admins may look at anyone's or a room's."""
    if not user.is_admin and (user_id not in (None, user.subject) or room_id is not None):
        raise domain.Forbidden("only admins filter by another user or by room")
    where = domain.BookingFilter(
        user_id=user_id if user.is_admin else user.subject,
        room_id=room_id,
        statuses=tuple(status or ()),
        payment_statuses=tuple(payment_status or ()),
        starts_from=starts_from,
        starts_before=starts_before,
    )
    async with _store(ctx) as store:
        found = await store.list_bookings(where, after=decode_time_and_id(cursor), limit=limit + 1)
    page = found[:limit]
    next_cursor = encode_cursor(page[-1].starts_at, page[-1].id) if len(found) > limit else None
    return schemas.BookingPage(
        items=[schemas.BookingOut.of(b, for_admin=user.is_admin) for b in page],
        next_cursor=next_cursor,
    )


@router.get("/bookings/{booking_id}")
async def get_booking(booking_id: UUID, ctx: Ctx, user: CurrentUser) -> schemas.BookingOut:
    """One of the caller's bookings; admins see anyone's. Another user's booking is not found
    (404), as one that does not exist."""
    async with _store(ctx) as store:
        booking = await handlers.visible_booking(store, _caller(user), booking_id)
    return schemas.BookingOut.of(booking, for_admin=user.is_admin)


@router.get("/rooms/{room_id}/bookable", tags=["availability"])
async def bookable_slots(
    room_id: UUID,
    ctx: Ctx,
    user: CurrentUser,
    on: Annotated[date, Query(alias="date", description="A day of the room's own calendar")],
) -> schemas.BookableOut:
    """Availability "for me": the room's slots on that day the caller could book now under
    the room's rules, as this service applies them: open, not started, with a place left,
    not held by the caller already, within the room's notice to book and horizon, and under
    each of its quotas by the caller's own bookings. It follows the timeslot service by one
    event hop. The plain search (the timeslot service's availability) stays as it is: it
    knows neither the caller nor the rules' counts."""
    now = ctx.clock()
    async with _store(ctx) as store:
        room, slots = await handlers.bookable_slots(store, _caller(user), room_id, on, now=now)
    return schemas.BookableOut.of(room, on, slots)


@router.post("/slots/{slot_id}/waitlist", status_code=201, tags=["waitlist"])
async def join_waitlist(
    slot_id: UUID, ctx: Ctx, user: CurrentUser, body: schemas.WaitlistIn | None = None
) -> schemas.WaitlistEntryOut:
    """Queue for a full slot. When a place of it frees, it is held for the first in line
    for the room's offer time (15 minutes unless the room says otherwise) and they are told
    by email; they book it with `offer_id`, leave the line to decline it, or let it lapse,
    and the next in line gets it. One place in a slot's line per user; at most
    `BOOKING_MAX_WAITLISTS` lines per user. 409 if the slot still has a place (book it), has
    started, or the caller is in its line or holds a place in it already; 404 unknown slot."""
    body = body or schemas.WaitlistIn()
    contact = _contact(body.contact, user)
    async with _store(ctx) as store:
        in_line = await handlers.join_waitlist(
            store,
            ctx.runtime.outbox,
            _caller(user),
            slot_id,
            contact,
            now=ctx.clock(),
            rules=ctx.config.rules,
        )
    return schemas.WaitlistEntryOut.of(in_line.entry, in_line.position)


@router.get("/slots/{slot_id}/waitlist", tags=["waitlist"])
async def my_place_in_line(slot_id: UUID, ctx: Ctx, user: CurrentUser) -> schemas.WaitlistEntryOut:
    """The caller's place in the slot's line, or the offer held for them (404: not in it)."""
    async with _store(ctx) as store:
        in_line = await handlers.my_place_in_line(store, _caller(user), slot_id)
    return schemas.WaitlistEntryOut.of(in_line.entry, in_line.position)


@router.delete("/slots/{slot_id}/waitlist", tags=["waitlist"])
async def leave_waitlist(slot_id: UUID, ctx: Ctx, user: CurrentUser) -> schemas.WaitlistEntryOut:
    """Leave the slot's line; with an offer held, this declines it and the place goes to the
    next in line (404: not in it)."""
    async with _store(ctx) as store:
        left = await handlers.leave_waitlist(
            store, ctx.runtime.outbox, _caller(user), slot_id, now=ctx.clock()
        )
    return schemas.WaitlistEntryOut.of(left, None)


@router.get("/bookings/{booking_id}/refund-quote")
async def refund_quote(booking_id: UUID, ctx: Ctx, user: CurrentUser) -> schemas.RefundQuoteOut:
    """What cancelling now would refund, by the refund policy (409 if it cannot be cancelled)."""
    now = ctx.clock()
    async with _store(ctx) as store:
        booking, quote = await handlers.refund_quote(
            store, _caller(user), booking_id, now=now, rules=ctx.config.rules
        )
    return schemas.RefundQuoteOut(
        booking_id=booking.id,
        percent=quote.percent,
        amount=quote.amount,
        reason=quote.reason,
        quoted_at=now,
    )


@router.post("/bookings/{booking_id}/cancel")
async def cancel_booking(
    booking_id: UUID, ctx: Ctx, user: CurrentUser, body: schemas.CancelIn | None = None
) -> schemas.BookingOut:
    """Cancel a pending or confirmed booking; a paid one is refunded by the policy.

    The refund counts the notice to the start the booking had when it was paid, wherever it
    was moved since; nothing once the booked slot has started. ``payment_status`` is
    ``refund_pending`` until the payment service reports the refund made (``refunded``) or
    not (``refund_failed``).
    """
    async with _store(ctx) as store:
        booking = await handlers.cancel(
            store,
            ctx.runtime.outbox,
            _caller(user),
            booking_id,
            reason=body.reason if body else None,
            now=ctx.clock(),
            rules=ctx.config.rules,
        )
    return schemas.BookingOut.of(booking, for_admin=user.is_admin)


@router.post("/bookings/{booking_id}/reschedule")
async def reschedule_booking(
    booking_id: UUID, body: schemas.RescheduleIn, ctx: Ctx, user: CurrentUser
) -> schemas.BookingOut:
    """Move a confirmed booking to another open slot of the same room before it starts.

    A booking is paid once and never charged again: a slot that costs more than the
    booking's price, or is priced in another currency, is refused (409, naming both prices;
    cancel and book it instead). A move to a cheaper slot refunds the difference
    (``payment_status`` ``refund_pending``, ``refund`` the amount) and the new slot's price
    becomes the booking's. What cancelling refunds still counts the notice to the start the
    booking had when it was paid (``refund_basis_starts_at``): moving never raises it.
    """
    async with _store(ctx) as store:
        booking = await handlers.reschedule(
            store,
            ctx.runtime.outbox,
            _caller(user),
            booking_id,
            new_slot_id=body.slot_id,
            now=ctx.clock(),
        )
    return schemas.BookingOut.of(booking, for_admin=user.is_admin)


@router.post("/bookings/{booking_id}/complete")
async def complete_booking(booking_id: UUID, ctx: Ctx, _: AdminUser) -> schemas.BookingOut:
    """Mark a confirmed booking whose slot has started as completed (admins).

    Any other booking is refused with 409. Publishes `BookingCompleted`."""
    return await _finish(ctx, booking_id, Action.COMPLETE)


@router.post("/bookings/{booking_id}/no-show")
async def mark_no_show(booking_id: UUID, ctx: Ctx, _: AdminUser) -> schemas.BookingOut:
    """Mark a confirmed booking whose slot has started as a no-show (admins); nothing is
    refunded.

    Any other booking is refused with 409. Publishes `BookingNoShow`."""
    return await _finish(ctx, booking_id, Action.NO_SHOW)


async def _finish(
    ctx: RequestContext[Config], booking_id: UUID, action: Action
) -> schemas.BookingOut:
    async with _store(ctx) as store:
        booking = await handlers.finish(
            store, ctx.runtime.outbox, booking_id, action=action, now=ctx.clock()
        )
    return schemas.BookingOut.of(booking, for_admin=True)
