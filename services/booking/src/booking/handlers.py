"""Use cases of the booking service: each changes state and records its events together.

Every function runs in the caller's transaction. A booking row is locked (``FOR UPDATE``)
before it changes, so an HTTP request, a payment event and the hold sweeper that reach the
same booking at once take turns, and each sees what the previous one did.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from booking import domain, store
from booking.domain import Action, BookingStatus, PaymentStatus, RefundPolicy, RefundQuote
from shared.events.catalogue import (
    Actor,
    BookingCancelled,
    BookingCompleted,
    BookingConfirmed,
    BookingCreated,
    BookingExpired,
    BookingNoShow,
    BookingRescheduled,
    Contact,
    PaymentFailed,
    PaymentSucceeded,
    RefundRequested,
)
from shared.events.envelope import Envelope, Event
from shared.messaging import BatchItemError, caused_by
from shared.outbox import Outbox


@dataclass(frozen=True, slots=True)
class Rules:
    """The configurable parts of booking (from the service settings)."""

    hold: timedelta = timedelta(minutes=15)
    refunds: RefundPolicy = field(default_factory=RefundPolicy)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: the user id from the token and whether they hold the admin role."""

    user_id: str
    is_admin: bool = False

    def may_see(self, booking: store.Booking) -> bool:
        return self.is_admin or booking.user_id == self.user_id


@dataclass(frozen=True, slots=True)
class NewBooking:
    slot_id: UUID
    contact: Contact
    booking_type: str = "standard"
    notes: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None

    def fingerprint(self) -> str:
        """What makes two requests "the same" for an ``Idempotency-Key``."""
        body = {
            "slot_id": str(self.slot_id),
            "contact": self.contact.model_dump(mode="json"),
            "booking_type": self.booking_type,
            "notes": self.notes,
            "attributes": self.attributes,
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Created:
    booking: store.Booking
    replayed: bool
    """True when an earlier request with the same ``Idempotency-Key`` made the booking."""


# --- create ----------------------------------------------------------------------------


async def create(
    session: AsyncSession,
    outbox: Outbox,
    caller: Caller,
    request: NewBooking,
    *,
    now: datetime,
    rules: Rules,
) -> Created:
    """Hold one place of the slot for the caller until ``hold_expires_at`` (or refuse)."""
    if request.idempotency_key is not None:
        earlier = await _replay(session, caller, request)
        if earlier is not None:
            return Created(earlier, replayed=True)
    slot = await store.take_place(session, request.slot_id, now=now)
    try:  # no savepoint: a refused INSERT ends the whole transaction, place included
        booking = await store.insert_booking(
            session, _booking_row(caller, request, slot, now=now, rules=rules)
        )
    except IntegrityError as exc:
        # Either unique index: the same user already holds the slot, or a concurrent request
        # with the same key won. The key's owner, once committed, tells which.
        if request.idempotency_key is not None:
            raise _ConcurrentReplay from exc
        raise _already_holds(request.slot_id) from exc
    await outbox.add(session, _created_event(booking))
    return Created(booking, replayed=False)


def _booking_row(
    caller: Caller, request: NewBooking, slot: store.Slot, *, now: datetime, rules: Rules
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "user_id": caller.user_id,
        "room_id": slot.room_id,
        "slot_id": slot.id,
        "starts_at": slot.starts_at,
        "ends_at": slot.ends_at,
        "status": BookingStatus.PENDING.value,
        "booking_type": request.booking_type,
        "price": slot.price.amount,
        "currency": slot.price.currency,
        "payment_status": PaymentStatus.PENDING.value,
        "notes": request.notes,
        "attributes": request.attributes,
        "contact_email": request.contact.email,
        "contact_phone": request.contact.phone,
        "hold_expires_at": min(now + rules.hold, slot.starts_at),
        "idempotency_key": request.idempotency_key,
        "request_fingerprint": request.fingerprint() if request.idempotency_key else None,
    }


def _created_event(booking: store.Booking) -> BookingCreated:
    return BookingCreated(
        booking_id=booking.id,
        user_id=booking.user_id,
        slot_id=booking.slot_id,
        room_id=booking.room_id,
        starts_at=booking.starts_at,
        ends_at=booking.ends_at,
        price=booking.price,
        hold_expires_at=booking.hold_expires_at,
    )


Outcome = Created | domain.BookingError | None
"""Of one request in :func:`create_many`; ``None``: make this request alone (``create``)."""


async def create_many(
    session: AsyncSession,
    outbox: Outbox,
    requests: Sequence[tuple[Caller, NewBooking]],
    *,
    now: datetime,
    rules: Rules,
) -> list[Outcome]:
    """``create`` for many requests in one transaction, each succeeding or failing on its own.

    Replays are looked up in one query; the places are taken in one ``UPDATE`` (a slot with
    fewer places left than the batch wants gives them to its first requests); the bookings
    are written in one ``INSERT`` and their events in another. A request that got no place,
    or whose key is used twice in the batch, or whose key a concurrent request took
    meanwhile, gets ``None``: made alone afterwards, it learns exactly why not (or takes a
    place freed meanwhile). The database enforces the same invariants
    as for ``create`` (capacity, one live booking per user and slot, one use of a key).
    """
    outcomes: list[Outcome] = [None] * len(requests)
    keys = {(c.user_id, r.idempotency_key) for c, r in requests if r.idempotency_key}
    earlier = await store.find_by_idempotency_keys(session, sorted(keys)) if keys else {}
    todo: list[int] = []
    keys_in_batch: set[tuple[str, str]] = set()
    for i, (caller, request) in enumerate(requests):
        if request.idempotency_key is not None:
            key = (caller.user_id, request.idempotency_key)
            if key in earlier:
                outcomes[i] = _replayed(earlier[key], request)
                continue
            if key in keys_in_batch:
                continue  # alone, once the first one committed: it replays that one
            keys_in_batch.add(key)
        todo.append(i)
    if not todo:
        return outcomes
    wanted = Counter(requests[i][1].slot_id for i in todo)
    taken = await store.take_places(session, wanted, now=now)
    rows: dict[int, dict[str, Any]] = {}
    for i in todo:  # a slot's places go to its first requests, in the order they came
        caller, request = requests[i]
        slot, places = taken.get(request.slot_id, (None, 0))
        if slot is not None and places > 0:
            taken[request.slot_id] = (slot, places - 1)
            rows[i] = _booking_row(caller, request, slot, now=now, rules=rules)
    ordered = sorted(rows.values(), key=lambda r: (r["user_id"], str(r["slot_id"])))
    inserted = await store.insert_bookings(session, ordered) if ordered else {}
    refused: list[UUID] = []
    for i, row in rows.items():
        booking = inserted.get(row["id"])
        if booking is not None:
            outcomes[i] = Created(booking, replayed=False)
            continue
        refused.append(row["slot_id"])  # its place goes back
        if row["idempotency_key"] is None:
            outcomes[i] = _already_holds(row["slot_id"])
    if refused:
        await store.release_places(session, refused)
    await outbox.add(session, *(_created_event(b) for b in inserted.values()))
    return outcomes


def _replayed(earlier: store.Booking, request: NewBooking) -> Created | domain.BookingError:
    if earlier.request_fingerprint != request.fingerprint():
        return _key_reused()
    return Created(earlier, replayed=True)


def _key_reused() -> domain.IdempotencyConflict:
    return domain.IdempotencyConflict(
        "this Idempotency-Key was used for a different request; use a new key"
    )


class _ConcurrentReplay(Exception):
    """Another request with the same Idempotency-Key committed first: replay it."""


async def create_idempotently(
    sessions: Any,
    outbox: Outbox,
    caller: Caller,
    request: NewBooking,
    *,
    now: datetime,
    rules: Rules,
) -> Created:
    """``create`` in its own transaction; a lost race on the key replays the winner's booking."""
    try:
        async with sessions.begin() as session:
            return await create(session, outbox, caller, request, now=now, rules=rules)
    except _ConcurrentReplay as race:
        async with sessions.begin() as session:
            earlier = await _replay(session, caller, request)
        if earlier is None:
            raise _already_holds(request.slot_id) from race.__cause__
        return Created(earlier, replayed=True)


def _already_holds(slot_id: UUID) -> domain.SlotUnavailable:
    return domain.SlotUnavailable(f"you already hold a place in slot {slot_id}")


async def _replay(
    session: AsyncSession, caller: Caller, request: NewBooking
) -> store.Booking | None:
    assert request.idempotency_key is not None
    earlier = await store.find_by_idempotency_key(session, caller.user_id, request.idempotency_key)
    if earlier is not None and earlier.request_fingerprint != request.fingerprint():
        raise _key_reused()
    return earlier


# --- reads -----------------------------------------------------------------------------


async def visible_booking(
    session: AsyncSession, caller: Caller, booking_id: UUID, *, lock: bool = False
) -> store.Booking:
    """The booking if the caller may see it; anyone else learns nothing (not found)."""
    booking = await store.get_booking(session, booking_id, lock=lock)
    if not caller.may_see(booking):
        raise domain.BookingNotFound(f"booking {booking_id} does not exist")
    return booking


async def refund_quote(
    session: AsyncSession, caller: Caller, booking_id: UUID, *, now: datetime, rules: Rules
) -> tuple[store.Booking, RefundQuote]:
    """What cancelling now would refund (and whether cancelling is possible at all)."""
    booking = await visible_booking(session, caller, booking_id)
    domain.transition(booking.status, Action.CANCEL)
    return booking, _quote(booking, caller, now=now, rules=rules)


def _quote(booking: store.Booking, caller: Caller, *, now: datetime, rules: Rules) -> RefundQuote:
    return rules.refunds.quote(
        price=booking.price,
        paid=booking.payment_status is PaymentStatus.PAID,
        starts_at=booking.starts_at,
        now=now,
        by_admin=caller.is_admin and caller.user_id != booking.user_id,
    )


# --- cancel ----------------------------------------------------------------------------


async def cancel(
    session: AsyncSession,
    outbox: Outbox,
    caller: Caller,
    booking_id: UUID,
    *,
    reason: str | None,
    now: datetime,
    rules: Rules,
) -> store.Booking:
    """Cancel a pending or confirmed booking, free its place and refund by the policy."""
    booking = await visible_booking(session, caller, booking_id, lock=True)
    domain.transition(booking.status, Action.CANCEL)
    quote = _quote(booking, caller, now=now, rules=rules)
    by = Actor.ADMIN if caller.is_admin and caller.user_id != booking.user_id else Actor.USER
    return await _cancel(session, outbox, booking, by=by, reason=reason, quote=quote, now=now)


async def _cancel(
    session: AsyncSession,
    outbox: Outbox,
    booking: store.Booking,
    *,
    by: Actor,
    reason: str | None,
    quote: RefundQuote | None,
    now: datetime,
) -> store.Booking:
    refund = quote.amount if quote is not None and quote.amount.amount > 0 else None
    values: dict[str, Any] = {
        "status": BookingStatus.CANCELLED.value,
        "cancelled_at": now,
        "cancelled_by": by.value,
        "cancellation_reason": reason,
    }
    if refund is not None:
        values |= {"payment_status": PaymentStatus.REFUNDED.value, "refund_amount": refund.amount}
    cancelled = await store.update_booking(session, booking.id, values)
    await store.release_place(session, booking.slot_id)
    events: list[Event] = [
        BookingCancelled(
            booking_id=booking.id,
            user_id=booking.user_id,
            slot_id=booking.slot_id,
            room_id=booking.room_id,
            cancelled_by=by,
            reason=reason,
            refund=refund,
        )
    ]
    if refund is not None and quote is not None and booking.payment_id is not None:
        events.append(
            RefundRequested(
                booking_id=booking.id,
                refund_id=uuid.uuid4(),
                payment_id=booking.payment_id,
                amount=refund,
                reason=quote.reason,
            )
        )
    await outbox.add(session, *events)
    return cancelled


# --- reschedule, complete, no-show -----------------------------------------------------


async def reschedule(
    session: AsyncSession,
    outbox: Outbox,
    caller: Caller,
    booking_id: UUID,
    *,
    new_slot_id: UUID,
    now: datetime,
) -> store.Booking:
    """Move a confirmed booking to another slot of its room: both places change or neither."""
    booking = await visible_booking(session, caller, booking_id, lock=True)
    domain.transition(booking.status, Action.RESCHEDULE, starts_at=booking.starts_at, now=now)
    if new_slot_id == booking.slot_id:
        raise domain.InvalidBooking("the booking is already in that slot")
    target = await store.get_slot(session, new_slot_id)
    if target.room_id != booking.room_id:
        raise domain.InvalidBooking("a booking can only move to another slot of the same room")
    difference = domain.price_difference(booking.price, target.price)
    slot = await store.take_place(session, new_slot_id, now=now)
    await store.release_place(session, booking.slot_id)
    try:
        async with session.begin_nested():
            moved = await store.update_booking(
                session,
                booking.id,
                {"slot_id": slot.id, "starts_at": slot.starts_at, "ends_at": slot.ends_at},
            )
    except IntegrityError as exc:
        raise domain.SlotUnavailable(f"you already hold a place in slot {slot.id}") from exc
    room = await store.get_room(session, booking.room_id)
    await outbox.add(
        session,
        BookingRescheduled(
            booking_id=booking.id,
            user_id=booking.user_id,
            room_id=booking.room_id,
            old_slot_id=booking.slot_id,
            new_slot_id=slot.id,
            old_starts_at=booking.starts_at,
            new_starts_at=slot.starts_at,
            new_ends_at=slot.ends_at,
            room_time_zone=room.time_zone if room else "UTC",
            price_difference=difference,
        ),
    )
    return moved


async def finish(
    session: AsyncSession, outbox: Outbox, booking_id: UUID, *, action: Action, now: datetime
) -> store.Booking:
    """Admin: mark a confirmed booking whose slot has started completed or a no-show."""
    booking = await store.get_booking(session, booking_id, lock=True)
    status = domain.transition(booking.status, action, starts_at=booking.starts_at, now=now)
    finished = await store.update_booking(session, booking.id, {"status": status.value})
    event_type = BookingCompleted if action is Action.COMPLETE else BookingNoShow
    await outbox.add(
        session,
        event_type(booking_id=booking.id, slot_id=booking.slot_id, room_id=booking.room_id),
    )
    return finished


# --- holds -----------------------------------------------------------------------------


async def expire_holds(session: AsyncSession, outbox: Outbox, *, now: datetime, limit: int) -> int:
    """Expire pending bookings whose hold ran out and free their places; returns how many.

    Rows another replica is expiring are skipped (``SKIP LOCKED``), so any number of
    sweepers share the work without doing any of it twice.
    """
    expired = await store.expire_due(session, now=now, limit=limit)
    if not expired:
        return 0
    await store.release_places(session, [booking.slot_id for booking in expired])
    await outbox.add(
        session,
        *(
            BookingExpired(booking_id=b.id, user_id=b.user_id, slot_id=b.slot_id, room_id=b.room_id)
            for b in expired
        ),
    )
    return len(expired)


# --- payments --------------------------------------------------------------------------


class PaymentMismatch(domain.BookingError):
    """A payment whose amount or currency is not the booking's price."""


async def payment_succeeded(
    session: AsyncSession, outbox: Outbox, event: PaymentSucceeded
) -> store.Booking:
    """Confirm the pending booking; a payment that came too late or twice is refunded."""
    booking = await store.get_booking(session, event.booking_id, lock=True)
    if event.amount != booking.price:
        raise PaymentMismatch(
            f"payment {event.payment_id} of {event.amount} does not match the price "
            f"{booking.price} of booking {booking.id}"
        )
    if booking.payment_id == event.payment_id:
        return booking  # this payment was applied already (redelivered with a new event id)
    if booking.status is not BookingStatus.PENDING or booking.payment_id is not None:
        return await _refund_unwanted_payment(session, outbox, booking, event)
    domain.transition(booking.status, Action.CONFIRM)
    confirmed = await store.update_booking(
        session,
        booking.id,
        {
            "status": BookingStatus.CONFIRMED.value,
            "payment_status": PaymentStatus.PAID.value,
            "payment_id": event.payment_id,
        },
    )
    room = await store.get_room(session, booking.room_id)
    await outbox.add(session, _confirmed(booking, event.payment_id, room))
    return confirmed


async def payments_succeeded(
    session: AsyncSession, outbox: Outbox, payments: Sequence[tuple[Envelope, PaymentSucceeded]]
) -> None:
    """:func:`payment_succeeded` for many payments, in their order, set-based.

    The bookings are locked in id order and read in one statement; each payment that
    confirms a pending booking (the usual case) is written with the others in one
    ``UPDATE`` and one outbox ``INSERT``. Any other payment (a booking not found, a wrong
    amount, a booking paid, cancelled or expired, or a second payment of a booking of this
    batch) first writes the confirmations gathered so far and is then applied by
    :func:`payment_succeeded` on its own, so the end state is the one of applying the
    payments one by one. A payment that cannot be applied raises :class:`BatchItemError`.
    """
    booked = await store.lock_bookings(session, [event.booking_id for _, event in payments])
    rooms = await store.get_rooms(session, [b.room_id for b in booked.values()])
    confirms: list[tuple[Envelope, PaymentSucceeded, store.Booking]] = []
    seen: set[UUID] = set()
    for index, (envelope, event) in enumerate(payments):
        booking = booked.get(event.booking_id)
        if booking is not None and event.booking_id not in seen and _plain_confirm(booking, event):
            confirms.append((envelope, event, booking))
        else:
            await _confirm_all(session, outbox, confirms, rooms)
            confirms = []
            try:
                with caused_by(envelope):
                    await payment_succeeded(session, outbox, event)
            except Exception as exc:
                raise BatchItemError(index, exc) from exc
        seen.add(event.booking_id)
    await _confirm_all(session, outbox, confirms, rooms)


def _plain_confirm(booking: store.Booking, event: PaymentSucceeded) -> bool:
    """True if ``event`` pays the pending, unpaid ``booking`` exactly."""
    return (
        booking.status in domain.ALLOWED[Action.CONFIRM]
        and booking.payment_id is None
        and event.amount == booking.price
    )


async def _confirm_all(
    session: AsyncSession,
    outbox: Outbox,
    confirms: Sequence[tuple[Envelope, PaymentSucceeded, store.Booking]],
    rooms: dict[UUID, store.Room],
) -> None:
    if not confirms:
        return
    done = await store.confirm_paid(
        session, {booking.id: event.payment_id for _, event, booking in confirms}
    )
    if len(done) != len(confirms):  # the rows are locked: they cannot have changed
        raise RuntimeError(f"confirmed {len(done)} of {len(confirms)} locked pending bookings")
    await outbox.add_replies(
        session,
        [
            (envelope, _confirmed(booking, event.payment_id, rooms.get(booking.room_id)))
            for envelope, event, booking in confirms
        ],
    )


def _confirmed(
    booking: store.Booking, payment_id: str, room: store.Room | None
) -> BookingConfirmed:
    return BookingConfirmed(
        booking_id=booking.id,
        user_id=booking.user_id,
        slot_id=booking.slot_id,
        room_id=booking.room_id,
        room_name=room.name if room else "",
        room_time_zone=room.time_zone if room else "UTC",
        starts_at=booking.starts_at,
        ends_at=booking.ends_at,
        contact=booking.contact,
        payment_id=payment_id,
        price=booking.price,
    )


async def _refund_unwanted_payment(
    session: AsyncSession, outbox: Outbox, booking: store.Booking, event: PaymentSucceeded
) -> store.Booking:
    """The booking cannot take this payment (expired, cancelled or already paid): return it."""
    reason = (
        f"payment arrived for a booking that is {booking.status.value}"
        if booking.payment_id is None
        else f"booking was already paid with payment {booking.payment_id}"
    )
    if booking.payment_id is None:
        booking = await store.update_booking(
            session,
            booking.id,
            {
                "payment_id": event.payment_id,
                "payment_status": PaymentStatus.REFUNDED.value,
                "refund_amount": event.amount.amount,
            },
        )
    await outbox.add(
        session,
        RefundRequested(
            booking_id=booking.id,
            refund_id=uuid.uuid5(booking.id, f"refund:{event.payment_id}"),
            payment_id=event.payment_id,
            amount=event.amount,
            reason=reason,
        ),
    )
    return booking


async def payment_failed(
    session: AsyncSession, outbox: Outbox, event: PaymentFailed, *, now: datetime
) -> store.Booking:
    """A failed payment cancels the pending booking and frees its place; otherwise nothing."""
    booking = await store.get_booking(session, event.booking_id, lock=True)
    if booking.status is not BookingStatus.PENDING:
        return booking
    domain.transition(booking.status, Action.FAIL)
    return await _cancel(
        session,
        outbox,
        booking,
        by=Actor.SYSTEM,
        reason=f"payment failed: {event.reason}",
        quote=None,
        now=now,
    )
