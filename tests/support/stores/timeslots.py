"""The contract of the timeslots service's store: the same cases against the SQL store on
PostgreSQL (``services/timeslots/tests/integration/test_sql_store.py``) and its twin held in
the process (``services/timeslots/tests/unit/test_memory_store.py``).

A test module subclasses :class:`StoreContract` and gives the fixture ``stores``: a
:class:`~platform_runtime.transactions.Stores` on an empty database of the service.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest

from booking_contracts.catalogue import RoomRules, RoomType, SlotStatus
from booking_contracts.money import Money
from platform_runtime.outbox import Outbox
from platform_runtime.transactions import Stores
from timeslots import domain, models
from timeslots.domain import Hold, Move, NewRoom, PartialRules, Release, RoomChanges
from timeslots.handlers import Store

AnyStores = Stores[Any, Store]
OUTBOX = Outbox(models.outbox, source="/timeslots")
DAY = date(2031, 6, 3)  # a Tuesday
NOW = datetime(2031, 6, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
EUR = Money.of("20.00", "EUR")


def at(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    """``hour`` o'clock UTC on ``day`` (24: the next midnight)."""
    return datetime.combine(day, time(0), tzinfo=UTC) + timedelta(hours=hour, minutes=minute)


async def room(
    stores: AnyStores,
    name: str = "Room A",
    *,
    room_type: RoomType = RoomType.MEETING,
    zone: str = "UTC",
) -> uuid.UUID:
    async with stores.begin() as store:
        made = await store.insert_room(
            uuid.uuid4(),
            NewRoom(name=name, capacity=4, room_type=room_type, hourly_rate=EUR, time_zone=zone),
        )
    return made.id


async def slots(
    stores: AnyStores, room_id: uuid.UUID, *hours: int, places: int = 1, day: date = DAY
) -> list[uuid.UUID]:
    """One-hour slots of the room starting at ``hours`` on ``day``, by hand."""
    async with stores.begin() as store:
        made = await store.insert_custom(
            room_id=room_id,
            currency="EUR",
            slots=[
                (at(h, day=day), at(h, day=day) + HOUR, Decimal("20.00"), places) for h in hours
            ],
        )
    return [s.id for s in made]


async def generated(stores: AnyStores, room_id: uuid.UUID, *starts: datetime) -> domain.Inserted:
    """Generated one-hour slots of the room (two places each, two a ``SlotsGenerated``)."""
    async with stores.begin() as store:
        return await store.insert_generated(
            OUTBOX,
            room_id=room_id,
            starts=list(starts),
            ends=[s + HOUR for s in starts],
            price=EUR,
            max_bookings=2,
            slots_per_event=2,
        )


async def schedule(stores: AnyStores, stored: domain.StoredSchedule) -> domain.StoredSchedule:
    async with stores.begin() as store:
        return await store.put_schedule(stored)


async def counts(stores: AnyStores, *slot_ids: uuid.UUID) -> list[int]:
    async with stores.begin() as store:
        return [(await store.get_slot(s)).booked_count for s in slot_ids]


async def search(stores: AnyStores, **query: Any) -> list[tuple[Any, ...]]:
    values: dict[str, Any] = {
        "room_id": None,
        "room_type": None,
        "date_from": DAY,
        "date_to": DAY,
        "min_duration": None,
        "now": NOW,
        "after": None,
        "limit": 100,
    }
    async with stores.begin() as store:
        found = await store.search(**(values | query))
    return [(a.starts_at.hour, a.places_left, a.free_minutes) for a in found]


class StoreContract:
    """The cases (the test module gives the fixture ``stores``, on an empty database)."""

    # --- rooms -------------------------------------------------------------------------

    async def test_a_room_counts_a_version_for_every_change_of_its_row(
        self, stores: AnyStores
    ) -> None:
        room_id = await room(stores)
        rules = RoomRules()
        async with stores.begin() as store:
            made = await store.get_room(room_id)
            renamed = await store.update_room(room_id, RoomChanges(name="Room B", capacity=6))
            own = await store.set_own_rules(room_id, PartialRules({"max_reschedules": 2}))
            published = await store.record_published_rules(room_id, rules)
            missing = await store.update_room(uuid.uuid4(), RoomChanges(name="x"))
            with pytest.raises(domain.RoomNotFound):
                await store.get_room(missing.id if missing else uuid.uuid4())
        assert (made.version, made.active, made.published_rules) == (1, True, None)
        assert renamed is not None
        assert (renamed.name, renamed.capacity, renamed.version) == ("Room B", 6, 2)
        assert (own.own_rules, own.version) == (PartialRules({"max_reschedules": 2}), 3)
        assert (published.published_rules, published.version) == (rules, 4)
        assert missing is None

    async def test_rooms_are_listed_and_locked_by_id_and_the_active_ones_by_name(
        self, stores: AnyStores
    ) -> None:
        b = await room(stores, "B room")
        a = await room(stores, "A room", room_type=RoomType.OFFICE)
        c = await room(stores, "C room")
        async with stores.begin() as store:
            await store.update_room(c, RoomChanges(active=False))
            every = await store.list_rooms(room_type=None, active=None, after=None, limit=10)
            meeting = await store.list_rooms(
                room_type=RoomType.MEETING, active=True, after=None, limit=10
            )
            first = await store.lock_rooms(after=None, limit=2)
            rest = await store.lock_rooms(after=first[-1].id, limit=2)
            active = await store.active_room_ids()
        assert [r.id for r in every] == sorted([a, b, c])
        assert [r.id for r in meeting] == [b]
        assert [r.id for r in first + rest] == sorted([a, b, c])
        assert active == [a, b]

    async def test_a_schedule_is_replaced_whole_and_belongs_to_a_room(
        self, stores: AnyStores
    ) -> None:
        room_id = await room(stores)
        first = domain.StoredSchedule(
            room_id=room_id,
            open_weekdays=(1, 2),
            weekday_hours={2: [(time(9), time(12))], 1: [(time(8), time(10))]},
            slot_minutes=30,
            buffer_minutes=0,
            max_bookings=1,
            excluded_dates=(date(2031, 7, 2), date(2031, 7, 1)),
            blackouts=((at(9), at(10)),),
            updated_at=NOW,
        )
        async with stores.begin() as store:
            assert await store.get_schedule(room_id) is None
        await schedule(stores, first)
        second = await schedule(
            stores, domain.StoredSchedule(**{**_fields(first), "slot_minutes": 60, "blackouts": ()})
        )
        async with stores.begin() as store:
            stored = await store.get_schedule(room_id)
        assert stored == second
        assert stored is not None
        assert (stored.slot_minutes, stored.blackouts, stored.open_weekdays) == (60, (), (1, 2))
        assert stored.weekday_hours == {1: [(time(8), time(10))], 2: [(time(9), time(12))]}
        assert stored.excluded_dates == (date(2031, 7, 1), date(2031, 7, 2))
        nobodys = domain.StoredSchedule(**{**_fields(first), "room_id": uuid.uuid4()})
        with pytest.raises(Exception, match="fk_schedules_room_id_rooms"):
            await schedule(stores, nobodys)

    # --- slots ---------------------------------------------------------------------------

    async def test_generation_skips_starts_taken_and_announces_the_new_slots_in_chunks(
        self, stores: AnyStores
    ) -> None:
        room_id = await room(stores)
        await slots(stores, room_id, 10)
        starts = [at(h) for h in range(8, 14)]
        done = await generated(stores, room_id, *starts)
        again = await generated(stores, room_id, *starts)
        async with stores.begin() as store:
            listed = await store.list_slots(room_id, start=at(0), end=at(23), after=None, limit=99)
        assert done == domain.Inserted(
            created=5, first_starts_at=at(8), last_starts_at=at(13), events=3
        )
        assert again == domain.Inserted(
            created=0, first_starts_at=None, last_starts_at=None, events=0
        )
        assert [(s.starts_at.hour, s.max_bookings) for s in listed] == [
            (8, 2),
            (9, 2),
            (10, 1),
            (11, 2),
            (12, 2),
            (13, 2),
        ]

    async def test_slots_of_a_room_never_overlap_and_a_refused_batch_adds_nothing(
        self, stores: AnyStores
    ) -> None:
        room_id = await room(stores)
        await slots(stores, room_id, 10)
        with pytest.raises(domain.SlotOverlap, match="nothing was added"):
            await slots(stores, room_id, 8, 9, 10)
        with pytest.raises(Exception, match=r"overlaps?"):
            await generated(stores, room_id, at(9, 30))
        with pytest.raises(Exception, match="does not exist"):
            await slots(stores, uuid.uuid4(), 10)
        async with stores.begin() as store:
            spans = await store.spans_between(room_id, at(0), at(23))
        assert spans == [(at(10), at(11))]

    async def test_a_custom_slot_keeps_its_price_and_places(self, stores: AnyStores) -> None:
        room_id = await room(stores)
        async with stores.begin() as store:
            made = await store.insert_custom(
                room_id=room_id,
                currency="EUR",
                slots=[(at(15), at(16), Decimal("12.50"), 3), (at(9), at(10), Decimal(0), 1)],
            )
            got = await store.get_slot(made[1].id)
            with pytest.raises(domain.SlotNotFound):
                await store.get_slot(room_id)
        assert [(s.starts_at, s.price, s.max_bookings) for s in made] == [
            (at(9), Money.of("0.00", "EUR"), 1),
            (at(15), Money.of("12.50", "EUR"), 3),
        ]
        assert (got.status, got.booked_count, got.revision) == (SlotStatus.OPEN, 0, 1)

    async def test_a_status_change_counts_a_revision_and_the_same_status_changes_nothing(
        self, stores: AnyStores
    ) -> None:
        [slot_id] = await slots(stores, await room(stores), 10)
        async with stores.begin() as store:
            blocked, changed = await store.set_slot_status(slot_id, SlotStatus.BLOCKED)
            again, unchanged = await store.set_slot_status(slot_id, SlotStatus.BLOCKED)
        assert (blocked.status, blocked.revision, changed) == (SlotStatus.BLOCKED, 2, True)
        assert (again.revision, unchanged) == (2, False)

    async def test_slots_are_listed_by_start_a_page_at_a_time(self, stores: AnyStores) -> None:
        room_id = await room(stores)
        await slots(stores, room_id, 12, 9, 10, 11)
        async with stores.begin() as store:
            first = await store.list_slots(room_id, start=at(9), end=at(12), after=None, limit=2)
            last = first[-1]
            rest = await store.list_slots(
                room_id, start=at(9), end=at(12), after=(last.starts_at, last.id), limit=2
            )
        assert [s.starts_at.hour for s in first + rest] == [9, 10, 11]

    # --- holds ---------------------------------------------------------------------------

    async def test_holds_count_each_holder_once_whatever_the_order_and_repeats(
        self, stores: AnyStores
    ) -> None:
        room_id = await room(stores)
        one, two = await slots(stores, room_id, 9, 10, places=3)
        a, b, c, d = (uuid.uuid4() for _ in range(4))
        async with stores.begin() as store:
            known = await store.existing_slots([one, two, uuid.uuid4()])
            await store.apply_hold_changes(
                [
                    Hold(a, one),
                    Hold(a, one),  # a repeat
                    Release(b, one),  # seen before its hold
                    Hold(b, one),
                    Hold(c, one),
                    Move(c, one, two),
                    Move(d, one, two),  # a move of a booking not seen yet holds the new slot
                ]
            )
        assert known == {one, two}
        assert await counts(stores, one, two) == [1, 2]
        async with stores.begin() as store:
            await store.apply_hold_changes([Release(c, one), Move(a, two, one), Release(a, one)])
        assert await counts(stores, one, two) == [0, 1]

    # --- availability --------------------------------------------------------------------

    async def test_the_search_finds_open_future_slots_with_places_on_local_dates(
        self, stores: AnyStores
    ) -> None:
        room_id = await room(stores, zone="Asia/Tokyo")  # 09:00 local is 00:00 UTC
        full, blocked, *_ = await slots(stores, room_id, 1, 2, 3, 14, 15, places=1)
        async with stores.begin() as store:
            await store.apply_hold_changes([Hold(uuid.uuid4(), full)])
            await store.set_slot_status(blocked, SlotStatus.BLOCKED)
        assert await search(stores, room_id=room_id) == [(3, 1, None), (14, 1, None)]
        # 15:00 UTC is the next local day in Tokyo
        assert await search(stores, room_id=room_id, now=at(10)) == [(14, 1, None)]
        assert await search(stores, room_type=RoomType.MEETING) == [(3, 1, None), (14, 1, None)]
        assert await search(stores, room_type=RoomType.OFFICE) == []

    async def test_the_search_for_a_duration_finds_starts_of_long_enough_free_runs(
        self, stores: AnyStores
    ) -> None:
        room_id = await room(stores)
        [*_, taken] = await slots(stores, room_id, 9, 10, 11, 13, 14, 15)
        await slots(stores, room_id, 22, 23)
        await slots(stores, room_id, 0, day=DAY + timedelta(days=1))  # a run goes on past midnight
        async with stores.begin() as store:
            await store.apply_hold_changes([Hold(uuid.uuid4(), taken)])
        found = await search(stores, room_id=room_id, min_duration=2 * HOUR)
        assert found == [(9, 1, 180), (10, 1, 120), (13, 1, 120), (22, 1, 180), (23, 1, 120)]

    async def test_the_search_pages_by_start_and_id_and_hides_inactive_rooms(
        self, stores: AnyStores
    ) -> None:
        first, second = await room(stores, "First"), await room(stores, "Second")
        await slots(stores, first, 9, 10)
        await slots(stores, second, 9, 11)
        async with stores.begin() as store:

            async def meeting_rooms(after: tuple[datetime, uuid.UUID] | None) -> list[Any]:
                return await store.search(
                    room_id=None,
                    room_type=RoomType.MEETING,
                    date_from=DAY,
                    date_to=DAY,
                    min_duration=None,
                    now=NOW,
                    after=after,
                    limit=3,
                )

            page = await meeting_rooms(None)
            rest = await meeting_rooms((page[-1].starts_at, page[-1].slot_id))
            await store.update_room(second, RoomChanges(active=False))
        assert [a.starts_at.hour for a in page + rest] == [9, 9, 10, 11]
        assert len({a.slot_id for a in page + rest}) == 4
        assert {(a.room_name, a.time_zone, a.price) for a in page + rest} == {
            ("First", "UTC", Money.of("20.00", "EUR")),
            ("Second", "UTC", Money.of("20.00", "EUR")),
        }
        assert await search(stores, room_type=RoomType.MEETING) == [(9, 1, None), (10, 1, None)]


def _fields(schedule: domain.StoredSchedule) -> dict[str, Any]:
    return {name: getattr(schedule, name) for name in schedule.__dataclass_fields__}
