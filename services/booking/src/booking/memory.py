"""The booking service's store held in the process: the twin of :class:`booking.store.SqlStore`,
being written part by part.

:class:`MemoryStore` works on a transaction of a
:class:`~platform_runtime.memorydb.MemoryDatabase` whose state is a :class:`BookingState`. So
far it keeps the service's copy of the inventory and the places taken in it, the same way as
the SQL store and its tables: a room's state follows the newest of its events (by version,
the envelope time only between events without one), a placeholder left by a deactivation or
rules seen before the room takes nothing, rules follow their own versions, a slot's newer
revision replaces an older one but never its booked count, and a place is taken only while
the slot is open, not started, not full and its room's rules take the booking. The contract
tests (``tests/support/stores/booking.py``) run the same cases against both stores.

Still to come: bookings, quotas, refunds, stray payments and the waitlist (until then,
booking's use cases are tested on PostgreSQL). Not modelled: locks (the memory database runs
one transaction at a time).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from booking import domain
from booking.domain import Place, Room, Slot, Taken, slot_full
from booking_contracts.catalogue import RoomRules, RoomSnapshot, SlotSnapshot, SlotStatus
from platform_runtime.memorydb import MemoryDatabase, TwinStore
from platform_runtime.transport import RecordPublisher


class ConstraintViolation(Exception):
    """What the database would refuse (its message names the rule, as PostgreSQL's does)."""


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
class BookingState:
    rooms: dict[UUID, RoomRow] = field(default_factory=dict)
    slots: dict[UUID, SlotRow] = field(default_factory=dict)


def memory_database(publisher: RecordPublisher | None = None) -> MemoryDatabase[BookingState]:
    """An empty database of the service, publishing its outbox to ``publisher``."""
    return MemoryDatabase(BookingState(), publisher=publisher)


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
        known = self.state.rooms.get(slot.room_id)
        if known is None or not known.room.name:
            raise domain.SlotUnavailable(f"the room of slot {slot_id} is not known here yet")
        if not known.room.active:
            raise domain.SlotUnavailable(f"room {known.room.name!r} takes no bookings (inactive)")
        if slot.starts_at <= now:
            raise domain.SlotUnavailable(f"slot {slot_id} has already started")
        if slot.status != SlotStatus.OPEN:
            raise domain.SlotUnavailable(f"slot {slot_id} is {slot.status}")
        known.room.rules.check_booking(starts_at=slot.starts_at, now=now)
        raise slot_full(slot_id, slot.max_bookings)

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
