"""Use cases of the booking service: each changes state and records its events together.

Every function runs in the caller's transaction. A booking row is locked (``FOR UPDATE``)
before it changes, so an HTTP request, a payment event and the hold sweeper that reach the
same booking at once take turns, and each sees what the previous one did.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import uuid
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from booking import domain
from booking.domain import (
    Action,
    Booking,
    BookingFilter,
    BookingStatus,
    PendingBooking,
    Place,
    Refund,
    RefundPolicy,
    RefundQuote,
    RefundStatus,
    Room,
    Slot,
    StrayPayment,
    Taken,
    WaitlistEntry,
    WaitlistStatus,
)
from booking_contracts.catalogue import (
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
    RefundFailed,
    RefundRequested,
    RefundSucceeded,
    RoomRules,
    RoomSnapshot,
    SlotSnapshot,
    SlotStatus,
    WaitlistEntryEnd,
    WaitlistExpired,
    WaitlistJoined,
    WaitlistLeft,
    WaitlistOfferLapsed,
    WaitlistOfferMade,
    WaitlistOfferTaken,
)
from booking_contracts.envelope import Envelope, Event
from booking_contracts.money import Money
from platform_runtime.messaging import BatchItemError, caused_by
from platform_runtime.outbox import Outbox
from platform_runtime.transactions import Stores, TransactionalStore

log = logging.getLogger(__name__)


class Store(TransactionalStore, Protocol):
    """What the use cases read and change, in one transaction: the service's database
    (:class:`booking.store.SqlStore`), or its twin held in the process
    (:class:`booking.memory.MemoryStore`), which the same contract tests hold to the same
    behaviour. The methods are documented on the SQL store."""

    async def upsert_room(self, room: RoomSnapshot, *, version: int, as_of: datetime) -> None: ...

    async def deactivate_room(self, room_id: UUID, *, version: int, as_of: datetime) -> None: ...

    async def set_room_rules(
        self, room_id: UUID, rules: RoomRules, *, version: int, as_of: datetime
    ) -> None: ...

    async def upsert_slots(self, snapshots: Sequence[SlotSnapshot]) -> None: ...

    async def take_place(self, slot_id: UUID, *, now: datetime) -> Place: ...

    async def take_places(self, wanted: Mapping[UUID, int], *, now: datetime) -> Taken: ...

    async def count_against_quotas(
        self, booking: Booking, windows: Sequence[domain.QuotaWindow]
    ) -> domain.RuleBroken | None: ...

    async def release_quotas(self, booking_ids: Sequence[UUID]) -> None: ...

    async def slots_between(self, room_id: UUID, span: domain.Span) -> list[Slot]: ...

    async def slots_held_by(self, user_id: str, slot_ids: Collection[UUID]) -> set[UUID]: ...

    async def quota_usage(
        self, user_id: str, keys: Collection[tuple[str, datetime]]
    ) -> dict[tuple[str, datetime], int]: ...

    async def release_places(self, slot_ids: Sequence[UUID]) -> None: ...

    async def get_slot(self, slot_id: UUID) -> Slot: ...

    async def lock_slots(self, slot_ids: Sequence[UUID]) -> dict[UUID, Slot]: ...

    async def get_room(self, room_id: UUID) -> Room | None: ...

    async def insert_booking(
        self, booking: PendingBooking, *, max_unpaid_holds: int | None
    ) -> Booking: ...

    async def insert_bookings(
        self, new: Sequence[PendingBooking], *, max_unpaid_holds: int | None
    ) -> dict[UUID, Booking]: ...

    async def lock_unpaid_holds(self, user_ids: Collection[str]) -> dict[str, int]: ...

    async def lock_idempotency_keys(self, keys: Collection[tuple[str, str]]) -> None: ...

    async def find_by_idempotency_keys(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], Booking]: ...

    async def get_booking(self, booking_id: UUID, *, lock: bool = False) -> Booking: ...

    async def lock_bookings(
        self, booking_ids: Sequence[UUID]
    ) -> tuple[dict[UUID, Booking], dict[UUID, Room]]: ...

    async def get_rooms(self, room_ids: Sequence[UUID]) -> dict[UUID, Room]: ...

    async def confirm_paid(self, payments: Mapping[UUID, str]) -> dict[UUID, int]: ...

    async def find_by_idempotency_key(self, user_id: str, key: str) -> Booking | None: ...

    async def cancel_booking(
        self, booking_id: UUID, *, by: Actor, reason: str | None, at: datetime
    ) -> Booking: ...

    async def move_booking(self, booking_id: UUID, slot: Slot) -> Booking: ...

    async def set_status(self, booking_id: UUID, status: BookingStatus) -> Booking: ...

    async def confirm_booking(
        self, booking_id: UUID, *, payment_id: str, refund_basis_starts_at: datetime
    ) -> Booking: ...

    async def attach_payment(self, booking_id: UUID, payment_id: str) -> Booking: ...

    async def expire_due(self, *, now: datetime, limit: int) -> list[Booking]: ...

    async def list_bookings(
        self,
        where: BookingFilter,
        *,
        after: tuple[datetime, UUID] | None,
        limit: int,
    ) -> list[Booking]: ...

    async def request_refund(
        self,
        *,
        refund_id: UUID,
        booking_id: UUID,
        payment_id: str,
        amount: Money,
        reason: str,
    ) -> Booking | None: ...

    async def get_refund(self, refund_id: UUID) -> Refund | None: ...

    async def settle_refund(
        self,
        refund: Refund,
        *,
        status: RefundStatus,
        failure_reason: str | None,
        now: datetime,
    ) -> Booking: ...

    async def record_stray_payment(
        self,
        *,
        payment_id: str,
        booking_id: UUID,
        amount: Money,
        reason: str,
        refund_id: UUID,
    ) -> StrayPayment | None: ...

    async def lock_stray_refund(self, refund_id: UUID) -> StrayPayment | None: ...

    async def settle_stray_refund(
        self,
        stray: StrayPayment,
        *,
        status: RefundStatus,
        failure_reason: str | None,
        now: datetime,
    ) -> StrayPayment: ...

    async def lock_slot(self, slot_id: UUID, *, share: bool = False) -> Slot: ...

    async def lock_lines_of(self, user_id: str) -> int: ...

    async def insert_entry(
        self, entry_id: UUID, slot: Slot, user_id: str, contact: Contact
    ) -> WaitlistEntry: ...

    async def position_in_line(self, entry: WaitlistEntry) -> int: ...

    async def live_entry(
        self, user_id: str, slot_id: UUID, *, lock: bool = False
    ) -> WaitlistEntry | None: ...

    async def get_entry(self, entry_id: UUID, *, lock: bool = False) -> WaitlistEntry | None: ...

    async def change_entry(
        self,
        entry_id: UUID,
        status: WaitlistStatus,
        *,
        offer_expires_at: datetime | None = None,
        booking_id: UUID | None = None,
    ) -> WaitlistEntry: ...

    async def waiting_in_line(self, slot_id: UUID, *, limit: int) -> list[WaitlistEntry]: ...

    async def busy_at(
        self, user_ids: Collection[str], starts_at: datetime, ends_at: datetime
    ) -> set[str]: ...

    async def due_offers(self, *, now: datetime, limit: int) -> list[WaitlistEntry]: ...

    async def closed_lines(self, *, now: datetime, limit: int) -> list[WaitlistEntry]: ...

    async def take_offered_places(self, slot_id: UUID, places: int) -> None: ...

    async def slots_with_waiters(self, slot_ids: Collection[UUID]) -> list[UUID]: ...


@dataclass(frozen=True, slots=True)
class Rules:
    """The configurable parts of booking (from the service settings)."""

    hold: timedelta = timedelta(minutes=15)
    refunds: RefundPolicy = field(default_factory=RefundPolicy)
    max_unpaid_holds: int = 5
    """Pending bookings one user may hold at a time (an admin's own: any number)."""
    max_waitlists: int = 10
    """Lines one user may wait in at a time."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: the user id from the token and whether they hold the admin role."""

    user_id: str
    is_admin: bool = False

    def may_see(self, booking: domain.Booking) -> bool:
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
    booking: domain.Booking
    replayed: bool
    """True when an earlier request with the same ``Idempotency-Key`` made the booking."""


# --- create ----------------------------------------------------------------------------


async def create(
    store: Store,
    outbox: Outbox,
    caller: Caller,
    request: NewBooking,
    *,
    now: datetime,
    rules: Rules,
) -> Created:
    """Hold one place of the slot for the caller until ``hold_expires_at`` (or refuse).

    Requests with the same ``Idempotency-Key`` take turns, from before the lookup of the
    key's booking to the commit: a retry that overlaps the request it repeats answers that
    request's booking, never "full". A user holds at most ``rules.max_unpaid_holds`` unpaid
    bookings (an admin's own: any number): the database counts them and refuses one more.
    """
    if request.idempotency_key is not None:
        await store.lock_idempotency_keys([(caller.user_id, request.idempotency_key)])
        earlier = await _replay(store, caller, request)
        if earlier is not None:
            return Created(earlier, replayed=True)
    place = await store.take_place(request.slot_id, now=now)
    # the user holding the slot already is refused with the whole transaction, place included
    booking = await store.insert_booking(
        _pending(caller, request, place, now=now, rules=rules),
        max_unpaid_holds=None if caller.is_admin else rules.max_unpaid_holds,
    )
    windows = domain.quota_windows(place.room, place.slot.starts_at)
    if windows and (refusal := await store.count_against_quotas(booking, windows)):
        raise refusal  # the transaction is rolled back: place and booking with it
    await outbox.add(store.tx, _created_event(booking))
    return Created(booking, replayed=False)


def _pending(
    caller: Caller, request: NewBooking, place: domain.Place, *, now: datetime, rules: Rules
) -> domain.PendingBooking:
    slot, hold = place.slot, place.room.rules.hold_or(rules.hold)
    return domain.PendingBooking(
        id=uuid.uuid4(),
        user_id=caller.user_id,
        slot=slot,
        booking_type=request.booking_type,
        notes=request.notes,
        attributes=request.attributes,
        contact=request.contact,
        hold_expires_at=min(now + hold, slot.starts_at),
        idempotency_key=request.idempotency_key,
        request_fingerprint=request.fingerprint() if request.idempotency_key else None,
        terms=domain.terms_of(place.room.rules, rules.refunds),
    )


def _created_event(booking: domain.Booking) -> BookingCreated:
    return BookingCreated(
        booking_id=booking.id,
        user_id=booking.user_id,
        slot_id=booking.slot_id,
        room_id=booking.room_id,
        starts_at=booking.starts_at,
        ends_at=booking.ends_at,
        price=booking.price,
        hold_expires_at=booking.hold_expires_at,
        booking_version=booking.version,
    )


Outcome = Created | domain.BookingError | None
"""Of one request in :func:`create_many`; ``None``: make this request alone (``create``)."""


async def create_many(
    store: Store,
    outbox: Outbox,
    requests: Sequence[tuple[Caller, NewBooking]],
    *,
    now: datetime,
    rules: Rules,
    traceparents: Sequence[str | None] | None = None,
) -> list[Outcome]:
    """``create`` for many requests in one transaction, each succeeding or failing on its own.

    The requests' keys are locked (as by ``create``) and their replays looked up, one
    statement each; the places are taken in one ``UPDATE`` (a slot with fewer places left than the
    batch wants gives them to its first requests); the users' unpaid holds are locked and
    counted in one query (a user's requests get what the cap leaves, in the order they came);
    the bookings are written in one ``INSERT`` and their events in another.

    What the batch's locks make certain it answers itself, as ``create`` would: a slot that
    takes bookings but has no place left for the request (full: unless a place of it goes
    back in the batch), a user who held the most unpaid bookings already (429), a user who
    holds the slot already, a replay or a reused key. A request for a slot the batch cannot
    explain (unknown, closed, started, its room inactive), that got no hold because the
    batch's own requests used what the cap left its user, whose key is used twice in the
    batch, that a unique index refused (with a key), or an admin's (not capped, unlike the
    rest of the batch), gets ``None``: made alone afterwards, it learns exactly why not. The
    database enforces the same invariants as for ``create`` (capacity, one live booking per
    user and slot, one use of a key, the cap on unpaid holds).
    """
    outcomes: list[Outcome] = [None] * len(requests)
    todo = await _replay_many(store, requests, outcomes)
    if not todo:
        return outcomes
    rows, unused, full = await _places_and_holds(
        store, requests, todo, now=now, rules=rules, outcomes=outcomes
    )
    ordered = sorted(rows.values(), key=lambda r: (r.user_id, str(r.slot.id)))
    inserted = (
        await store.insert_bookings(ordered, max_unpaid_holds=rules.max_unpaid_holds)
        if ordered
        else {}
    )
    refused = list(unused)  # places taken for requests that are made alone go back
    for i, row in rows.items():
        booking = inserted.get(row.id)
        if booking is not None:
            outcomes[i] = Created(booking, replayed=False)
            continue
        refused.append(row.slot.id)  # its place goes back
        if row.idempotency_key is None:
            outcomes[i] = domain.already_holds(row.slot.id)
    if refused:
        await store.release_places(refused)
    for i, (slot_id, places) in full.items():
        if slot_id not in refused:  # else a place went back: alone, it may get it
            outcomes[i] = domain.slot_full(slot_id, places)
    made = [(i, inserted[row.id]) for i, row in rows.items() if row.id in inserted]
    await outbox.add(
        store.tx,
        *(_created_event(booking) for _, booking in made),
        # each BookingCreated continues the trace of its own request
        traceparents=[traceparents[i] for i, _ in made] if traceparents is not None else None,
    )
    return outcomes


async def _replay_many(
    store: Store, requests: Sequence[tuple[Caller, NewBooking]], outcomes: list[Outcome]
) -> list[int]:
    """Settle the batch's replays in ``outcomes``; returns the requests left to make in the
    batch (by index): neither an admin's, nor a key's second request of the batch."""
    # an admin's own booking is not capped, unlike the batch's: made alone
    in_batch = [i for i, (caller, _) in enumerate(requests) if not caller.is_admin]
    keys = sorted(
        {(requests[i][0].user_id, k) for i in in_batch if (k := requests[i][1].idempotency_key)}
    )
    earlier: dict[tuple[str, str], domain.Booking] = {}
    if keys:
        await store.lock_idempotency_keys(keys)
        earlier = await store.find_by_idempotency_keys(keys)
    todo: list[int] = []
    keys_in_batch: set[tuple[str, str]] = set()
    for i in in_batch:
        caller, request = requests[i]
        if request.idempotency_key is not None:
            key = (caller.user_id, request.idempotency_key)
            if key in earlier:
                outcomes[i] = _replayed(earlier[key], request)
                continue
            if key in keys_in_batch:
                continue  # alone, once the first one committed: it replays that one
            keys_in_batch.add(key)
        todo.append(i)
    return todo


async def _places_and_holds(
    store: Store,
    requests: Sequence[tuple[Caller, NewBooking]],
    todo: Sequence[int],
    *,
    now: datetime,
    rules: Rules,
    outcomes: list[Outcome],
) -> tuple[dict[int, domain.PendingBooking], list[UUID], dict[int, tuple[UUID, int]]]:
    """The booking rows (by request index) of the requests that got a place and a hold
    under their user's cap, in the order they came; the places taken for none (one slot
    id per place, to give back); and the requests for a slot that had no place left for
    them (by index: the slot and its number of places), full unless a place goes back.
    Places are locked before holds, as by every writer.

    A request whose user held as many unpaid bookings as the cap allows before the batch
    (counted under the lock) is refused here, in ``outcomes``, as the database would refuse
    it alone: asking again at the cap costs no transaction of its own."""
    wanted = Counter(requests[i][1].slot_id for i in todo)
    got = await store.take_places(wanted, now=now)
    taken = got.places
    users = {requests[i][0].user_id for i in todo if requests[i][1].slot_id in taken}
    held = await store.lock_unpaid_holds(users) if users else {}
    holds_left = {user: rules.max_unpaid_holds - held.get(user, 0) for user in users}
    rows: dict[int, domain.PendingBooking] = {}
    full: dict[int, tuple[UUID, int]] = {}
    for i in todo:
        caller, request = requests[i]
        place, places = taken.get(request.slot_id, (None, 0))
        if place is None or places == 0:
            if request.slot_id in got.full:
                full[i] = (request.slot_id, got.full[request.slot_id])
            continue  # else alone: it learns why (unknown, closed, started, no room)
        if (already := held.get(caller.user_id, 0)) >= rules.max_unpaid_holds:
            outcomes[i] = domain.TooManyUnpaidHolds(held=already, most=rules.max_unpaid_holds)
            continue
        if holds_left[caller.user_id] <= 0:
            continue  # alone: the batch's own requests used what the cap left its user
        taken[request.slot_id] = (place, places - 1)
        holds_left[caller.user_id] -= 1
        rows[i] = _pending(caller, request, place, now=now, rules=rules)
    unused = [slot_id for slot_id, (_, places) in taken.items() for _ in range(places)]
    return rows, unused, full


def _replayed(earlier: domain.Booking, request: NewBooking) -> Created | domain.BookingError:
    if earlier.request_fingerprint != request.fingerprint():
        return _key_reused()
    return Created(earlier, replayed=True)


def _key_reused() -> domain.IdempotencyConflict:
    return domain.IdempotencyConflict(
        "this Idempotency-Key was used for a different request; use a new key"
    )


async def create_idempotently(
    stores: Stores[Any, Store],
    outbox: Outbox,
    caller: Caller,
    request: NewBooking,
    *,
    now: datetime,
    rules: Rules,
) -> Created:
    """``create`` in its own transaction."""
    async with stores.begin() as store:
        return await create(store, outbox, caller, request, now=now, rules=rules)


async def _replay(store: Store, caller: Caller, request: NewBooking) -> domain.Booking | None:
    assert request.idempotency_key is not None
    earlier = await store.find_by_idempotency_key(caller.user_id, request.idempotency_key)
    if earlier is not None and earlier.request_fingerprint != request.fingerprint():
        raise _key_reused()
    return earlier


# --- reads -----------------------------------------------------------------------------


async def visible_booking(
    store: Store, caller: Caller, booking_id: UUID, *, lock: bool = False
) -> domain.Booking:
    """The booking if the caller may see it; anyone else learns nothing (not found)."""
    booking = await store.get_booking(booking_id, lock=lock)
    if not caller.may_see(booking):
        raise domain.BookingNotFound(f"booking {booking_id} does not exist")
    return booking


async def bookable_slots(
    store: Store, caller: Caller, room_id: UUID, on: date, *, now: datetime
) -> tuple[domain.Room, list[domain.Slot]]:
    """The room's slots on ``on`` (a day of the room's calendar) the caller could book now,
    under the room's rules as this service applies them (see :func:`domain.bookable`)."""
    room = await store.get_room(room_id)
    if room is None or not room.name:
        raise domain.RoomNotFound(f"room {room_id} is not known here")
    if not room.active:
        return room, []
    slots = await store.slots_between(room_id, domain.local_day(on, room.time_zone))
    if not slots:
        return room, []
    held = await store.slots_held_by(caller.user_id, [slot.id for slot in slots])
    keys = {
        (window.scope, window.span.starts_at)
        for slot in slots
        for window in domain.quota_windows(room, slot.starts_at)
    }
    used = await store.quota_usage(caller.user_id, keys)
    return room, domain.bookable(slots, room, now=now, held=held, used=used)


async def refund_quote(
    store: Store, caller: Caller, booking_id: UUID, *, now: datetime, rules: Rules
) -> tuple[domain.Booking, RefundQuote]:
    """What cancelling now would refund (and whether cancelling is possible at all)."""
    booking = await visible_booking(store, caller, booking_id)
    domain.transition(booking.status, Action.CANCEL)
    room_rules = await _terms(store, booking)
    _check_cancellation(room_rules, caller, booking, now=now)
    return booking, _quote(booking, caller, now=now, policy=room_rules.refunds_or(rules.refunds))


async def _terms(store: Store, booking: domain.Booking) -> domain.BookingRules:
    """The rules that bind the booking: those it was made under, else (a booking made before
    terms were kept) its room's now."""
    if booking.terms is not None:
        return booking.terms
    room = await store.get_room(booking.room_id)
    return room.rules if room is not None else domain.BookingRules()


def _check_cancellation(
    rules: domain.BookingRules, caller: Caller, booking: domain.Booking, *, now: datetime
) -> None:
    """The room's notice to cancel binds a user's paid booking; an unpaid hold may always be
    let go (it frees the place sooner than its expiry would)."""
    if booking.status is BookingStatus.CONFIRMED and not _for_someone_else(caller, booking):
        rules.check_cancellation(starts_at=booking.starts_at, now=now)


def _for_someone_else(caller: Caller, booking: domain.Booking) -> bool:
    """An admin acting on another user's booking: the room's notices to cancel and to move,
    and its count of moves, bind users, not the staff who act for them."""
    return caller.is_admin and caller.user_id != booking.user_id


def _quote(
    booking: domain.Booking, caller: Caller, *, now: datetime, policy: RefundPolicy
) -> RefundQuote:
    """The policy's refund of the booking's price, the notice counted to the start it was paid
    for (a cancellable booking has a payment id only once it is paid)."""
    return policy.quote(
        price=booking.price,
        paid=booking.payment_id is not None,
        starts_at=booking.starts_at,
        paid_start=booking.refund_basis_starts_at,
        now=now,
        by_admin=_for_someone_else(caller, booking),
    )


# --- cancel ----------------------------------------------------------------------------


async def cancel(
    store: Store,
    outbox: Outbox,
    caller: Caller,
    booking_id: UUID,
    *,
    reason: str | None,
    now: datetime,
    rules: Rules,
) -> domain.Booking:
    """Cancel a pending or confirmed booking, free its place and refund by the policy."""
    booking = await visible_booking(store, caller, booking_id, lock=True)
    domain.transition(booking.status, Action.CANCEL)
    room_rules = await _terms(store, booking)
    _check_cancellation(room_rules, caller, booking, now=now)
    quote = _quote(booking, caller, now=now, policy=room_rules.refunds_or(rules.refunds))
    by = Actor.ADMIN if _for_someone_else(caller, booking) else Actor.USER
    return await _cancel(store, outbox, booking, by=by, reason=reason, quote=quote, now=now)


async def _cancel(
    store: Store,
    outbox: Outbox,
    booking: domain.Booking,
    *,
    by: Actor,
    reason: str | None,
    quote: RefundQuote | None,
    now: datetime,
) -> domain.Booking:
    refund = quote.amount if quote is not None and quote.amount.amount > 0 else None
    cancelled = await store.cancel_booking(booking.id, by=by, reason=reason, at=now)
    await free_places(store, outbox, [booking.slot_id], now=now)
    await store.release_quotas([booking.id])
    events: list[Event] = [
        BookingCancelled(
            booking_id=booking.id,
            user_id=booking.user_id,
            slot_id=booking.slot_id,
            room_id=booking.room_id,
            cancelled_by=by,
            reason=reason,
            refund=refund,
            booking_version=cancelled.version,
        )
    ]
    if refund is not None and quote is not None and booking.payment_id is not None:
        requested = await _request_refund(
            store,
            booking.id,
            refund_id=uuid.uuid5(booking.id, "cancel"),  # a booking is cancelled once
            payment_id=booking.payment_id,
            amount=refund,
            reason=quote.reason,
        )
        if requested is not None:
            cancelled, event = requested
            events.append(event)
    await outbox.add(store.tx, *events)
    return cancelled


async def _request_refund(
    store: Store,
    booking_id: UUID,
    *,
    refund_id: UUID,
    payment_id: str,
    amount: Money,
    reason: str,
) -> tuple[domain.Booking, RefundRequested] | None:
    """Record a refund (``refund_pending`` until the payment service answers) and the event
    that asks for it; None if a refund with this id was asked for already: the same refund
    is never asked for twice."""
    booking = await store.request_refund(
        refund_id=refund_id,
        booking_id=booking_id,
        payment_id=payment_id,
        amount=amount,
        reason=reason,
    )
    if booking is None:
        return None
    return booking, RefundRequested(
        booking_id=booking_id,
        refund_id=refund_id,
        payment_id=payment_id,
        amount=amount,
        reason=reason,
        booking_version=booking.version,
    )


# --- reschedule, complete, no-show -----------------------------------------------------


async def reschedule(
    store: Store,
    outbox: Outbox,
    caller: Caller,
    booking_id: UUID,
    *,
    new_slot_id: UUID,
    now: datetime,
) -> domain.Booking:
    """Move a confirmed booking to another slot of its room: both places change or neither.

    The money follows :func:`domain.reprice`: a slot that costs more (or in another currency)
    is refused, a cheaper one refunds the difference and its price becomes the booking's.
    The start the booking was paid for stays what the refund policy counts notice to. Both
    slots are locked in id order before either changes, so two moves in opposite directions
    take turns instead of deadlocking, and the price is the one of the locked slot.
    """
    booking = await visible_booking(store, caller, booking_id, lock=True)
    domain.transition(booking.status, Action.RESCHEDULE, starts_at=booking.starts_at, now=now)
    if new_slot_id == booking.slot_id:
        raise domain.InvalidBooking("the booking is already in that slot")
    target = (await store.lock_slots([booking.slot_id, new_slot_id])).get(new_slot_id)
    if target is None:
        raise domain.SlotNotFound(f"slot {new_slot_id} is not known")
    if target.room_id != booking.room_id:
        raise domain.InvalidBooking("a booking can only move to another slot of the same room")
    if not _for_someone_else(caller, booking):
        (await _terms(store, booking)).check_reschedule(
            starts_at=booking.starts_at,
            to_starts_at=target.starts_at,
            moved=booking.reschedules,
            now=now,
        )
    refund = domain.reprice(booking.price, target.price)
    place = await store.take_place(new_slot_id, now=now)
    slot = place.slot
    await free_places(store, outbox, [booking.slot_id], now=now)
    moved = await store.move_booking(booking.id, slot)  # refused if the user holds that slot
    # the move counts where it lands, by the room's quotas now, and gives back what it held
    await store.release_quotas([booking.id])
    windows = domain.quota_windows(place.room, slot.starts_at)
    if windows and (refusal := await store.count_against_quotas(moved, windows)):
        raise refusal
    version = moved.version  # the move's; a refund request below is a change of its own
    events: list[Event] = []
    if refund.amount > 0 and booking.payment_id is not None:
        requested = await _request_refund(
            store,
            booking.id,
            # the booking's price only ever falls, so no two moves refund from the same price
            refund_id=uuid.uuid5(booking.id, f"reschedule:{booking.price}->{slot.price}"),
            payment_id=booking.payment_id,
            amount=refund,
            reason=f"moved to a cheaper slot: {booking.price} paid, the new slot costs "
            f"{slot.price}",
        )
        if requested is not None:
            moved, event = requested
            events.append(event)
    await outbox.add(
        store.tx,
        BookingRescheduled(
            booking_id=booking.id,
            user_id=booking.user_id,
            room_id=booking.room_id,
            old_slot_id=booking.slot_id,
            new_slot_id=slot.id,
            old_starts_at=booking.starts_at,
            new_starts_at=slot.starts_at,
            new_ends_at=slot.ends_at,
            room_time_zone=place.room.time_zone,
            price_difference=domain.price_difference(booking.price, slot.price),
            booking_version=version,
        ),
        *events,
    )
    return moved


async def finish(
    store: Store, outbox: Outbox, booking_id: UUID, *, action: Action, now: datetime
) -> domain.Booking:
    """Admin: mark a confirmed booking whose slot has started completed or a no-show."""
    booking = await store.get_booking(booking_id, lock=True)
    status = domain.transition(booking.status, action, starts_at=booking.starts_at, now=now)
    finished = await store.set_status(booking.id, status)
    event_type = BookingCompleted if action is Action.COMPLETE else BookingNoShow
    await outbox.add(
        store.tx,
        event_type(
            booking_id=booking.id,
            slot_id=booking.slot_id,
            room_id=booking.room_id,
            booking_version=finished.version,
        ),
    )
    return finished


# --- holds -----------------------------------------------------------------------------


async def expire_holds(store: Store, outbox: Outbox, *, now: datetime, limit: int) -> int:
    """Expire pending bookings whose hold ran out and free their places; returns how many.

    Rows another replica is expiring are skipped (``SKIP LOCKED``), so any number of
    sweepers share the work without doing any of it twice.
    """
    expired = await store.expire_due(now=now, limit=limit)
    if not expired:
        return 0
    await free_places(store, outbox, [booking.slot_id for booking in expired], now=now)
    await store.release_quotas([booking.id for booking in expired])
    await outbox.add(
        store.tx,
        *(
            BookingExpired(
                booking_id=b.id,
                user_id=b.user_id,
                slot_id=b.slot_id,
                room_id=b.room_id,
                booking_version=b.version,
            )
            for b in expired
        ),
    )
    return len(expired)


# --- payments --------------------------------------------------------------------------


class PaymentMismatch(domain.BookingError):
    """A payment that can neither be applied nor returned: another amount than the booking's
    price that is not positive (nothing to return), or a report of the booking's own payment
    with another amount than the one applied."""


class UnappliedCause(enum.StrEnum):
    """Why no booking took a payment (a label of the ``payments_unapplied`` metric)."""

    UNKNOWN_BOOKING = "unknown_booking"
    WRONG_AMOUNT = "wrong_amount"


@dataclass(frozen=True, slots=True)
class Unapplied:
    """A payment no booking took: recorded as a stray payment and returned in full."""

    payment_id: str
    cause: UnappliedCause
    recorded: bool
    """False if this payment was recorded (and its refund asked for) before: a redelivery."""


async def payment_succeeded(
    store: Store, outbox: Outbox, event: PaymentSucceeded
) -> domain.Booking | Unapplied:
    """Confirm the pending booking; a payment that came too late or twice is refunded.

    A payment no booking can take (its booking does not exist, or it pays another amount or
    currency than the booking's price) is never kept: it is recorded as a stray payment and
    returned in full (:func:`_return_stray_payment`), the booking untouched.
    """
    try:
        booking = await store.get_booking(event.booking_id, lock=True)
    except domain.BookingNotFound:
        if event.amount.amount <= 0:
            raise  # nothing was paid: nothing to return
        return await _return_stray_payment(
            store,
            outbox,
            event,
            cause=UnappliedCause.UNKNOWN_BOOKING,
            reason=f"payment for booking {event.booking_id}, which does not exist",
        )
    if booking.payment_id == event.payment_id:
        if event.amount != booking.price:  # the applied payment, reported otherwise: never
            raise PaymentMismatch(  # returned by this service, as it confirmed the booking
                f"payment {event.payment_id} of {event.amount} contradicts the same payment "
                f"of {booking.price} applied to booking {booking.id}"
            )
        return booking  # this payment was applied already (redelivered with a new event id)
    if event.amount != booking.price:
        if event.amount.amount <= 0:
            raise PaymentMismatch(
                f"payment {event.payment_id} of {event.amount} does not match the price "
                f"{booking.price} of booking {booking.id}, and returns nothing"
            )
        return await _return_stray_payment(
            store,
            outbox,
            event,
            cause=UnappliedCause.WRONG_AMOUNT,
            reason=f"payment of {event.amount} does not match the price {booking.price} "
            f"of the booking",
        )
    if booking.status is not BookingStatus.PENDING or booking.payment_id is not None:
        return await _refund_unwanted_payment(store, outbox, booking, event)
    domain.transition(booking.status, Action.CONFIRM)
    confirmed = await store.confirm_booking(
        booking.id, payment_id=event.payment_id, refund_basis_starts_at=booking.starts_at
    )
    room = await store.get_room(booking.room_id)
    await outbox.add(store.tx, _confirmed(booking, event.payment_id, room, confirmed.version))
    return confirmed


async def payments_succeeded(
    store: Store, outbox: Outbox, payments: Sequence[tuple[Envelope, PaymentSucceeded]]
) -> list[Unapplied]:
    """:func:`payment_succeeded` for many payments, in their order, set-based.

    The bookings are locked in id order and read with their rooms in one statement; each
    payment that confirms a pending booking (the usual case) is written with the others in
    one ``UPDATE`` and one outbox ``INSERT``. Any other payment (a booking not found, a wrong
    amount, a booking paid, cancelled or expired, or a second payment of a booking of this
    batch) first writes the confirmations gathered so far and is then applied by
    :func:`payment_succeeded` on its own, so the end state is the one of applying the
    payments one by one: a payment no booking takes is recorded and returned in full. A
    payment that can neither be applied nor returned raises :class:`BatchItemError`.

    Returns the payments this call recorded as stray (not those recorded before).
    """
    booked, rooms = await store.lock_bookings([event.booking_id for _, event in payments])
    confirms: list[tuple[Envelope, PaymentSucceeded, domain.Booking]] = []
    returned: list[Unapplied] = []
    seen: set[UUID] = set()
    for index, (envelope, event) in enumerate(payments):
        booking = booked.get(event.booking_id)
        if booking is not None and event.booking_id not in seen and _plain_confirm(booking, event):
            confirms.append((envelope, event, booking))
        else:
            await _confirm_all(store, outbox, confirms, rooms)
            confirms = []
            try:
                with caused_by(envelope):
                    outcome = await payment_succeeded(store, outbox, event)
            except Exception as exc:
                raise BatchItemError(index, exc) from exc
            if isinstance(outcome, Unapplied) and outcome.recorded:
                returned.append(outcome)
        seen.add(event.booking_id)
    await _confirm_all(store, outbox, confirms, rooms)
    return returned


def _plain_confirm(booking: domain.Booking, event: PaymentSucceeded) -> bool:
    """True if ``event`` pays the pending, unpaid ``booking`` exactly."""
    return (
        booking.status in domain.ALLOWED[Action.CONFIRM]
        and booking.payment_id is None
        and event.amount == booking.price
    )


async def _confirm_all(
    store: Store,
    outbox: Outbox,
    confirms: Sequence[tuple[Envelope, PaymentSucceeded, domain.Booking]],
    rooms: dict[UUID, domain.Room],
) -> None:
    if not confirms:
        return
    done = await store.confirm_paid(
        {booking.id: event.payment_id for _, event, booking in confirms}
    )
    if len(done) != len(confirms):  # the rows are locked: they cannot have changed
        raise RuntimeError(f"confirmed {len(done)} of {len(confirms)} locked pending bookings")
    await outbox.add_replies(
        store.tx,
        [
            (
                envelope,
                _confirmed(booking, event.payment_id, rooms.get(booking.room_id), done[booking.id]),
            )
            for envelope, event, booking in confirms
        ],
    )


def _confirmed(
    booking: domain.Booking, payment_id: str, room: domain.Room | None, version: int
) -> BookingConfirmed:
    """``booking`` as it was before the confirmation; ``version``: its version after."""
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
        booking_version=version,
    )


async def _refund_unwanted_payment(
    store: Store, outbox: Outbox, booking: domain.Booking, event: PaymentSucceeded
) -> domain.Booking:
    """The booking cannot take this payment (expired, cancelled or already paid): return it."""
    reason = (
        f"payment arrived for a booking that is {booking.status.value}"
        if booking.payment_id is None
        else f"booking was already paid with payment {booking.payment_id}"
    )
    if booking.payment_id is None:
        booking = await store.attach_payment(booking.id, event.payment_id)
    requested = await _request_refund(
        store,
        booking.id,
        refund_id=uuid.uuid5(booking.id, f"refund:{event.payment_id}"),
        payment_id=event.payment_id,
        amount=event.amount,
        reason=reason,
    )
    if requested is None:
        return booking  # this payment's refund was asked for already
    refunded, refund_requested = requested
    await outbox.add(store.tx, refund_requested)
    return refunded


async def _return_stray_payment(
    store: Store,
    outbox: Outbox,
    event: PaymentSucceeded,
    *,
    cause: UnappliedCause,
    reason: str,
) -> Unapplied:
    """Record a payment no booking takes and ask for all of it back (``RefundRequested``,
    naming the booking the payment named), once per payment id: the same payment delivered
    again, with any event id, finds it recorded and asks for nothing more."""
    refund_id = uuid.uuid5(event.booking_id, f"stray:{event.payment_id}")
    stray = await store.record_stray_payment(
        payment_id=event.payment_id,
        booking_id=event.booking_id,
        amount=event.amount,
        reason=reason,
        refund_id=refund_id,
    )
    if stray is None:
        return Unapplied(event.payment_id, cause, recorded=False)
    log.warning(
        "payment %s of %s not applied (%s: %s); refund %s of it requested",
        event.payment_id,
        event.amount,
        cause.value,
        reason,
        refund_id,
    )
    await outbox.add(
        store.tx,
        RefundRequested(
            booking_id=event.booking_id,
            refund_id=refund_id,
            payment_id=event.payment_id,
            amount=event.amount,
            reason=reason,
        ),
    )
    return Unapplied(event.payment_id, cause, recorded=True)


async def payment_failed(
    store: Store, outbox: Outbox, event: PaymentFailed, *, now: datetime
) -> domain.Booking:
    """A failed payment cancels the pending booking and frees its place; otherwise nothing."""
    booking = await store.get_booking(event.booking_id, lock=True)
    if booking.status is not BookingStatus.PENDING:
        return booking
    domain.transition(booking.status, Action.FAIL)
    return await _cancel(
        store,
        outbox,
        booking,
        by=Actor.SYSTEM,
        reason=f"payment failed: {event.reason}",
        quote=None,
        now=now,
    )


# --- refund outcomes -------------------------------------------------------------------


class UnknownRefund(domain.BookingError):
    """A refund outcome that matches no refund this service asked for."""


async def refund_settled(
    store: Store, event: RefundSucceeded | RefundFailed, *, now: datetime
) -> domain.Booking | domain.StrayPayment:
    """Record what the payment service made of a refund; the booking's payment status follows
    (``refunded`` once every refund succeeded, ``refund_failed`` with the reason). The refund
    of a stray payment settles that payment's refund status (no booking involved).

    The same outcome again, or any outcome of a refund that succeeded, changes nothing. An
    outcome for an unknown booking or refund, or that names another payment or amount than
    was asked for, raises (it can never apply).
    """
    stray = await store.lock_stray_refund(event.refund_id)
    if stray is not None and stray.booking_id == event.booking_id:
        return await _settle_stray_refund(store, stray, event, now=now)
    booking = await store.get_booking(event.booking_id, lock=True)
    refund = await store.get_refund(event.refund_id)
    if refund is None or refund.booking_id != booking.id:
        raise UnknownRefund(
            f"refund {event.refund_id} was never asked for booking {event.booking_id}"
        )
    _check_asked(event, refund.id, payment_id=refund.payment_id, amount=refund.amount)
    failure, outcome = _outcome_of(event)
    status = domain.settle_refund(refund.status, outcome)
    if status is None:
        return booking
    return await store.settle_refund(refund, status=status, failure_reason=failure, now=now)


def _check_asked(
    event: RefundSucceeded | RefundFailed, refund_id: UUID, *, payment_id: str, amount: Money
) -> None:
    """An outcome must report the refund as it was asked: the same payment and amount."""
    if (payment_id, amount) != (event.payment_id, event.amount):
        raise UnknownRefund(
            f"refund {refund_id} was asked as {amount} of payment {payment_id}, "
            f"not {event.amount} of payment {event.payment_id}"
        )


def _outcome_of(event: RefundSucceeded | RefundFailed) -> tuple[str | None, RefundStatus]:
    """The failure reason (None: none) and the refund status an outcome reports."""
    failure = event.reason if isinstance(event, RefundFailed) else None
    return failure, RefundStatus.SUCCEEDED if failure is None else RefundStatus.FAILED


async def _settle_stray_refund(
    store: Store,
    stray: domain.StrayPayment,
    event: RefundSucceeded | RefundFailed,
    *,
    now: datetime,
) -> domain.StrayPayment:
    _check_asked(event, stray.refund_id, payment_id=stray.payment_id, amount=stray.amount)
    failure, outcome = _outcome_of(event)
    status = domain.settle_refund(stray.refund_status, outcome)
    if status is None:
        return stray
    if failure is not None:
        log.warning(
            "refund %s of stray payment %s failed: %s", stray.refund_id, stray.payment_id, failure
        )
    return await store.settle_stray_refund(stray, status=status, failure_reason=failure, now=now)


# --- the waitlist ------------------------------------------------------------------------
#
# A place a booking gives up is offered to the slot's line before it goes back to sale, in
# the transaction that frees it: the slot's row is locked first, then its first waiters, so
# one freed place is offered once, to one waiter, in order, however many replicas free places
# at once. A held offer keeps counting in the slot's booked_count: no new booking can take
# it. Lock order: a booking, then slots (in id order), then waitlist entries; an offer that
# lapses or is declined is locked before its slot, and no freeing locks offered entries.


@dataclass(frozen=True, slots=True)
class InLine:
    entry: domain.WaitlistEntry
    position: int | None
    """1: next for a place; None once an offer is made (or the entry is over)."""


def _about(entry: domain.WaitlistEntry) -> dict[str, Any]:
    """What every event of a line says of its entry."""
    return {
        "entry_id": entry.id,
        "slot_id": entry.slot_id,
        "room_id": entry.room_id,
        "user_id": entry.user_id,
    }


async def join_waitlist(
    store: Store,
    outbox: Outbox,
    caller: Caller,
    slot_id: UUID,
    contact: Contact,
    *,
    now: datetime,
    rules: Rules,
) -> InLine:
    """Put the caller at the end of a full slot's line. The slot is locked (shared) so its
    places cannot free meanwhile: a place that frees after the join is offered in order."""
    slot = await store.lock_slot(slot_id, share=True)
    if await store.slots_held_by(caller.user_id, [slot_id]):
        raise domain.WaitlistRefused("you already hold a place in this slot")
    in_line = await store.lock_lines_of(caller.user_id)
    domain.check_joining(
        starts_at=slot.starts_at,
        now=now,
        places_left=slot.max_bookings - slot.booked_count if slot.status == SlotStatus.OPEN else 0,
        in_line=in_line,
        most=rules.max_waitlists,
    )
    if await store.live_entry(caller.user_id, slot_id) is not None:
        raise domain.WaitlistRefused("you are in this slot's line already")
    entry = await store.insert_entry(uuid.uuid4(), slot, caller.user_id, contact)
    position = await store.position_in_line(entry)
    await outbox.add(
        store.tx,
        WaitlistJoined(**_about(entry), position=position),
    )
    return InLine(entry, position)


async def my_place_in_line(store: Store, caller: Caller, slot_id: UUID) -> InLine:
    entry = await store.live_entry(caller.user_id, slot_id)
    if entry is None:
        raise domain.NotInLine(f"you are not in the line of slot {slot_id}")
    position = (
        await store.position_in_line(entry)
        if entry.status is domain.WaitlistStatus.WAITING
        else None
    )
    return InLine(entry, position)


async def leave_waitlist(
    store: Store, outbox: Outbox, caller: Caller, slot_id: UUID, *, now: datetime
) -> domain.WaitlistEntry:
    """Leave the slot's line; leaving with an offer declines it: the place goes on."""
    entry = await store.live_entry(caller.user_id, slot_id, lock=True)
    if entry is None:
        raise domain.NotInLine(f"you are not in the line of slot {slot_id}")
    offered = entry.status is domain.WaitlistStatus.OFFERED
    left = await store.change_entry(entry.id, domain.WaitlistStatus.LEFT)
    await outbox.add(
        store.tx,
        WaitlistLeft(**_about(entry), reason=WaitlistEntryEnd.LEFT, declined_offer=offered),
    )
    if offered:
        await free_places(store, outbox, [entry.slot_id], now=now)
    return left


async def free_places(
    store: Store, outbox: Outbox, slot_ids: Sequence[UUID], *, now: datetime
) -> None:
    """Places given up (one slot id per place): each is offered to the next waiter of its
    slot's line, and the places nobody waits for go back to sale.

    The slots are locked first, in id order, and only then is it read which of them have a
    line: joining a line holds the slot's row (shared) until it commits, so no waiter can
    join unseen between that read and the places going back to sale. A slot nobody waits
    for costs no more than that one read shared with the others."""
    places_of = Counter(slot_ids)
    locked = await store.lock_slots(sorted(places_of))
    waited = set(await store.slots_with_waiters(list(locked)))
    back_to_sale: list[UUID] = []
    for slot_id, places in sorted(places_of.items()):
        offered = 0
        if slot_id in waited:
            offered = await _offer(store, outbox, locked[slot_id], places, now=now)
        back_to_sale += [slot_id] * (places - offered)
    if back_to_sale:
        await store.release_places(back_to_sale)


async def offer_new_capacity(
    store: Store, outbox: Outbox, slot_ids: Sequence[UUID], *, now: datetime
) -> None:
    """Places a slot gained (its capacity raised) go to its line first."""
    for slot_id in await store.slots_with_waiters(slot_ids):
        slot = await store.lock_slot(slot_id)
        free = slot.max_bookings - slot.booked_count
        if free > 0:
            offered = await _offer(store, outbox, slot, free, now=now)
            if offered:
                await store.take_offered_places(slot_id, offered)


async def _offer(
    store: Store, outbox: Outbox, slot: domain.Slot, places: int, *, now: datetime
) -> int:
    """Offer up to ``places`` of the (locked) slot to its first waiters, passing over those
    who hold a booking at its time by now; returns how many were offered."""
    if slot.starts_at <= now or slot.status != SlotStatus.OPEN or places <= 0:
        return 0
    room = await store.get_room(slot.room_id)
    if room is None or not room.active:
        return 0
    offered = 0
    while offered < places:
        line = await store.waiting_in_line(slot.id, limit=places - offered + 8)
        if not line:
            break
        busy = await store.busy_at({entry.user_id for entry in line}, slot.starts_at, slot.ends_at)
        by_id = {entry.id: entry for entry in line}
        remaining = [entry.waiter() for entry in line]
        while remaining and offered < places:
            choice = domain.next_offer(remaining, busy=busy)
            for waiter in choice.skipped:
                await _skip(store, outbox, by_id[waiter.entry_id])
            if choice.offer_to is None:
                break
            await _make_offer(store, outbox, by_id[choice.offer_to.entry_id], slot, room, now=now)
            offered += 1
            remaining = [w for w in remaining if w.seq > choice.offer_to.seq]
    return offered


async def _skip(store: Store, outbox: Outbox, entry: domain.WaitlistEntry) -> None:
    await store.change_entry(entry.id, domain.WaitlistStatus.SKIPPED)
    await outbox.add(
        store.tx,
        WaitlistLeft(**_about(entry), reason=WaitlistEntryEnd.SKIPPED),
    )


async def _make_offer(
    store: Store,
    outbox: Outbox,
    entry: domain.WaitlistEntry,
    slot: domain.Slot,
    room: domain.Room,
    *,
    now: datetime,
) -> None:
    until = domain.offer_expires_at(now, room.rules.offer, slot.starts_at)
    await store.change_entry(entry.id, domain.WaitlistStatus.OFFERED, offer_expires_at=until)
    await outbox.add(
        store.tx,
        WaitlistOfferMade(
            **_about(entry),
            offer_expires_at=until,
            starts_at=slot.starts_at,
            ends_at=slot.ends_at,
            room_name=room.name,
            room_time_zone=room.time_zone,
            contact=entry.contact,
        ),
    )


async def book_offer(
    store: Store,
    outbox: Outbox,
    caller: Caller,
    request: NewBooking,
    offer_id: UUID,
    *,
    now: datetime,
    rules: Rules,
) -> Created:
    """Take a place held for the caller: an ordinary pending booking, paid as usual, in the
    place the offer held (it is counted already). A retry with the request's
    ``Idempotency-Key`` answers the same booking."""
    if request.idempotency_key is not None:
        await store.lock_idempotency_keys([(caller.user_id, request.idempotency_key)])
        earlier = await _replay(store, caller, request)
        if earlier is not None:
            return Created(earlier, replayed=True)
    entry = await store.get_entry(offer_id, lock=True)
    if entry is None or entry.user_id != caller.user_id or entry.slot_id != request.slot_id:
        raise domain.NotInLine(f"you have no offer {offer_id} for slot {request.slot_id}")
    if entry.status is not domain.WaitlistStatus.OFFERED or (
        entry.offer_expires_at is not None and entry.offer_expires_at <= now
    ):
        raise domain.WaitlistRefused(
            f"the offer is over ({entry.status}): the place it held went on"
        )
    slot = await store.get_slot(entry.slot_id)
    room = await store.get_room(slot.room_id)
    assert room is not None  # an offer is made only for a known room
    booking = await store.insert_booking(
        _pending(caller, request, domain.Place(slot, room), now=now, rules=rules),
        max_unpaid_holds=None if caller.is_admin else rules.max_unpaid_holds,
    )
    windows = domain.quota_windows(room, slot.starts_at)
    if windows and (refusal := await store.count_against_quotas(booking, windows)):
        raise refusal
    await store.change_entry(entry.id, domain.WaitlistStatus.BOOKED, booking_id=booking.id)
    await outbox.add(
        store.tx,
        _created_event(booking),
        WaitlistOfferTaken(**_about(entry), booking_id=booking.id),
    )
    return Created(booking, replayed=False)


async def sweep_waitlists(store: Store, outbox: Outbox, *, now: datetime, limit: int) -> int:
    """Lapse the offers that ran out (their places go on down the line) and close the lines
    of slots that started; returns how many entries changed. Rows another replica's sweeper
    holds are skipped."""
    lapsed = await store.due_offers(now=now, limit=limit)
    for entry in lapsed:
        await store.change_entry(entry.id, domain.WaitlistStatus.LAPSED)
    if lapsed:
        await outbox.add(
            store.tx,
            *(WaitlistOfferLapsed(**_about(entry)) for entry in lapsed),
        )
        await free_places(store, outbox, [entry.slot_id for entry in lapsed], now=now)
    closed = await store.closed_lines(now=now, limit=limit)
    for entry in closed:
        await store.change_entry(entry.id, domain.WaitlistStatus.EXPIRED)
    if closed:
        await outbox.add(
            store.tx,
            *(WaitlistExpired(**_about(entry)) for entry in closed),
        )
    return len(lapsed) + len(closed)
