"""Use cases of the timeslots service: each changes state and records its events together.

Every function runs in the caller's transaction and adds its events to the outbox in that
same transaction, so an event leaves the service if and only if its change committed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Protocol
from uuid import UUID

from booking_contracts.catalogue import (
    RoomDeactivated,
    RoomRules,
    RoomRulesSet,
    RoomType,
    RoomUpserted,
    SlotChanged,
    SlotSnapshot,
    SlotStatus,
)
from booking_contracts.money import Money, utc_now
from platform_runtime.outbox import Outbox
from platform_runtime.transactions import TransactionalStore
from timeslots import domain


class Store(TransactionalStore, Protocol):
    """What the use cases read and change, in one transaction: the service's database
    (:class:`timeslots.store.SqlStore`), or its twin held in the process
    (:class:`timeslots.memory.MemoryStore`), which the same contract tests hold to the same
    behaviour. The methods are documented on the SQL store."""

    async def insert_room(self, room_id: UUID, new: domain.NewRoom) -> domain.Room: ...

    async def update_room(
        self, room_id: UUID, changes: domain.RoomChanges
    ) -> domain.Room | None: ...

    async def get_room(self, room_id: UUID, *, lock: bool = False) -> domain.Room: ...

    async def set_own_rules(self, room_id: UUID, own: domain.PartialRules) -> domain.Room: ...

    async def record_published_rules(self, room_id: UUID, rules: RoomRules) -> domain.Room: ...

    async def lock_rooms(self, *, after: UUID | None, limit: int) -> list[domain.Room]: ...

    async def list_rooms(
        self, *, room_type: RoomType | None, active: bool | None, after: UUID | None, limit: int
    ) -> list[domain.Room]: ...

    async def active_room_ids(self) -> list[UUID]: ...

    async def put_schedule(self, schedule: domain.StoredSchedule) -> domain.StoredSchedule: ...

    async def get_schedule(self, room_id: UUID) -> domain.StoredSchedule | None: ...

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
    ) -> domain.Inserted: ...

    async def insert_custom(
        self,
        *,
        room_id: UUID,
        currency: str,
        slots: Sequence[tuple[datetime, datetime, Decimal, int]],
    ) -> list[domain.Slot]: ...

    async def spans_between(
        self, room_id: UUID, start: datetime, end: datetime
    ) -> list[tuple[datetime, datetime]]: ...

    async def get_slot(self, slot_id: UUID) -> domain.Slot: ...

    async def set_slot_status(
        self, slot_id: UUID, status: SlotStatus
    ) -> tuple[domain.Slot, bool]: ...

    async def list_slots(
        self,
        room_id: UUID,
        *,
        start: datetime,
        end: datetime,
        after: tuple[datetime, UUID] | None,
        limit: int,
    ) -> list[domain.Slot]: ...

    async def existing_slots(self, slot_ids: Iterable[UUID]) -> set[UUID]: ...

    async def apply_hold_changes(self, changes: Sequence[domain.HoldChange]) -> None: ...

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
    ) -> list[domain.Available]: ...


@dataclass(frozen=True, slots=True)
class Limits:
    """What the service settings decide for the use cases: bounds on what one request may ask
    for, and the defaults of the booking rules."""

    generation_max_days: int = domain.DEFAULT_MAX_DAYS
    search_max_days: int = 31
    custom_slots_max: int = 500
    custom_slot_max_minutes: int = domain.MAX_SLOT_MINUTES
    custom_slot_horizon_days: int = 2 * 366
    slots_per_event: int = 500
    rule_defaults: domain.RuleDefaults = field(default_factory=domain.RuleDefaults)


# --- commands: what the use cases take (the API builds them from its request models) -----


@dataclass(frozen=True, slots=True)
class NewSchedule:
    """A room's weekly schedule: working hours per open ISO weekday, in the room's time zone."""

    open_weekdays: Sequence[int]
    weekday_hours: Mapping[int, Sequence[tuple[time, time]]]
    slot_minutes: int
    buffer_minutes: int
    max_bookings: int
    excluded_dates: Sequence[date] = ()
    blackouts: Sequence[tuple[datetime, datetime]] = ()


@dataclass(frozen=True, slots=True)
class NewSlot:
    """An explicit slot; without a price it costs the room's hourly rate times its length."""

    starts_at: datetime
    ends_at: datetime
    price: Money | None = None
    max_bookings: int = 1


# --- rooms -----------------------------------------------------------------------------


async def create_room(
    store: Store, outbox: Outbox, new: domain.NewRoom, *, defaults: domain.RuleDefaults
) -> domain.Room:
    """Create the room and publish it, then its rules in force (its type's and the
    platform's defaults)."""
    room = await store.insert_room(uuid.uuid4(), new)
    await outbox.add(
        store.tx, RoomUpserted(room_id=room.id, room=room.snapshot(), room_version=room.version)
    )
    return await publish_rules(store, outbox, room, defaults)


async def update_room(
    store: Store,
    outbox: Outbox,
    room_id: UUID,
    patch: domain.RoomChanges,
    *,
    defaults: domain.RuleDefaults,
) -> domain.Room:
    """Change the fields given in ``patch``; an empty patch changes nothing. A room type given
    may change the rules in force, which are published then (``InvalidRules`` when the room's
    own rules contradict the new type's defaults: nothing changes)."""
    if not patch.given():
        return await store.get_room(room_id)
    room = await store.update_room(room_id, patch)
    if room is None:
        raise domain.RoomNotFound(f"room {room_id} does not exist")
    await outbox.add(
        store.tx, RoomUpserted(room_id=room.id, room=room.snapshot(), room_version=room.version)
    )
    if patch.room_type is not None:
        room = await publish_rules(store, outbox, room, defaults)
    return room


async def set_room_active(
    store: Store, outbox: Outbox, room_id: UUID, *, active: bool
) -> domain.Room:
    """Deactivate (no new bookings, existing ones stay) or reactivate; repeats change nothing."""
    room = await store.get_room(room_id, lock=True)
    if room.active == active:
        return room
    updated = await store.update_room(room_id, domain.RoomChanges(active=active))
    assert updated is not None  # locked above
    event = (
        RoomUpserted(room_id=room_id, room=updated.snapshot(), room_version=updated.version)
        if active
        else RoomDeactivated(
            room_id=room_id, deactivated_at=updated.updated_at, room_version=updated.version
        )
    )
    await outbox.add(store.tx, event)
    return updated


# --- booking rules ---------------------------------------------------------------------


async def publish_rules(
    store: Store, outbox: Outbox, room: domain.Room, defaults: domain.RuleDefaults
) -> domain.Room:
    """Publish the room's rules in force if they differ from those it last published: record
    them (a new room version) and announce them in ``RoomRulesSet`` with that version.

    The one place rules are published. ``room`` is read under its row lock or was just
    written in this transaction, so two transactions never both publish one change: the
    second waits, then finds the rules published and does nothing."""
    rules = domain.rules_in_force(defaults, room.room_type, room.own_rules)
    if rules == room.published_rules:
        return room
    published = await store.record_published_rules(room.id, rules)
    await outbox.add(
        store.tx, RoomRulesSet(room_id=room.id, rules=rules, room_version=published.version)
    )
    return published


@dataclass(frozen=True, slots=True)
class RoomRulesView:
    """A room's booking rules: those in force, and those it sets itself."""

    room_id: UUID
    rules: RoomRules
    own: domain.PartialRules
    room_version: int


async def set_room_rules(
    store: Store,
    outbox: Outbox,
    room_id: UUID,
    own: domain.PartialRules,
    *,
    defaults: domain.RuleDefaults,
) -> RoomRulesView:
    """Replace the rules the room sets itself (empty: it inherits every rule) and publish the
    rules in force if they changed. Rules that contradict the defaults once merged raise
    ``InvalidRules`` and change nothing; the same rules again change nothing."""
    room = await store.get_room(room_id, lock=True)
    domain.rules_in_force(defaults, room.room_type, own)
    if own != room.own_rules:
        room = await store.set_own_rules(room_id, own)
    room = await publish_rules(store, outbox, room, defaults)
    assert room.published_rules is not None  # published above, now or before
    return RoomRulesView(room.id, room.published_rules, room.own_rules, room.version)


async def get_room_rules(
    store: Store, room_id: UUID, *, defaults: domain.RuleDefaults
) -> RoomRulesView:
    """The rules in force as last published for the room (those the booking service
    applies); for a room whose rules were never published yet, those the defaults give."""
    room = await store.get_room(room_id)
    rules = room.published_rules
    if rules is None:
        rules = domain.rules_in_force(defaults, room.room_type, room.own_rules)
    return RoomRulesView(room.id, rules, room.own_rules, room.version)


@dataclass(frozen=True, slots=True)
class RulesPage:
    """What publishing the rules of one page of rooms did."""

    last_room_id: UUID | None
    """The last room of the page; None: there were no more rooms."""
    rooms: int
    published: list[UUID]
    invalid: dict[UUID, str]
    """Rooms whose own rules contradict the defaults: their rules in force stay as published."""


async def publish_rules_of_rooms(
    store: Store,
    outbox: Outbox,
    *,
    after: UUID | None,
    limit: int,
    defaults: domain.RuleDefaults,
) -> RulesPage:
    """Publish the rules in force of the next ``limit`` rooms by id that differ from those
    last published. The rooms are locked first, in id order: a second caller at the same time
    waits, then finds the rules published and publishes nothing."""
    rooms = await store.lock_rooms(after=after, limit=limit)
    published: list[UUID] = []
    invalid: dict[UUID, str] = {}
    for room in rooms:
        try:
            updated = await publish_rules(store, outbox, room, defaults)
        except domain.InvalidRules as exc:
            invalid[room.id] = str(exc)
            continue
        if updated.version != room.version:
            published.append(room.id)
    return RulesPage(rooms[-1].id if rooms else None, len(rooms), published, invalid)


# --- schedules -------------------------------------------------------------------------


async def put_schedule(
    store: Store, room_id: UUID, body: NewSchedule
) -> tuple[domain.StoredSchedule, str]:
    """Replace the room's schedule (checked against the domain rules first)."""
    room = await store.get_room(room_id)
    weekdays = sorted(set(body.open_weekdays))
    missing = [weekday for weekday in weekdays if not body.weekday_hours.get(weekday)]
    if missing:
        raise domain.InvalidSchedule(
            f"open weekday {missing[0]} has no working hours; give `hours` or `weekday_hours`"
        )
    schedule = domain.StoredSchedule(
        room_id=room_id,
        open_weekdays=tuple(weekdays),
        weekday_hours={weekday: list(body.weekday_hours[weekday]) for weekday in weekdays},
        slot_minutes=body.slot_minutes,
        buffer_minutes=body.buffer_minutes,
        max_bookings=body.max_bookings,
        excluded_dates=tuple(sorted(set(body.excluded_dates))),
        blackouts=tuple(body.blackouts),
        updated_at=utc_now(),
    )
    schedule.to_domain(room.time_zone)  # raises InvalidSchedule
    return await store.put_schedule(schedule), room.time_zone


async def get_schedule(store: Store, room_id: UUID) -> tuple[domain.StoredSchedule, str]:
    room = await store.get_room(room_id)
    schedule = await store.get_schedule(room_id)
    if schedule is None:
        raise domain.RoomUnavailable(f"room {room_id} has no schedule yet")
    return schedule, room.time_zone


# --- slots -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Generation:
    room_id: UUID
    date_from: date
    date_to: date
    created: int
    skipped: int
    first_starts_at: datetime | None
    last_starts_at: datetime | None


async def generate(
    store: Store,
    outbox: Outbox,
    room_id: UUID,
    *,
    date_from: date,
    date_to: date,
    price_override: Money | None = None,
    limits: Limits = Limits(),
) -> Generation:
    """Create the room's slots on the local dates given; slots it already has are skipped.

    Idempotent and set-based: the slots are computed in memory, those overlapping a slot the
    room has are dropped, and one statement inserts the rest and announces them in
    ``SlotsGenerated`` events of at most ``limits.slots_per_event`` slots each. The room's
    row is locked meanwhile, so concurrent generations of one room take turns.
    """
    room = await store.get_room(room_id, lock=True)
    if not room.active:
        raise domain.RoomUnavailable(f"room {room_id} is inactive; activate it to add slots")
    stored = await store.get_schedule(room_id)
    if stored is None:
        raise domain.RoomUnavailable(f"room {room_id} has no schedule; set one first")
    if price_override is not None:
        _check_currency(price_override, room.hourly_rate)
    specs = domain.expand(
        stored.to_domain(room.time_zone),
        date_from=date_from,
        date_to=date_to,
        hourly_rate=room.hourly_rate,
        price_override=price_override,
        max_days=limits.generation_max_days,
    )
    price = specs[0].price if specs else room.hourly_rate
    starts = [spec.starts_at for spec in specs]
    ends = [spec.ends_at for spec in specs]
    if specs:  # slots added by hand meanwhile win over the schedule's
        existing = await store.spans_between(room_id, starts[0], ends[-1])
        starts, ends = domain.without_overlaps(existing, starts, ends)
    inserted = await store.insert_generated(
        outbox,
        room_id=room_id,
        starts=starts,
        ends=ends,
        price=price,
        max_bookings=stored.max_bookings,
        slots_per_event=limits.slots_per_event,
    )
    return Generation(
        room_id=room_id,
        date_from=date_from,
        date_to=date_to,
        created=inserted.created,
        skipped=len(specs) - inserted.created,
        first_starts_at=inserted.first_starts_at,
        last_starts_at=inserted.last_starts_at,
    )


async def add_custom_slots(
    store: Store,
    outbox: Outbox,
    room_id: UUID,
    slots: Sequence[NewSlot],
    *,
    now: datetime,
    limits: Limits = Limits(),
) -> list[domain.Slot]:
    """Add explicit slots: all of them or, if one is invalid or overlaps, none."""
    if len(slots) > limits.custom_slots_max:
        raise domain.InvalidSlot(
            f"{len(slots)} slots in one request; at most {limits.custom_slots_max} are allowed"
        )
    room = await store.get_room(room_id, lock=True)
    if not room.active:
        raise domain.RoomUnavailable(f"room {room_id} is inactive; activate it to add slots")
    horizon = now + timedelta(days=limits.custom_slot_horizon_days)
    spans = [(slot.starts_at, slot.ends_at) for slot in slots]
    domain.validate_custom_slots([], spans, max_minutes=limits.custom_slot_max_minutes)
    rows = []
    for slot in slots:
        _check_custom_start(slot, now=now, horizon=horizon, limits=limits)
        minutes = (slot.ends_at - slot.starts_at) // timedelta(minutes=1)
        price = slot.price or domain.slot_price(room.hourly_rate, minutes)
        _check_currency(price, room.hourly_rate)
        rows.append((slot.starts_at, slot.ends_at, price.amount, slot.max_bookings))
    lowest = min(start for start, _ in spans)
    highest = max(end for _, end in spans)
    existing = await store.spans_between(room_id, lowest, highest)
    domain.validate_custom_slots(existing, spans, max_minutes=limits.custom_slot_max_minutes)
    created = await store.insert_custom(
        room_id=room_id, currency=room.hourly_rate.currency, slots=rows
    )
    await _announce(store, outbox, room_id, [s.snapshot() for s in created], limits.slots_per_event)
    return created


async def set_slot_status(
    store: Store, outbox: Outbox, slot_id: UUID, status: SlotStatus
) -> domain.Slot:
    """Block or unblock a slot; bookings it already has stay. Repeats change nothing."""
    slot, changed = await store.set_slot_status(slot_id, status)
    if changed:
        await outbox.add(store.tx, SlotChanged(room_id=slot.room_id, slot=slot.snapshot()))
    return slot


def _check_custom_start(slot: NewSlot, *, now: datetime, horizon: datetime, limits: Limits) -> None:
    start = slot.starts_at.isoformat()
    if any(moment.second or moment.microsecond for moment in (slot.starts_at, slot.ends_at)):
        raise domain.InvalidSlot(f"slot starting {start} must start and end on whole minutes")
    if slot.starts_at < now:
        raise domain.InvalidSlot(f"slot starting {start} is in the past")
    if slot.starts_at > horizon:
        raise domain.InvalidSlot(
            f"slot starting {start} is more than {limits.custom_slot_horizon_days} days ahead"
        )


def _check_currency(price: Money, rate: Money) -> None:
    if price.currency != rate.currency:
        raise domain.InvalidSlot(
            f"price in {price.currency} but the room is priced in {rate.currency}"
        )


async def _announce(
    store: Store,
    outbox: Outbox,
    room_id: UUID,
    snapshots: Sequence[SlotSnapshot],
    per_event: int,
) -> None:
    await outbox.add(store.tx, *domain.slots_generated(room_id, snapshots, per_event))


# --- availability ----------------------------------------------------------------------


def search_range(
    *, on: date | None, date_from: date | None, date_to: date | None, max_days: int
) -> tuple[date, date]:
    """The local dates a search covers: one ``date`` or a ``from``/``to`` range, bounded."""
    if on is not None:
        if date_from is not None or date_to is not None:
            raise domain.InvalidRange("give either `date` or `from`/`to`, not both")
        return on, on
    if date_from is None or date_to is None:
        raise domain.InvalidRange("give `date`, or both `from` and `to`")
    if date_to < date_from:
        raise domain.InvalidRange(f"date range {date_from}..{date_to} ends before it starts")
    days = (date_to - date_from).days + 1
    if days > max_days:
        raise domain.InvalidRange(
            f"date range {date_from}..{date_to} has {days} days, more than {max_days}"
        )
    return date_from, date_to
