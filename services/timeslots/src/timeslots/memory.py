"""The timeslots service's store held in the process: the twin of :class:`timeslots.store.SqlStore`.

:class:`MemoryStore` works on a transaction of a
:class:`~platform_runtime.memorydb.MemoryDatabase` whose state is a :class:`TimeslotsState`,
so that the use cases run in the fast tests with no PostgreSQL. It keeps what the SQL store
and its tables keep, the same way: a room's version counted on every change of its row, no
two slots of a room overlapping or starting together (generated slots that start where one
starts are skipped; any other overlap is refused), a slot's revision counted on every status
change, holds keyed by holder (so repeats and a release seen before its hold end in the
same count), and the availability search with its runs of back-to-back free slots. The
contract tests (``tests/support/stores/timeslots.py``) run the same cases against both.

What it leaves out: locks (the memory database runs one transaction at a time), and the
text collation of room names (they are ordered by code point).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from booking_contracts.catalogue import RoomRules, RoomType, SlotStatus
from booking_contracts.money import Money
from platform_runtime.memorydb import ConstraintViolation, TwinStore
from platform_runtime.outbox import Outbox
from timeslots import domain
from timeslots.domain import (
    Available,
    Hold,
    HoldChange,
    Inserted,
    Move,
    NewRoom,
    PartialRules,
    Room,
    RoomChanges,
    Slot,
    StoredSchedule,
)

NO_OVERLAP = "timeslots_no_overlap"


@dataclass
class HoldRow:
    slot_id: UUID
    released: bool


@dataclass
class TimeslotsState:
    rooms: dict[UUID, Room] = field(default_factory=dict)
    schedules: dict[UUID, StoredSchedule] = field(default_factory=dict)
    slots: dict[UUID, Slot] = field(default_factory=dict)
    holds: dict[UUID, HoldRow] = field(default_factory=dict)


class MemoryStore(TwinStore[TimeslotsState]):
    """The service's state in a :class:`MemoryDatabase` transaction (see the module)."""

    # --- rooms ---------------------------------------------------------------------------

    def _save(self, room: Room, **changes: Any) -> Room:
        """A change of the room's row: its version counts it (the trigger of migration 0004)."""
        changed = dataclasses.replace(
            room, **changes, version=room.version + 1, updated_at=self.now
        )
        if changed.capacity < 1 or changed.hourly_rate.amount < 0:
            raise ConstraintViolation(f"room {room.id} breaks capacity_positive or its rate")
        self.state.rooms[room.id] = changed
        return changed

    async def insert_room(self, room_id: UUID, new: NewRoom) -> Room:
        if room_id in self.state.rooms:
            raise ConstraintViolation(f"room {room_id} exists (rooms_pkey)")
        room = Room(
            id=room_id,
            name=new.name,
            description=new.description,
            capacity=new.capacity,
            room_type=new.room_type,
            hourly_rate=new.hourly_rate,
            time_zone=new.time_zone,
            active=True,
            attributes=dict(new.attributes),
            created_at=self.now,
            updated_at=self.now,
            version=1,
        )
        if room.capacity < 1 or room.hourly_rate.amount < 0:
            raise ConstraintViolation(f"room {room_id} breaks capacity_positive or its rate")
        self.state.rooms[room_id] = room
        return room

    async def update_room(self, room_id: UUID, changes: RoomChanges) -> Room | None:
        room = self.state.rooms.get(room_id)
        if room is None:
            return None
        given = changes.given()
        if "attributes" in given:
            given["attributes"] = dict(given["attributes"])
        return self._save(room, **given)

    async def get_room(self, room_id: UUID, *, lock: bool = False) -> Room:
        room = self.state.rooms.get(room_id)
        if room is None:
            raise domain.RoomNotFound(f"room {room_id} does not exist")
        return room

    async def set_own_rules(self, room_id: UUID, own: PartialRules) -> Room:
        return self._save(await self.get_room(room_id), own_rules=PartialRules(dict(own.values)))

    async def record_published_rules(self, room_id: UUID, rules: RoomRules) -> Room:
        return self._save(await self.get_room(room_id), published_rules=rules)

    def _rooms_after(self, after: UUID | None) -> list[Room]:
        return sorted(
            (r for r in self.state.rooms.values() if after is None or r.id > after),
            key=lambda r: r.id,
        )

    async def lock_rooms(self, *, after: UUID | None, limit: int) -> list[Room]:
        return self._rooms_after(after)[:limit]

    async def list_rooms(
        self, *, room_type: RoomType | None, active: bool | None, after: UUID | None, limit: int
    ) -> list[Room]:
        return [
            r
            for r in self._rooms_after(after)
            if (room_type is None or r.room_type == room_type)
            and (active is None or r.active == active)
        ][:limit]

    async def active_room_ids(self) -> list[UUID]:
        active = (r for r in self.state.rooms.values() if r.active)
        return [r.id for r in sorted(active, key=lambda r: (r.name, r.id))]

    # --- schedules -----------------------------------------------------------------------

    async def put_schedule(self, schedule: StoredSchedule) -> StoredSchedule:
        if schedule.room_id not in self.state.rooms:
            raise ConstraintViolation(
                f"room {schedule.room_id} does not exist (fk_schedules_room_id_rooms)"
            )
        stored = dataclasses.replace(
            schedule,
            open_weekdays=tuple(schedule.open_weekdays),
            weekday_hours={
                day: list(spans) for day, spans in sorted(schedule.weekday_hours.items())
            },
            excluded_dates=tuple(sorted(schedule.excluded_dates)),
            updated_at=self.now,
        )
        self.state.schedules[schedule.room_id] = stored
        return stored

    async def get_schedule(self, room_id: UUID) -> StoredSchedule | None:
        return self.state.schedules.get(room_id)

    # --- slots ---------------------------------------------------------------------------

    def _room_slots(self, room_id: UUID) -> list[Slot]:
        return sorted(
            (s for s in self.state.slots.values() if s.room_id == room_id),
            key=lambda s: s.starts_at,
        )

    def _add(self, new: Sequence[Slot]) -> None:
        """Write ``new`` slots (sorted by start) after the table's checks: their room exists,
        each ends after it starts, and no slot of the room overlaps another."""
        for slot in new:
            if slot.room_id not in self.state.rooms:
                raise ConstraintViolation(
                    f"room {slot.room_id} does not exist (timeslots_room_exists)"
                )
            if slot.ends_at <= slot.starts_at or slot.max_bookings < 1 or slot.price.amount < 0:
                raise ConstraintViolation(f"slot {slot.id} breaks its checks")
        rooms = {slot.room_id for slot in new}
        for room_id in rooms:
            spans = sorted(
                (s.starts_at, s.ends_at)
                for s in [*self._room_slots(room_id), *(n for n in new if n.room_id == room_id)]
            )
            for (start, end), (next_start, _) in itertools.pairwise(spans):
                if next_start < end or next_start == start:
                    raise ConstraintViolation(f"slots of room {room_id} overlap ({NO_OVERLAP})")
        for slot in new:
            self.state.slots[slot.id] = slot

    def _slot(
        self, room_id: UUID, starts_at: datetime, ends_at: datetime, price: Money, places: int
    ) -> Slot:
        return Slot(
            id=uuid4(),
            room_id=room_id,
            starts_at=starts_at,
            ends_at=ends_at,
            price=price,
            max_bookings=places,
            booked_count=0,
            status=SlotStatus.OPEN,
            revision=1,
            created_at=self.now,
        )

    async def insert_generated(
        self,
        outbox: Outbox,
        *,
        room_id: UUID,
        starts: Sequence[datetime],
        ends: Sequence[datetime],
        price: Money,
        max_bookings: int,
        slots_per_event: int,
    ) -> Inserted:
        taken = {s.starts_at for s in self._room_slots(room_id)}
        new = sorted(
            (
                self._slot(room_id, start, end, price, max_bookings)
                for start, end in zip(starts, ends, strict=True)
                if start not in taken
            ),
            key=lambda s: s.starts_at,
        )
        self._add(new)
        events = domain.slots_generated(room_id, [s.snapshot() for s in new], slots_per_event)
        if events:
            await outbox.add(self.tx, *events)
        return Inserted(
            created=len(new),
            first_starts_at=new[0].starts_at if new else None,
            last_starts_at=new[-1].starts_at if new else None,
            events=len(events),
        )

    async def insert_custom(
        self,
        *,
        room_id: UUID,
        currency: str,
        slots: Sequence[tuple[datetime, datetime, Decimal, int]],
    ) -> list[Slot]:
        new = sorted(
            (
                self._slot(room_id, start, end, Money.of(amount, currency), places)
                for start, end, amount, places in slots
            ),
            key=lambda s: s.starts_at,
        )
        try:
            self._add(new)
        except ConstraintViolation as exc:
            if NO_OVERLAP in str(exc):
                raise domain.SlotOverlap(
                    "a new slot overlaps a slot the room got meanwhile; nothing was added"
                ) from exc
            raise
        return new

    async def spans_between(
        self, room_id: UUID, start: datetime, end: datetime
    ) -> list[tuple[datetime, datetime]]:
        return [
            (s.starts_at, s.ends_at)
            for s in self._room_slots(room_id)
            if s.starts_at < end and s.ends_at > start
        ]

    async def get_slot(self, slot_id: UUID) -> Slot:
        slot = self.state.slots.get(slot_id)
        if slot is None:
            raise domain.SlotNotFound(f"slot {slot_id} does not exist")
        return slot

    async def set_slot_status(self, slot_id: UUID, status: SlotStatus) -> tuple[Slot, bool]:
        slot = await self.get_slot(slot_id)
        if slot.status == status:
            return slot, False
        changed = dataclasses.replace(slot, status=status, revision=slot.revision + 1)
        self.state.slots[slot_id] = changed
        return changed, True

    async def list_slots(
        self,
        room_id: UUID,
        *,
        start: datetime,
        end: datetime,
        after: tuple[datetime, UUID] | None,
        limit: int,
    ) -> list[Slot]:
        return sorted(
            (
                s
                for s in self.state.slots.values()
                if s.room_id == room_id
                and start <= s.starts_at < end
                and (after is None or (s.starts_at, s.id) > after)
            ),
            key=lambda s: (s.starts_at, s.id),
        )[:limit]

    # --- holds ---------------------------------------------------------------------------

    async def existing_slots(self, slot_ids: Iterable[UUID]) -> set[UUID]:
        return {slot_id for slot_id in slot_ids if slot_id in self.state.slots}

    async def apply_hold_changes(self, changes: Sequence[HoldChange]) -> None:
        touched: set[UUID] = set()
        holds = self.state.holds
        for change in changes:
            known = holds.get(change.holder_id)
            touched.update(change.slots)
            match change:
                case Hold():
                    if known is None:
                        holds[change.holder_id] = HoldRow(change.slot_id, released=False)
                case Move():
                    if known is None:
                        holds[change.holder_id] = HoldRow(change.new_slot_id, released=False)
                    elif not known.released and known.slot_id == change.old_slot_id:
                        known.slot_id = change.new_slot_id
                case _:  # a release
                    if known is None:
                        holds[change.holder_id] = HoldRow(change.slot_id, released=True)
                    elif not known.released:
                        known.released = True
                        touched.add(known.slot_id)
        held = {
            slot_id: sum(1 for h in holds.values() if h.slot_id == slot_id and not h.released)
            for slot_id in touched
        }
        for slot_id, count in held.items():
            if (slot := self.state.slots.get(slot_id)) is not None:
                self.state.slots[slot_id] = dataclasses.replace(slot, booked_count=count)

    # --- availability --------------------------------------------------------------------

    async def search(
        self,
        *,
        room_id: UUID | None,
        room_type: RoomType | None,
        date_from: date,
        date_to: date,
        min_duration: timedelta | None,
        now: datetime,
        after: tuple[datetime, UUID] | None,
        limit: int,
    ) -> list[Available]:
        reach = min_duration or timedelta(0)
        found: list[Available] = []
        for room in self.state.rooms.values():
            if not room.active or room_id not in (None, room.id):
                continue
            if room_type is not None and room.room_type != room_type:
                continue
            first, hi = domain.local_days(room.time_zone, date_from, date_to)
            lo = max(first, now)
            free = [
                s
                for s in self._room_slots(room.id)
                if lo <= s.starts_at < hi + reach
                and s.status == SlotStatus.OPEN
                and s.booked_count < s.max_bookings
            ]
            free_until = self._runs(free)
            for slot in free:
                run = free_until[slot.id] - slot.starts_at
                if slot.starts_at >= hi or (min_duration is not None and run < min_duration):
                    continue
                found.append(
                    Available(
                        slot_id=slot.id,
                        room_id=room.id,
                        room_name=room.name,
                        time_zone=room.time_zone,
                        starts_at=slot.starts_at,
                        ends_at=slot.ends_at,
                        price=slot.price,
                        places_left=slot.max_bookings - slot.booked_count,
                        free_minutes=(
                            round(run.total_seconds() / 60) if min_duration is not None else None
                        ),
                    )
                )
        cursor = after or (datetime.min.replace(tzinfo=UTC), UUID(int=0))
        page = [a for a in found if (a.starts_at, a.slot_id) > cursor]
        return sorted(page, key=lambda a: (a.starts_at, a.slot_id))[:limit]

    @staticmethod
    def _runs(free: Sequence[Slot]) -> dict[UUID, datetime]:
        """For each free slot (by start), the end of its run of back-to-back free slots."""
        until: dict[UUID, datetime] = {}
        run: list[Slot] = []
        for slot in [*free, None]:
            if slot is not None and run and slot.starts_at == run[-1].ends_at:
                run.append(slot)
                continue
            if run:
                end = max(s.ends_at for s in run)
                until.update((s.id, end) for s in run)
            run = [slot] if slot is not None else []
        return until
