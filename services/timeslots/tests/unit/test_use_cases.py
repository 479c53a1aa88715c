"""Every use case of the timeslots service, through the in-memory broker and its store twin
held in the process: rooms and their versions, booking rules, schedules and generation
(time zones and DST included), slots by hand, blocking, the availability search, and the
hold counts the booking events keep. The service suites run the same behaviour on
PostgreSQL and Kafka."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio

from booking_contracts import topics
from booking_contracts.catalogue import (
    Actor,
    BookingCancelled,
    BookingCreated,
    RoomType,
    SlotStatus,
)
from booking_contracts.money import Money
from platform_runtime.memorydb import MemoryDatabase, MemoryTransaction
from platform_runtime.outbox import Outbox
from platform_runtime.transactions import Stores
from tests.support.memory_service import MemoryService
from timeslots import consumers, domain, handlers, models, operations
from timeslots.memory import MemoryStore, TimeslotsState

Service = MemoryService[TimeslotsState]
OUTBOX = Outbox(models.outbox, source="/timeslots")
DEFAULTS = domain.RuleDefaults()
EUR = Money.of("30.00", "EUR")
MONDAY = date(2031, 3, 24)  # Berlin moves its clocks forward on Sunday 30 March 2031
HOUR = timedelta(hours=1)


@pytest_asyncio.fixture
async def service() -> AsyncIterator[Service]:
    running = MemoryService(MemoryDatabase(TimeslotsState()))
    consumers.register(running.consumer(consumers.CONSUMER_NAME), MemoryStore)
    async with running.running(topics.TIMESLOTS_EVENTS):
        yield running


def stores(service: Service) -> Stores[MemoryTransaction[TimeslotsState], MemoryStore]:
    return Stores(service.db, MemoryStore)


async def new_room(service: Service, *, zone: str = "Europe/Berlin", **values: Any) -> uuid.UUID:
    fields: dict[str, Any] = {
        "name": "Room 1",
        "capacity": 2,
        "room_type": RoomType.MEETING,
        "hourly_rate": EUR,
        "time_zone": zone,
    }
    async with stores(service).begin() as store:
        room = await handlers.create_room(
            store, OUTBOX, domain.NewRoom(**(fields | values)), defaults=DEFAULTS
        )
    return room.id


WEEK = handlers.NewSchedule(
    open_weekdays=[1, 2, 3, 4, 5],
    weekday_hours={day: [(time(9), time(12))] for day in range(1, 6)},
    slot_minutes=60,
    buffer_minutes=0,
    max_bookings=2,
)


async def scheduled_room(service: Service, **values: Any) -> uuid.UUID:
    room_id = await new_room(service, **values)
    async with stores(service).begin() as store:
        await handlers.put_schedule(store, room_id, WEEK)
    return room_id


async def events_about(service: Service, room_id: uuid.UUID, *, at_least: int) -> list[str]:
    """The types of the events published about the room, in order."""
    envelopes = await service.events(topics.TIMESLOTS_EVENTS, at_least=at_least)
    return [e["type"] for e in envelopes if e["subject"] == str(room_id)]


async def free(service: Service, room_id: uuid.UUID, day: date) -> list[tuple[str, int]]:
    """The room's free slots on the local date: local start and places left."""
    async with stores(service).begin() as store:
        found = await store.search(
            room_id=room_id,
            room_type=None,
            date_from=day,
            date_to=day,
            min_duration=None,
            now=datetime(2031, 1, 1, tzinfo=UTC),
            after=None,
            limit=50,
        )
    return [(local(a.starts_at, a.time_zone), a.places_left) for a in found]


def local(moment: datetime, zone: str) -> str:
    return moment.astimezone(ZoneInfo(zone)).strftime("%H:%M")


ALL_TIME = {"start": datetime(2031, 1, 1, tzinfo=UTC), "end": datetime(2032, 1, 1, tzinfo=UTC)}


async def first_slot(store: MemoryStore, room_id: uuid.UUID) -> domain.Slot:
    [first] = await store.list_slots(room_id, **ALL_TIME, after=None, limit=1)
    return first


# --- rooms and their rules ---------------------------------------------------------------


async def test_a_room_is_published_with_its_rules_and_each_change_with_a_new_version(
    service: Service,
) -> None:
    room_id = await new_room(service)
    async with stores(service).begin() as store:
        same = await handlers.update_room(
            store, OUTBOX, room_id, domain.RoomChanges(), defaults=DEFAULTS
        )
        renamed = await handlers.update_room(
            store, OUTBOX, room_id, domain.RoomChanges(name="Room 2"), defaults=DEFAULTS
        )
        off = await handlers.set_room_active(store, OUTBOX, room_id, active=False)
        again = await handlers.set_room_active(store, OUTBOX, room_id, active=False)
        with pytest.raises(domain.RoomNotFound):
            await handlers.update_room(
                store, OUTBOX, uuid.uuid4(), domain.RoomChanges(name="x"), defaults=DEFAULTS
            )

    assert (same.version, renamed.version, off.version, again.version) == (2, 3, 4, 4)
    assert await events_about(service, room_id, at_least=4) == [
        "RoomUpserted.v1",
        "RoomRulesSet.v1",
        "RoomUpserted.v1",
        "RoomDeactivated.v1",
    ]


async def test_a_rooms_own_rules_are_checked_published_once_and_read_back(
    service: Service,
) -> None:
    room_id = await new_room(service)
    own = domain.PartialRules.checked({"max_reschedules": 1}, whose="test")
    async with stores(service).begin() as store:
        view = await handlers.set_room_rules(store, OUTBOX, room_id, own, defaults=DEFAULTS)
        same = await handlers.set_room_rules(store, OUTBOX, room_id, own, defaults=DEFAULTS)
        read = await handlers.get_room_rules(store, room_id, defaults=DEFAULTS)
    assert view.rules.max_reschedules == 1
    assert same.room_version == view.room_version
    assert read == view
    assert (await events_about(service, room_id, at_least=3)).count("RoomRulesSet.v1") == 2


async def test_a_sync_publishes_the_rules_a_new_default_changes_and_only_those(
    service: Service,
) -> None:
    first, second = await new_room(service), await new_room(service, room_type=RoomType.OFFICE)
    stricter = domain.RuleDefaults(
        by_room_type={RoomType.OFFICE: domain.PartialRules({"max_reschedules": 0})}
    )
    done = await operations.sync_rules(stores(service), OUTBOX, stricter, page=1)
    assert (done.rooms, done.published, done.invalid) == (2, (second,), {})
    assert (await events_about(service, first, at_least=5)).count("RoomRulesSet.v1") == 1


# --- schedules, generation, slots ----------------------------------------------------------


async def test_generation_cuts_local_working_hours_across_the_clock_change_and_is_idempotent(
    service: Service,
) -> None:
    room_id = await scheduled_room(service)
    async with stores(service).begin() as store:
        done = await handlers.generate(
            store, OUTBOX, room_id, date_from=MONDAY, date_to=MONDAY + timedelta(days=7)
        )
        again = await handlers.generate(
            store, OUTBOX, room_id, date_from=MONDAY, date_to=MONDAY + timedelta(days=7)
        )
        schedule, zone = await handlers.get_schedule(store, room_id)

    assert (done.created, again.created, zone) == (18, 0, "Europe/Berlin")  # 6 weekdays
    assert schedule.slot_minutes == 60
    before = await free(service, room_id, MONDAY)
    after = await free(service, room_id, MONDAY + timedelta(days=7))
    assert before == after == [("09:00", 2), ("10:00", 2), ("11:00", 2)]
    async with stores(service).begin() as store:
        monday = await first_slot(store, room_id)
        [later] = await store.list_slots(
            room_id,
            start=datetime(2031, 3, 31, tzinfo=UTC),
            end=ALL_TIME["end"],
            after=None,
            limit=1,
        )
    assert monday.starts_at == datetime(2031, 3, 24, 8, tzinfo=UTC)  # 09:00 CET
    assert later.starts_at == datetime(2031, 3, 31, 7, tzinfo=UTC)  # 09:00 CEST
    types = await events_about(service, room_id, at_least=3)
    assert types.count("SlotsGenerated.v1") == 1


async def test_a_room_without_a_schedule_or_inactive_gets_no_slots_and_the_others_go_on(
    service: Service,
) -> None:
    ready, bare = await scheduled_room(service, name="A"), await new_room(service, name="B")
    off = await scheduled_room(service, name="C")
    async with stores(service).begin() as store:
        await handlers.set_room_active(store, OUTBOX, off, active=False)

    class Quiet:
        def start(self, total: int) -> None: ...

        def advance(self, result: operations.RoomResult) -> None: ...

        def close(self) -> None: ...

    report = await operations.generate_slots(
        stores(service), OUTBOX, None, date_from=MONDAY, date_to=MONDAY, progress=Quiet()
    )
    assert {r.room_id: (r.created, r.error is None) for r in report.results} == {
        ready: (3, True),
        bare: (0, False),
    }
    assert report.failed[0].error == f"room {bare} has no schedule; set one first"


async def test_slots_by_hand_are_priced_by_the_hour_and_refused_whole_on_an_overlap(
    service: Service,
) -> None:
    room_id = await scheduled_room(service)
    start = datetime(2031, 3, 25, 14, tzinfo=UTC)
    async with stores(service).begin() as store:
        made = await handlers.add_custom_slots(
            store,
            OUTBOX,
            room_id,
            [handlers.NewSlot(start, start + 90 * timedelta(minutes=1))],
            now=datetime(2031, 3, 1, tzinfo=UTC),
        )
        with pytest.raises(domain.SlotOverlap):
            await handlers.add_custom_slots(
                store,
                OUTBOX,
                room_id,
                [handlers.NewSlot(start + HOUR, start + 2 * HOUR)],
                now=datetime(2031, 3, 1, tzinfo=UTC),
            )
    assert [(s.price, s.max_bookings) for s in made] == [(Money.of("45.00", "EUR"), 1)]


async def test_a_blocked_slot_is_announced_and_leaves_the_search(service: Service) -> None:
    room_id = await scheduled_room(service)
    async with stores(service).begin() as store:
        await handlers.generate(store, OUTBOX, room_id, date_from=MONDAY, date_to=MONDAY)
        first = await first_slot(store, room_id)
        blocked = await handlers.set_slot_status(store, OUTBOX, first.id, SlotStatus.BLOCKED)
        unchanged = await handlers.set_slot_status(store, OUTBOX, first.id, SlotStatus.BLOCKED)
    assert (blocked.revision, unchanged.revision) == (2, 2)
    assert await free(service, room_id, MONDAY) == [("10:00", 2), ("11:00", 2)]
    assert (await events_about(service, room_id, at_least=4)).count("SlotChanged.v1") == 1


# --- the counts booking events keep ---------------------------------------------------------


async def test_bookings_take_places_and_give_them_back_whatever_the_order(
    service: Service,
) -> None:
    room_id = await scheduled_room(service)
    async with stores(service).begin() as store:
        await handlers.generate(store, OUTBOX, room_id, date_from=MONDAY, date_to=MONDAY)
        first = await first_slot(store, room_id)
    booking = uuid.uuid4()
    created = BookingCreated(
        booking_id=booking,
        user_id="user-1",
        room_id=room_id,
        slot_id=first.id,
        starts_at=first.starts_at,
        ends_at=first.ends_at,
        price=EUR,
        hold_expires_at=first.starts_at - HOUR,
    )
    other = created.model_copy(update={"booking_id": uuid.uuid4()})
    cancelled = BookingCancelled(
        booking_id=booking,
        user_id="user-1",
        room_id=room_id,
        slot_id=first.id,
        cancelled_by=Actor.USER,
    )
    now = datetime(2031, 3, 1, tzinfo=UTC)
    await service.applied(await service.publish(created, at=now))
    await service.applied(await service.publish(created, at=now))  # a repeat
    await service.applied(await service.publish(other, at=now))
    assert await free(service, room_id, MONDAY) == [("10:00", 2), ("11:00", 2)]

    await service.applied(await service.publish(cancelled, at=now))
    assert await free(service, room_id, MONDAY) == [("09:00", 1), ("10:00", 2), ("11:00", 2)]

    unknown = created.model_copy(update={"booking_id": uuid.uuid4(), "slot_id": uuid.uuid4()})
    await service.publish(unknown, at=now)
    [dead] = await service.dead_letters(topics.BOOKING_EVENTS)
    assert "is not a slot of this service" in (dead.header("dlq_reason") or "")
