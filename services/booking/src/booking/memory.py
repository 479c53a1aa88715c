"""The booking service's store held in the process: the twin of :class:`booking.store.SqlStore`.

:class:`MemoryStore` works on a transaction of a
:class:`~platform_runtime.memorydb.MemoryDatabase` whose state is a :class:`BookingState`, so
that the use cases run in the fast tests with no PostgreSQL. It keeps what the SQL store and
its tables and triggers keep, the same way:

* the copy of the inventory: a room's state follows the newest of its events (by version,
  the envelope time only between events without one), a placeholder left by a deactivation
  or rules seen before the room takes nothing, rules follow their own versions, a slot's
  newer revision replaces an older one but never its booked count;
* places: taken only while the slot is open, not started, not full and its room's rules take
  the booking (refused with the reason), given back per occurrence;
* bookings: one live booking per user and slot, an ``Idempotency-Key`` used once per user,
  the cap on unpaid holds (a statement that would break it fails whole), the state machine
  of ``domain.TRANSITIONS``, a refund basis that never changes once set, a version counted on
  every change of a booking's row;
* quotas counted once per booking and window and given back once; refunds asked once and
  settled only as ``domain.REFUND_SETTLEMENTS`` allows, the booking's payment status and
  refund total summed up from them; a stray payment recorded once;
* waitlist lines in order, one live entry per user and slot, along
  ``domain.WAITLIST_TRANSITIONS``.

The contract tests (``tests/support/stores/booking.py``) run the same cases against both
stores. Not modelled: locks (the memory database runs one transaction at a time).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from booking import domain
from booking.domain import (
    Booking,
    BookingFilter,
    BookingStatus,
    PaymentStatus,
    PendingBooking,
    Place,
    Refund,
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
    Contact,
    RoomRules,
    RoomSnapshot,
    SlotSnapshot,
    SlotStatus,
)
from booking_contracts.money import Money
from platform_runtime.memorydb import (
    ConstraintViolation,
    TwinStore,
    UniqueViolation,
)


@dataclass
class RoomRow:
    """A row of ``rooms``: the room as its newest event told it."""

    room: Room
    active_as_of: datetime
    version: int
    rules_version: int = 0
    rules: RoomRules = field(default_factory=RoomRules)

    @property
    def key(self) -> tuple[int, datetime]:
        """The order key of the event that set the room's state."""
        return (self.version, self.active_as_of)


@dataclass
class SlotRow:
    """A row of ``slots``: the slot as its newest revision told it, and its places taken."""

    slot: Slot
    revision: int


@dataclass
class RefundRow:
    refund: Refund
    failure_reason: str | None = None
    settled_at: datetime | None = None


@dataclass
class BookingState:
    rooms: dict[UUID, RoomRow] = field(default_factory=dict)
    slots: dict[UUID, SlotRow] = field(default_factory=dict)
    bookings: dict[UUID, Booking] = field(default_factory=dict)
    quota_counts: dict[tuple[str, str, datetime], int] = field(default_factory=dict)
    """(user, scope, window start) -> the user's bookings counted in that window."""
    booking_quotas: dict[UUID, list[tuple[str, str, datetime]]] = field(default_factory=dict)
    """What each booking counted, to give back once."""
    refunds: dict[UUID, RefundRow] = field(default_factory=dict)
    strays: dict[str, StrayPayment] = field(default_factory=dict)
    """Payments no booking took, by payment id."""
    entries: dict[UUID, WaitlistEntry] = field(default_factory=dict)
    """Waitlist entries, by id."""


LIVE = (BookingStatus.PENDING, BookingStatus.CONFIRMED)
"""The statuses in which a booking holds its place: one per user and slot."""
STATUS_CHANGES = {
    (old, new) for moves in domain.TRANSITIONS.values() for old, new in moves.items() if old != new
}
"""The status changes the database lets through (the trigger of migration 0002)."""


def _placeholder(room_id: UUID, as_of: datetime, version: int) -> RoomRow:
    """A room seen by a deactivation or its rules before any snapshot: no name, takes nothing."""
    return RoomRow(Room(room_id, name="", time_zone="UTC", active=False), as_of, version)


class MemoryStore(TwinStore[BookingState]):
    """The service's state in a :class:`MemoryDatabase` transaction (see the module)."""

    # --- inventory -----------------------------------------------------------------------

    async def upsert_room(self, room: RoomSnapshot, *, version: int, as_of: datetime) -> None:
        row = self.state.rooms.get(room.room_id)
        if row is None:
            row = RoomRow(
                Room(room.room_id, room.name, room.time_zone, room.active, room.room_type.value),
                as_of,
                version,
            )
            self.state.rooms[room.room_id] = row
            return
        newer = row.key < (version, as_of)
        if newer or not row.room.name:
            row.room = dataclasses.replace(
                row.room, name=room.name, time_zone=room.time_zone, room_type=room.room_type.value
            )
        if newer:
            row.room = dataclasses.replace(row.room, active=room.active)
            row.active_as_of, row.version = as_of, version

    async def deactivate_room(self, room_id: UUID, *, version: int, as_of: datetime) -> None:
        row = self.state.rooms.get(room_id)
        if row is None:
            self.state.rooms[room_id] = _placeholder(room_id, as_of, version)
        elif row.key < (version, as_of):
            row.room = dataclasses.replace(row.room, active=False)
            row.active_as_of, row.version = as_of, version

    async def set_room_rules(
        self, room_id: UUID, rules: RoomRules, *, version: int, as_of: datetime
    ) -> None:
        row = self.state.rooms.get(room_id)
        if row is None:
            row = self.state.rooms[room_id] = _placeholder(room_id, as_of, 0)
        elif row.rules_version >= version:
            return
        row.rules, row.rules_version = rules, version
        row.room = dataclasses.replace(row.room, rules=domain.rules_of(rules))

    async def get_room(self, room_id: UUID) -> Room | None:
        row = self.state.rooms.get(room_id)
        return row.room if row is not None else None

    async def get_rooms(self, room_ids: Sequence[UUID]) -> dict[UUID, Room]:
        return {i: row.room for i in room_ids if (row := self.state.rooms.get(i)) is not None}

    async def upsert_slots(self, snapshots: Sequence[SlotSnapshot]) -> None:
        for s in snapshots:
            known = self.state.slots.get(s.slot_id)
            if known is not None and known.revision >= s.revision:
                continue
            taken = known.slot.booked_count if known is not None else 0
            slot = Slot(
                s.slot_id,
                s.room_id,
                s.starts_at,
                s.ends_at,
                s.price,
                s.max_bookings,
                taken,
                s.status.value,
            )
            _check(slot)
            self.state.slots[s.slot_id] = SlotRow(slot, s.revision)

    async def get_slot(self, slot_id: UUID) -> Slot:
        row = self.state.slots.get(slot_id)
        if row is None:
            raise domain.SlotNotFound(f"slot {slot_id} is not known")
        return row.slot

    async def lock_slot(self, slot_id: UUID, *, share: bool = False) -> Slot:
        return await self.get_slot(slot_id)

    async def lock_slots(self, slot_ids: Sequence[UUID]) -> dict[UUID, Slot]:
        return {i: row.slot for i in sorted(set(slot_ids)) if (row := self.state.slots.get(i))}

    async def slots_between(self, room_id: UUID, span: domain.Span) -> list[Slot]:
        return sorted(
            (
                row.slot
                for row in self.state.slots.values()
                if row.slot.room_id == room_id
                and span.starts_at <= row.slot.starts_at < span.ends_at
            ),
            key=lambda s: (s.starts_at, s.id),
        )

    # --- places --------------------------------------------------------------------------

    def _takes(self, slot: Slot, now: datetime, places: int) -> Room | None:
        """The slot's room, when the slot takes ``places`` more bookings made at ``now``."""
        row = self.state.rooms.get(slot.room_id)
        if row is None or not row.room.active or not row.room.name:
            return None
        rules = row.room.rules
        if slot.status != SlotStatus.OPEN or slot.starts_at <= now:
            return None
        if slot.booked_count + places > slot.max_bookings:
            return None
        if slot.starts_at < now + rules.book_notice:
            return None
        if rules.horizon is not None and slot.starts_at > now + rules.horizon:
            return None
        return row.room

    def _add_places(self, slot_id: UUID, places: int) -> Slot:
        row = self.state.slots[slot_id]
        slot = dataclasses.replace(row.slot, booked_count=row.slot.booked_count + places)
        _check(slot)
        row.slot = slot
        return slot

    async def take_place(self, slot_id: UUID, *, now: datetime) -> Place:
        slot = await self.get_slot(slot_id)
        room = self._takes(slot, now, 1)
        if room is not None:
            return Place(self._add_places(slot_id, 1), room)
        reason = domain.why_unavailable(slot, await self.get_room(slot.room_id), now)
        assert reason is not None  # what the twin refuses, the reasons explain
        raise reason

    async def take_places(self, wanted: Mapping[UUID, int], *, now: datetime) -> Taken:
        places: dict[UUID, tuple[Place, int]] = {}
        full: dict[UUID, int] = {}
        for slot_id in sorted(wanted):
            row = self.state.slots.get(slot_id)
            if row is None or (room := self._takes(row.slot, now, 0)) is None:
                continue
            if room.rules.quotas:  # a room with quotas counts each booking alone
                continue
            left = max(row.slot.max_bookings - row.slot.booked_count, 0)
            if wanted[slot_id] > left:
                full[slot_id] = row.slot.max_bookings
            if left > 0:
                granted = min(wanted[slot_id], left)
                places[slot_id] = (Place(self._add_places(slot_id, granted), room), granted)
        return Taken(places, full)

    async def release_places(self, slot_ids: Sequence[UUID]) -> None:
        for slot_id, count in Counter(slot_ids).items():
            if slot_id in self.state.slots:
                self._add_places(slot_id, -count)

    # --- bookings ------------------------------------------------------------------------

    def _pending_of(self, user_id: str) -> int:
        return sum(
            1
            for b in self.state.bookings.values()
            if b.user_id == user_id and b.status is BookingStatus.PENDING
        )

    def _conflicts(self, booking: Booking) -> bool:
        """Whether ``booking`` would break a unique index: a second live booking of its user
        in its slot, or its user's ``Idempotency-Key`` used again."""
        return any(
            other.id != booking.id
            and other.user_id == booking.user_id
            and (
                (
                    other.slot_id == booking.slot_id
                    and other.status in LIVE
                    and booking.status in LIVE
                )
                or (
                    booking.idempotency_key is not None
                    and other.idempotency_key == booking.idempotency_key
                )
            )
            for other in self.state.bookings.values()
        )

    def _new(self, pending: PendingBooking) -> Booking:
        slot = pending.slot
        return Booking(
            id=pending.id,
            user_id=pending.user_id,
            room_id=slot.room_id,
            slot_id=slot.id,
            starts_at=slot.starts_at,
            ends_at=slot.ends_at,
            status=BookingStatus.PENDING,
            booking_type=pending.booking_type,
            price=slot.price,
            payment_status=PaymentStatus.PENDING,
            payment_id=None,
            refund=None,
            refund_basis_starts_at=None,
            refund_failure_reason=None,
            notes=pending.notes,
            attributes=dict(pending.attributes),
            contact=pending.contact,
            hold_expires_at=pending.hold_expires_at,
            created_at=self.now,
            updated_at=self.now,
            cancelled_at=None,
            cancellation_reason=None,
            cancelled_by=None,
            idempotency_key=pending.idempotency_key,
            request_fingerprint=pending.request_fingerprint,
            version=1,
            terms=None if pending.terms is None else domain.rules_of(pending.terms),
        )

    def _capped(self, user_id: str, most: int | None) -> None:
        """The cap on unpaid holds (the trigger of migration 0004), before a hold is added."""
        held = self._pending_of(user_id)
        if most is not None and held >= most:
            raise domain.TooManyUnpaidHolds(held=held, most=most)

    async def insert_booking(
        self, booking: PendingBooking, *, max_unpaid_holds: int | None
    ) -> Booking:
        self._capped(booking.user_id, max_unpaid_holds)
        new = self._new(booking)
        if self._conflicts(new):
            raise domain.already_holds(booking.slot.id)
        self.state.bookings[new.id] = new
        return new

    async def insert_bookings(
        self, new: Sequence[PendingBooking], *, max_unpaid_holds: int | None
    ) -> dict[UUID, Booking]:
        before = dict(self.state.bookings)
        inserted: dict[UUID, Booking] = {}
        try:
            for pending in new:
                self._capped(pending.user_id, max_unpaid_holds)
                booking = self._new(pending)
                if not self._conflicts(booking):
                    self.state.bookings[booking.id] = inserted[booking.id] = booking
        except domain.TooManyUnpaidHolds:
            self.state.bookings = before  # the statement fails whole
            raise
        return inserted

    async def lock_unpaid_holds(self, user_ids: Collection[str]) -> dict[str, int]:
        held = {user: self._pending_of(user) for user in set(user_ids)}
        return {user: n for user, n in held.items() if n}

    async def lock_idempotency_keys(self, keys: Collection[tuple[str, str]]) -> None:
        """Nothing to wait for: the memory database runs one transaction at a time."""

    async def find_by_idempotency_keys(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], Booking]:
        wanted = set(keys)
        return {
            (b.user_id, b.idempotency_key): b
            for b in self.state.bookings.values()
            if b.idempotency_key is not None and (b.user_id, b.idempotency_key) in wanted
        }

    async def find_by_idempotency_key(self, user_id: str, key: str) -> Booking | None:
        return (await self.find_by_idempotency_keys([(user_id, key)])).get((user_id, key))

    async def get_booking(self, booking_id: UUID, *, lock: bool = False) -> Booking:
        booking = self.state.bookings.get(booking_id)
        if booking is None:
            raise domain.BookingNotFound(f"booking {booking_id} does not exist")
        return booking

    async def lock_bookings(
        self, booking_ids: Sequence[UUID]
    ) -> tuple[dict[UUID, Booking], dict[UUID, Room]]:
        found = {i: b for i in sorted(set(booking_ids)) if (b := self.state.bookings.get(i))}
        known = {
            b.room_id: Room(b.room_id, row.room.name, row.room.time_zone, row.room.active)
            for b in found.values()
            if (row := self.state.rooms.get(b.room_id)) is not None
        }
        return found, known

    async def slots_held_by(self, user_id: str, slot_ids: Collection[UUID]) -> set[UUID]:
        wanted = set(slot_ids)
        return {
            b.slot_id
            for b in self.state.bookings.values()
            if b.user_id == user_id and b.slot_id in wanted and b.status in LIVE
        }

    def _change(self, booking_id: UUID, **changes: Any) -> Booking:
        """A change of the booking's row, as its triggers let it: along the state machine,
        its refund basis never changed once set, its version counted."""
        old = self.state.bookings[booking_id]
        new = dataclasses.replace(old, **changes, version=old.version + 1, updated_at=self.now)
        if new.status != old.status and (old.status, new.status) not in STATUS_CHANGES:
            raise ConstraintViolation(f"a booking cannot go from {old.status} to {new.status}")
        basis = old.refund_basis_starts_at
        if basis is not None and new.refund_basis_starts_at != basis:
            raise ConstraintViolation("the start a booking was paid for never changes")
        if self._conflicts(new):
            raise UniqueViolation(f"uq_bookings_live_user_slot: booking {booking_id}")
        self.state.bookings[booking_id] = new
        return new

    async def cancel_booking(
        self, booking_id: UUID, *, by: Actor, reason: str | None, at: datetime
    ) -> Booking:
        return self._change(
            booking_id,
            status=BookingStatus.CANCELLED,
            cancelled_at=at,
            cancelled_by=by,
            cancellation_reason=reason,
        )

    async def move_booking(self, booking_id: UUID, slot: Slot) -> Booking:
        old = self.state.bookings[booking_id]
        try:
            return self._change(
                booking_id,
                slot_id=slot.id,
                starts_at=slot.starts_at,
                ends_at=slot.ends_at,
                price=slot.price,
                reschedules=old.reschedules + 1,
            )
        except UniqueViolation as exc:
            raise domain.already_holds(slot.id) from exc

    async def set_status(self, booking_id: UUID, status: BookingStatus) -> Booking:
        return self._change(booking_id, status=status)

    async def confirm_booking(
        self, booking_id: UUID, *, payment_id: str, refund_basis_starts_at: datetime
    ) -> Booking:
        return self._change(
            booking_id,
            status=BookingStatus.CONFIRMED,
            payment_status=PaymentStatus.PAID,
            payment_id=payment_id,
            refund_basis_starts_at=refund_basis_starts_at,
        )

    async def confirm_paid(self, payments: Mapping[UUID, str]) -> dict[UUID, int]:
        confirmed: dict[UUID, int] = {}
        for booking_id, payment_id in payments.items():
            booking = self.state.bookings.get(booking_id)
            if booking is None or booking.status is not BookingStatus.PENDING:
                continue
            if booking.payment_id is not None:
                continue
            done = await self.confirm_booking(
                booking_id, payment_id=payment_id, refund_basis_starts_at=booking.starts_at
            )
            confirmed[booking_id] = done.version
        return confirmed

    async def attach_payment(self, booking_id: UUID, payment_id: str) -> Booking:
        return self._change(booking_id, payment_id=payment_id)

    async def expire_due(self, *, now: datetime, limit: int) -> list[Booking]:
        due = sorted(
            (
                b
                for b in self.state.bookings.values()
                if b.status is BookingStatus.PENDING and b.hold_expires_at <= now
            ),
            key=lambda b: (b.hold_expires_at, b.id),
        )[:limit]
        return [self._change(b.id, status=BookingStatus.EXPIRED) for b in due]

    async def list_bookings(
        self, where: BookingFilter, *, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[Booking]:
        def kept(b: Booking) -> bool:
            return (
                (where.user_id is None or b.user_id == where.user_id)
                and (where.room_id is None or b.room_id == where.room_id)
                and (not where.statuses or b.status in where.statuses)
                and (not where.payment_statuses or b.payment_status in where.payment_statuses)
                and (where.starts_from is None or b.starts_at >= where.starts_from)
                and (where.starts_before is None or b.starts_at < where.starts_before)
                and (after is None or (b.starts_at, b.id) > after)
            )

        found = [b for b in self.state.bookings.values() if kept(b)]
        return sorted(found, key=lambda b: (b.starts_at, b.id))[:limit]

    # --- quotas --------------------------------------------------------------------------

    async def count_against_quotas(
        self, booking: Booking, windows: Sequence[domain.QuotaWindow]
    ) -> domain.RuleBroken | None:
        counts = self.state.quota_counts
        for window in windows:
            key = (booking.user_id, window.scope, window.span.starts_at)
            used = counts.get(key)
            if used is not None and used >= window.quota.most:
                return domain.quota_refusal(
                    window.quota, used=used, span=window.span, room=window.where
                )
            counts[key] = (used or 0) + 1
        if windows:
            self.state.booking_quotas[booking.id] = [
                (booking.user_id, w.scope, w.span.starts_at) for w in windows
            ]
        return None

    async def release_quotas(self, booking_ids: Sequence[UUID]) -> None:
        for booking_id in sorted(set(booking_ids)):
            for key in self.state.booking_quotas.pop(booking_id, []):
                self.state.quota_counts[key] -= 1

    async def quota_usage(
        self, user_id: str, keys: Collection[tuple[str, datetime]]
    ) -> dict[tuple[str, datetime], int]:
        counts = self.state.quota_counts
        return {
            (scope, start): counts[user_id, scope, start]
            for scope, start in set(keys)
            if (user_id, scope, start) in counts
        }

    # --- refunds -------------------------------------------------------------------------

    async def request_refund(
        self,
        *,
        refund_id: UUID,
        booking_id: UUID,
        payment_id: str,
        amount: Money,
        reason: str,
    ) -> Booking | None:
        if refund_id in self.state.refunds:
            return None
        refund = Refund(refund_id, booking_id, payment_id, amount, RefundStatus.REQUESTED)
        self.state.refunds[refund_id] = RefundRow(refund)
        return self._sum_up_refunds(booking_id)

    async def get_refund(self, refund_id: UUID) -> Refund | None:
        row = self.state.refunds.get(refund_id)
        return row.refund if row is not None else None

    async def settle_refund(
        self,
        refund: Refund,
        *,
        status: RefundStatus,
        failure_reason: str | None,
        now: datetime,
    ) -> Booking:
        row = self.state.refunds.get(refund.id)
        if row is None or row.refund.status is not refund.status:
            raise RuntimeError(f"refund {refund.id} is no longer {refund.status.value}")
        _settles(refund.status, status)
        row.refund = dataclasses.replace(row.refund, status=status)
        row.failure_reason, row.settled_at = failure_reason, now
        return self._sum_up_refunds(refund.booking_id)

    def _sum_up_refunds(self, booking_id: UUID) -> Booking:
        """The booking's payment status, refund total and latest refund failure, from its
        refunds (``domain.PAYMENT_STATUS_OF_REFUNDS``)."""
        rows = [r for r in self.state.refunds.values() if r.refund.booking_id == booking_id]
        booking = self.state.bookings[booking_id]
        statuses = {r.refund.status for r in rows}
        paid = next(p for refund, p in domain.PAYMENT_STATUS_OF_REFUNDS if refund in statuses)
        failed = sorted(
            (r for r in rows if r.refund.status is RefundStatus.FAILED),
            key=lambda r: r.settled_at or self.now,
            reverse=True,
        )
        total = sum((r.refund.amount.amount for r in rows), start=Decimal(0))
        return self._change(
            booking_id,
            payment_status=paid,
            refund=Money.of(total, booking.price.currency),
            refund_failure_reason=failed[0].failure_reason if failed else None,
        )

    async def record_stray_payment(
        self,
        *,
        payment_id: str,
        booking_id: UUID,
        amount: Money,
        reason: str,
        refund_id: UUID,
    ) -> StrayPayment | None:
        if payment_id in self.state.strays:
            return None
        if any(s.refund_id == refund_id for s in self.state.strays.values()):
            raise UniqueViolation(f"the refund {refund_id} of a stray payment exists")
        stray = StrayPayment(
            payment_id, booking_id, amount, reason, refund_id, RefundStatus.REQUESTED, None
        )
        self.state.strays[payment_id] = stray
        return stray

    async def lock_stray_refund(self, refund_id: UUID) -> StrayPayment | None:
        return next((s for s in self.state.strays.values() if s.refund_id == refund_id), None)

    async def settle_stray_refund(
        self,
        stray: StrayPayment,
        *,
        status: RefundStatus,
        failure_reason: str | None,
        now: datetime,
    ) -> StrayPayment:
        known = self.state.strays.get(stray.payment_id)
        if known is None or known.refund_status is not stray.refund_status:
            raise RuntimeError(
                f"the refund of stray payment {stray.payment_id} is no longer "
                f"{stray.refund_status.value}"
            )
        _settles(stray.refund_status, status)
        settled = dataclasses.replace(known, refund_status=status, failure_reason=failure_reason)
        self.state.strays[stray.payment_id] = settled
        return settled

    # --- the waitlist --------------------------------------------------------------------

    def _entries(self, *statuses: WaitlistStatus) -> list[WaitlistEntry]:
        return sorted(
            (e for e in self.state.entries.values() if e.status in statuses),
            key=lambda e: e.seq,
        )

    async def lock_lines_of(self, user_id: str) -> int:
        return sum(1 for e in self._entries(*domain.LIVE_WAITLIST) if e.user_id == user_id)

    async def insert_entry(
        self, entry_id: UUID, slot: Slot, user_id: str, contact: Contact
    ) -> WaitlistEntry:
        if slot.id not in self.state.slots:
            raise ConstraintViolation(
                f"slot {slot.id} is not known (fk_waitlist_entries_slot_id_slots)"
            )
        if await self.live_entry(user_id, slot.id) is not None:
            raise UniqueViolation("uq_waitlist_entries_live_user_slot")
        seq = max((e.seq for e in self.state.entries.values()), default=0) + 1
        entry = WaitlistEntry(
            entry_id,
            seq,
            slot.id,
            slot.room_id,
            user_id,
            contact,
            WaitlistStatus.WAITING,
            None,
            None,
            self.now,
        )
        self.state.entries[entry_id] = entry
        return entry

    async def position_in_line(self, entry: WaitlistEntry) -> int:
        waiting = self._entries(WaitlistStatus.WAITING)
        return 1 + sum(1 for e in waiting if e.slot_id == entry.slot_id and e.seq < entry.seq)

    async def live_entry(
        self, user_id: str, slot_id: UUID, *, lock: bool = False
    ) -> WaitlistEntry | None:
        return next(
            (
                e
                for e in self._entries(*domain.LIVE_WAITLIST)
                if e.user_id == user_id and e.slot_id == slot_id
            ),
            None,
        )

    async def get_entry(self, entry_id: UUID, *, lock: bool = False) -> WaitlistEntry | None:
        return self.state.entries.get(entry_id)

    async def change_entry(
        self,
        entry_id: UUID,
        status: WaitlistStatus,
        *,
        offer_expires_at: datetime | None = None,
        booking_id: UUID | None = None,
    ) -> WaitlistEntry:
        old = self.state.entries[entry_id]
        allowed = domain.WAITLIST_TRANSITIONS.get(old.status, frozenset())
        if status is not old.status and status not in allowed:
            raise ConstraintViolation(f"a waitlist entry cannot go from {old.status} to {status}")
        if (status is WaitlistStatus.OFFERED) != (offer_expires_at is not None):
            raise ConstraintViolation(f"entry {entry_id} breaks offered_until")
        if (status is WaitlistStatus.BOOKED) != (booking_id is not None):
            raise ConstraintViolation(f"entry {entry_id} breaks booked_with_booking")
        new = dataclasses.replace(
            old, status=status, offer_expires_at=offer_expires_at, booking_id=booking_id
        )
        self.state.entries[entry_id] = new
        return new

    async def waiting_in_line(self, slot_id: UUID, *, limit: int) -> list[WaitlistEntry]:
        return [e for e in self._entries(WaitlistStatus.WAITING) if e.slot_id == slot_id][:limit]

    async def busy_at(
        self, user_ids: Collection[str], starts_at: datetime, ends_at: datetime
    ) -> set[str]:
        users = set(user_ids)
        return {
            b.user_id
            for b in self.state.bookings.values()
            if b.user_id in users
            and b.status in LIVE
            and b.starts_at < ends_at
            and b.ends_at > starts_at
        }

    async def due_offers(self, *, now: datetime, limit: int) -> list[WaitlistEntry]:
        due = [
            e
            for e in self._entries(WaitlistStatus.OFFERED)
            if e.offer_expires_at is not None and e.offer_expires_at <= now
        ]
        return sorted(due, key=lambda e: (e.offer_expires_at, e.seq))[:limit]

    async def closed_lines(self, *, now: datetime, limit: int) -> list[WaitlistEntry]:
        return [
            e
            for e in self._entries(WaitlistStatus.WAITING)
            if self.state.slots[e.slot_id].slot.starts_at <= now
        ][:limit]

    async def take_offered_places(self, slot_id: UUID, places: int) -> None:
        self._add_places(slot_id, places)

    async def slots_with_waiters(self, slot_ids: Collection[UUID]) -> list[UUID]:
        wanted = set(slot_ids)
        return sorted(
            {e.slot_id for e in self._entries(WaitlistStatus.WAITING) if e.slot_id in wanted}
        )


def _settles(old: RefundStatus, new: RefundStatus) -> None:
    """A refund settles only as ``domain.REFUND_SETTLEMENTS`` allows (a trigger)."""
    if new is not old and new not in domain.REFUND_SETTLEMENTS.get(old, frozenset()):
        raise ConstraintViolation(f"a refund cannot go from {old} to {new}")


def _check(slot: Slot) -> None:
    """The table's checks of a slot."""
    broken = [
        name
        for name, holds in (
            ("booked_count_not_negative", slot.booked_count >= 0),
            ("within_capacity", slot.booked_count <= slot.max_bookings),
            ("ends_after_start", slot.ends_at > slot.starts_at),
        )
        if not holds
    ]
    if broken:
        raise ConstraintViolation(f"slot {slot.id} breaks {', '.join(broken)}")
