"""A room's booking rules over HTTP and on Kafka, against real PostgreSQL and Kafka: the rules
in force (the room's own over its type's defaults over the platform's) are published in
``RoomRulesSet`` whenever they change, once; every user may read them, admins set them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from booking_contracts.catalogue import RoomRules, RoomType
from booking_contracts.money import Money
from platform_runtime.db import asyncpg_dsn, make_engine, make_session_factory
from platform_runtime.outbox import Outbox
from platform_runtime.transactions import SqlTransactions, Stores
from tests.support.brokers import Broker
from tests.support.fixtures import CreateDatabase
from timeslots import domain, handlers, models, operations
from timeslots.settings import TimeslotsSettings
from timeslots.store import SqlStore

from .conftest import ADMIN, USER, Service, migrated, serving, settings_for

BROKERS = ("memory", "kafka")
"""The in-memory broker and the real one: this module is about delivery too (rules published on
change, once, as events)."""

PLATFORM: dict[str, Any] = {"cancel_notice_minutes": 1440, "offer_minutes": 30}
BY_TYPE: dict[str, dict[str, Any]] = {
    "meeting": {"book_notice_minutes": 120, "quotas": [{"most": 2, "per": "week"}]},
    "treatment": {"horizon_minutes": 20_160},
}


def in_force(*layers: dict[str, Any]) -> dict[str, Any]:
    """The ``RoomRules`` JSON of ``layers`` merged, the later over the earlier."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged |= layer
    return RoomRules.model_validate(merged).model_dump(mode="json")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(create_database: CreateDatabase, broker: Broker) -> AsyncIterator[Service]:
    url = await migrated(create_database)
    settings = settings_for(
        url, broker.bootstrap, default_rules=PLATFORM, rules_by_room_type=BY_TYPE
    )
    async with serving(settings, broker) as running_service:
        yield running_service


async def put_rules(service: Service, room_id: str, own: dict[str, Any]) -> dict[str, Any]:
    response = await service.http.put(f"/rooms/{room_id}/rules", json=own, headers=ADMIN)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def versions(events: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(e["type"], e["data"]["room_version"]) for e in events]


# --- publishing ------------------------------------------------------------------------


async def test_a_new_room_publishes_its_rules_in_force_after_the_room(service: Service) -> None:
    room = await service.room(room_type="meeting")

    events = await service.events(room["id"], at_least=2)
    read = await service.http.get(f"/rooms/{room['id']}/rules", headers=USER)

    assert versions(events) == [("RoomUpserted.v1", 1), ("RoomRulesSet.v1", 2)]
    assert events[1]["data"]["rules"] == in_force(PLATFORM, BY_TYPE["meeting"])
    assert read.status_code == 200
    assert read.json() == {
        "room_id": room["id"],
        "rules": in_force(PLATFORM, BY_TYPE["meeting"]),
        "own": {},
        "room_version": 2,
    }


async def test_a_rooms_own_rules_are_published_over_the_defaults_once(service: Service) -> None:
    room = await service.room(room_type="meeting")
    own = {
        "book_notice_minutes": 30,
        "horizon_minutes": 10_080,
        "refund_tiers": [{"notice_minutes": 1440, "percent": "100"}],
    }

    first = await put_rules(service, room["id"], own)
    again = await put_rules(service, room["id"], own)
    events = await service.events(room["id"], at_least=3, settle_s=0.5)

    expected = in_force(PLATFORM, BY_TYPE["meeting"], own)
    assert first == {"room_id": room["id"], "rules": expected, "own": own, "room_version": 4}
    assert again == first
    assert versions(events) == [
        ("RoomUpserted.v1", 1),
        ("RoomRulesSet.v1", 2),
        ("RoomRulesSet.v1", 4),  # 3: the room's own rules recorded
    ]
    assert events[2]["data"]["rules"] == expected


async def test_clearing_a_rooms_own_rules_brings_back_the_defaults(service: Service) -> None:
    room = await service.room(room_type="treatment")
    await put_rules(service, room["id"], {"horizon_minutes": None, "max_reschedules": 0})

    cleared = await put_rules(service, room["id"], {})
    events = await service.events(room["id"], at_least=4)

    defaults = in_force(PLATFORM, BY_TYPE["treatment"])
    assert cleared["own"] == {}
    assert cleared["rules"] == defaults
    assert [e["data"]["rules"]["horizon_minutes"] for e in events[1:]] == [20_160, None, 20_160]
    assert events[-1]["data"]["rules"] == defaults


async def test_own_rules_that_change_nothing_in_force_publish_nothing(service: Service) -> None:
    room = await service.room(room_type="meeting")

    same = await put_rules(service, room["id"], {"book_notice_minutes": 120})
    events = await service.events(room["id"], at_least=2, settle_s=0.5)

    assert same["own"] == {"book_notice_minutes": 120}
    assert same["rules"] == in_force(PLATFORM, BY_TYPE["meeting"])
    assert [e["type"] for e in events] == ["RoomUpserted.v1", "RoomRulesSet.v1"]


async def test_a_new_room_type_publishes_the_rules_of_that_type(service: Service) -> None:
    room = await service.room(room_type="meeting")

    patched = await service.http.patch(
        f"/rooms/{room['id']}", json={"room_type": "treatment"}, headers=ADMIN
    )
    renamed = await service.http.patch(f"/rooms/{room['id']}", json={"name": "N"}, headers=ADMIN)
    events = await service.events(room["id"], at_least=5, settle_s=0.5)

    assert patched.status_code == renamed.status_code == 200
    assert versions(events) == [
        ("RoomUpserted.v1", 1),
        ("RoomRulesSet.v1", 2),
        ("RoomUpserted.v1", 3),
        ("RoomRulesSet.v1", 4),
        ("RoomUpserted.v1", 5),
    ]
    assert events[3]["data"]["rules"] == in_force(PLATFORM, BY_TYPE["treatment"])


async def test_a_room_type_whose_defaults_contradict_the_rooms_own_rules_is_refused(
    service: Service,
) -> None:
    room = await service.room(room_type="office")
    await put_rules(service, room["id"], {"book_notice_minutes": 30_000})

    refused = await service.http.patch(
        f"/rooms/{room['id']}", json={"room_type": "treatment"}, headers=ADMIN
    )
    read = await service.http.get(f"/rooms/{room['id']}", headers=USER)
    events = await service.events(room["id"], at_least=3, settle_s=0.5)

    assert refused.status_code == 422
    assert refused.json()["type"] == "urn:problem:invalid_rules"
    assert "horizon_minutes must be longer than book_notice_minutes" in refused.json()["detail"]
    assert "horizon_minutes=20160 from the defaults of treatment rooms" in refused.text
    assert read.json()["room_type"] == "office"
    assert [e["type"] for e in events] == ["RoomUpserted.v1", "RoomRulesSet.v1", "RoomRulesSet.v1"]


async def test_a_room_whose_rules_were_never_published_reads_those_of_the_defaults(
    service: Service,
) -> None:
    room = uuid4()
    connection = await asyncpg.connect(asyncpg_dsn(service.database_url))
    try:  # as a room made before rules existed, until the service's next start publishes it
        await connection.execute(
            "INSERT INTO rooms (id, name, capacity, room_type, hourly_rate, currency, time_zone) "
            "VALUES ($1, 'Old', 1, 'treatment', 10, 'EUR', 'UTC')",
            room,
        )
    finally:
        await connection.close()

    read = await service.http.get(f"/rooms/{room}/rules", headers=USER)

    assert read.json() == {
        "room_id": str(room),
        "rules": in_force(PLATFORM, BY_TYPE["treatment"]),
        "own": {},
        "room_version": 1,
    }


# --- who and what ----------------------------------------------------------------------


async def test_every_user_reads_the_rules_and_only_admins_set_them(service: Service) -> None:
    room = await service.room()
    missing = "00000000-0000-4000-8000-000000000003"

    as_user = await service.http.put(
        f"/rooms/{room['id']}/rules", json={"book_notice_minutes": 0}, headers=USER
    )
    anonymous = await service.http.get(f"/rooms/{room['id']}/rules")
    read = await service.http.get(f"/rooms/{room['id']}/rules", headers=USER)
    unknown = [
        await service.http.get(f"/rooms/{missing}/rules", headers=USER),
        await service.http.put(f"/rooms/{missing}/rules", json={}, headers=ADMIN),
    ]

    assert as_user.status_code == 403
    assert as_user.headers["content-type"].startswith("application/problem+json")
    assert anonymous.status_code == 401
    assert read.status_code == 200
    assert read.json()["own"] == {}
    for response in unknown:
        assert response.status_code == 404
        assert response.json()["type"] == "urn:problem:room_not_found"


@pytest.mark.parametrize(
    ("own", "problem", "reason"),
    [
        (
            {"horizon_minutes": 60},
            "urn:problem:invalid_rules",
            "horizon_minutes must be longer than book_notice_minutes (book_notice_minutes=120 "
            "from the defaults of meeting rooms; horizon_minutes=60 from the room's own rules)",
        ),
        (
            {"quotas": [{"most": 1, "per": "day"}, {"most": 3, "per": "day"}]},
            "urn:problem:invalid_rules",
            "at most one quota per window and scope",
        ),
        ({"book_notice_minutes": "30"}, "about:blank", "book_notice_minutes"),
        ({"offer_minutes": None}, "about:blank", "offer_minutes"),
        ({"notice_minutes": 5}, "about:blank", "notice_minutes"),
        (
            {"refund_tiers": [{"notice_minutes": 0, "percent": "120"}]},
            "about:blank",
            "percent",
        ),
    ],
)
async def test_invalid_rules_are_refused_with_the_reason_and_change_nothing(
    service: Service, own: dict[str, Any], problem: str, reason: str
) -> None:
    room = await service.room(room_type="meeting")

    refused = await service.http.put(f"/rooms/{room['id']}/rules", json=own, headers=ADMIN)
    read = await service.http.get(f"/rooms/{room['id']}/rules", headers=USER)

    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["type"] == problem
    assert reason in refused.text or reason in refused.json()["detail"]
    assert read.json()["own"] == {}
    assert read.json()["room_version"] == 2


# --- the start of the service: the rules a deploy's defaults change ----------------------

BEFORE: dict[str, dict[str, Any]] = {"treatment": {"book_notice_minutes": 60}}
AFTER: dict[str, dict[str, Any]] = {
    "treatment": {"book_notice_minutes": 90},
    "office": {"horizon_minutes": 40_000},
}


async def add_room(
    sessions: async_sessionmaker[AsyncSession],
    room_type: RoomType,
    own: dict[str, Any] | None = None,
) -> UUID:
    """A room made as ``POST /rooms`` (and ``PUT .../rules``) would under ``BEFORE``."""
    defaults = TimeslotsSettings(rules_by_room_type=BEFORE).rule_defaults()
    outbox = Outbox(models.outbox, source="/timeslots")
    async with sessions() as session, session.begin():
        store = SqlStore(session)
        room = await handlers.create_room(
            store,
            outbox,
            domain.NewRoom(
                name=f"{room_type} room",
                capacity=1,
                room_type=room_type,
                hourly_rate=Money.of("10.00", "EUR"),
                time_zone="UTC",
            ),
            defaults=defaults,
        )
        if own:
            own_rules = domain.PartialRules.checked(own, whose="test")
            await handlers.set_room_rules(store, outbox, room.id, own_rules, defaults=defaults)
    return room.id


def stores_on(engine: AsyncEngine) -> Stores[AsyncSession, SqlStore]:
    """The service's store on a database connection of its own (as another replica)."""
    return Stores(SqlTransactions(make_session_factory(engine), models.inbox), SqlStore)


async def rules_events(database_url: str) -> dict[UUID, int]:
    """How many ``RoomRulesSet`` each room wrote to the outbox."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await connection.fetch(
            "SELECT key, count(*) AS n FROM outbox WHERE event_type = 'RoomRulesSet.v1' "
            "GROUP BY key"
        )
    finally:
        await connection.close()
    return {UUID(row["key"]): row["n"] for row in rows}


@pytest_asyncio.fixture(loop_scope="session")
async def rooms_before(create_database: CreateDatabase) -> tuple[str, dict[str, UUID]]:
    """A database of rooms whose rules were published under ``BEFORE``."""
    url = await migrated(create_database)
    engine = make_engine(url)
    try:
        sessions = make_session_factory(engine)
        made = {
            "treatment": await add_room(sessions, RoomType.TREATMENT),
            "meeting": await add_room(sessions, RoomType.MEETING),
            "office": await add_room(sessions, RoomType.OFFICE),
            "office with a long notice": await add_room(
                sessions, RoomType.OFFICE, {"book_notice_minutes": 50_000}
            ),
        }
    finally:
        await engine.dispose()
    return url, made


async def test_two_replicas_starting_at_once_publish_each_change_once(
    rooms_before: tuple[str, dict[str, UUID]],
) -> None:
    url, rooms = rooms_before
    defaults = TimeslotsSettings(rules_by_room_type=AFTER).rule_defaults()
    engines = [make_engine(url), make_engine(url)]
    outbox = Outbox(models.outbox, source="/timeslots")
    holder = await asyncpg.connect(asyncpg_dsn(url))
    try:
        hold = holder.transaction()
        await hold.start()
        await holder.execute("SELECT id FROM rooms FOR UPDATE")  # both replicas wait here
        syncs = [
            asyncio.create_task(operations.sync_rules(stores_on(engine), outbox, defaults, page=2))
            for engine in engines
        ]
        await asyncio.sleep(0.3)
        assert not any(sync.done() for sync in syncs), "the replicas wait for the rooms' locks"
        await hold.commit()
        done = await asyncio.gather(*syncs)
    finally:
        await holder.close()
        for engine in engines:
            await engine.dispose()

    changed = [rooms["treatment"], rooms["office"]]
    assert sorted(done[0].published + done[1].published) == sorted(changed)
    assert [d.rooms for d in done] == [4, 4]
    assert all(set(d.invalid) == {rooms["office with a long notice"]} for d in done)
    assert await rules_events(url) == {
        rooms["treatment"]: 2,
        rooms["meeting"]: 1,
        rooms["office"]: 2,
        rooms["office with a long notice"]: 2,  # none more: they stay as last published
    }


async def test_a_sync_told_to_stop_stops_before_the_next_page(
    rooms_before: tuple[str, dict[str, UUID]],
) -> None:
    url, _ = rooms_before
    engine = make_engine(url)
    stop = asyncio.Event()
    stop.set()
    try:
        done = await operations.sync_rules(
            stores_on(engine),
            Outbox(models.outbox, source="/timeslots"),
            TimeslotsSettings(rules_by_room_type=AFTER).rule_defaults(),
            stop=stop,
        )
    finally:
        await engine.dispose()

    assert done == operations.RulesSync(rooms=0, published=(), invalid={})


async def test_the_service_publishes_what_new_defaults_change_when_it_starts(
    rooms_before: tuple[str, dict[str, UUID]],
    broker: Broker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, rooms = rooms_before
    settings = settings_for(url, broker.bootstrap, rules_by_room_type=AFTER)

    with caplog.at_level(logging.INFO, logger="timeslots.main"):
        async with serving(settings, broker) as service:
            treatment = await service.events(str(rooms["treatment"]), at_least=3)
            office = await service.events(str(rooms["office"]), at_least=3)
            meeting = await service.events(str(rooms["meeting"]), at_least=2, settle_s=0.5)
            read = await service.http.get(f"/rooms/{rooms['office']}/rules", headers=USER)

    assert versions(treatment)[-1] == ("RoomRulesSet.v1", 3)
    assert treatment[-1]["data"]["rules"] == in_force(AFTER["treatment"])
    assert office[-1]["data"]["rules"] == in_force(AFTER["office"])
    assert [e["type"] for e in meeting] == ["RoomUpserted.v1", "RoomRulesSet.v1"]
    assert read.json()["rules"]["horizon_minutes"] == 40_000
    long_notice = rooms["office with a long notice"]
    assert f"room {long_notice} keeps the rules last published" in caplog.text
    assert "booking rules of 4 rooms compared, 2 published" in caplog.text
