"""Rooms, schedules and slots over HTTP, against real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from booking_contracts import topics
from booking_contracts.catalogue import SlotsGenerated
from booking_contracts.envelope import decode
from platform_runtime.db import asyncpg_dsn

from .conftest import ADMIN, USER, Service


async def test_an_admin_creates_a_room_that_every_user_can_read_and_that_is_published(
    service: Service,
) -> None:
    room = await service.room(name="Studio 7", time_zone="Asia/Tokyo", currency="JPY", rate="3000")

    read = await service.http.get(f"/rooms/{room['id']}", headers=USER)
    events = await service.events(room["id"], at_least=1)

    assert read.status_code == 200
    assert read.json()["hourly_rate"] == {"amount": "3000", "currency": "JPY"}
    assert read.json()["time_zone"] == "Asia/Tokyo"
    assert events[0]["type"] == "RoomUpserted.v1"
    assert events[0]["data"]["room"]["name"] == "Studio 7"
    assert events[0]["data"]["room"]["hourly_rate"] == {"amount": "3000", "currency": "JPY"}


async def test_writes_need_the_admin_role_and_every_request_a_token(service: Service) -> None:
    body = {
        "name": "x",
        "capacity": 1,
        "room_type": "office",
        "hourly_rate": {"amount": "1.00", "currency": "EUR"},
        "time_zone": "UTC",
    }
    as_user = await service.http.post("/rooms", json=body, headers=USER)
    anonymous = await service.http.get("/rooms")
    listed = await service.http.get("/rooms", headers=USER)

    assert as_user.status_code == 403
    assert anonymous.status_code == 401
    assert all(room["name"] != "x" for room in listed.json()["items"])


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"time_zone": "Mars/Olympus_Mons"}, "unknown time zone"),
        ({"time_zone": "../../etc/passwd"}, "unknown time zone"),
        ({"capacity": 0}, "greater than or equal to 1"),
        ({"room_type": "sauna"}, "office"),
        ({"hourly_rate": {"amount": 12.5, "currency": "EUR"}}, "float"),
        ({"hourly_rate": {"amount": "12.555", "currency": "EUR"}}, "decimal places"),
        ({"hourly_rate": {"amount": "-1.00", "currency": "EUR"}}, "must not be negative"),
        ({"hourly_rate": {"amount": "1000000000000", "currency": "EUR"}}, "must be below"),
        ({"hourly_rate": {"amount": "1e15", "currency": "EUR"}}, "not a decimal string"),
        ({"hourly_rate": {"amount": 12, "currency": "EUR"}}, "decimal strings"),
    ],
)
async def test_an_invalid_room_is_refused_with_the_reason(
    service: Service, change: dict[str, object], reason: str
) -> None:
    body = {
        "name": "bad",
        "capacity": 2,
        "room_type": "office",
        "hourly_rate": {"amount": "10.00", "currency": "EUR"},
        "time_zone": "Europe/Berlin",
    } | change
    response = await service.http.post("/rooms", json=body, headers=ADMIN)

    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert reason in response.text


async def test_unknown_rooms_and_slots_are_404(service: Service) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    for path in (f"/rooms/{missing}", f"/slots/{missing}", f"/rooms/{missing}/schedule"):
        response = await service.http.get(path, headers=ADMIN)
        assert response.status_code == 404, path
        assert response.json()["type"] in {
            "urn:problem:room_not_found",
            "urn:problem:slot_not_found",
        }


async def test_a_room_is_updated_field_by_field_and_republished(service: Service) -> None:
    room = await service.room(name="Before")

    patched = await service.http.patch(
        f"/rooms/{room['id']}",
        json={"name": "After", "hourly_rate": {"amount": "45.50", "currency": "EUR"}},
        headers=ADMIN,
    )
    nulled = await service.http.patch(f"/rooms/{room['id']}", json={"name": None}, headers=ADMIN)
    events = await service.events(room["id"], at_least=3)

    assert patched.status_code == 200
    assert patched.json()["name"] == "After"
    assert patched.json()["capacity"] == room["capacity"]
    assert patched.json()["hourly_rate"]["amount"] == "45.50"
    assert nulled.status_code == 422
    assert [e["type"] for e in events] == ["RoomUpserted.v1", "RoomRulesSet.v1", "RoomUpserted.v1"]
    assert [e["data"]["room"]["name"] for e in events if "room" in e["data"]] == ["Before", "After"]


INJECTED_NAME = "Room 9\r\nBcc: everyone@example.com\r\n\r\nPay here: https://evil.example"
"""A name that, written as is into a reminder's Subject line, would add a header and a body."""


async def rooms_named_like(service: Service, fragment: str) -> int:
    connection = await asyncpg.connect(asyncpg_dsn(service.database_url))
    try:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM rooms WHERE strpos(name, $1) > 0", fragment
        )
    finally:
        await connection.close()
    return count


async def test_a_room_name_with_line_breaks_is_refused_and_changes_nothing(
    service: Service,
) -> None:
    room = await service.room(name="Room 9")
    body = {
        "name": INJECTED_NAME,
        "capacity": 2,
        "room_type": "office",
        "hourly_rate": {"amount": "10.00", "currency": "EUR"},
        "time_zone": "Europe/Berlin",
    }

    created = await service.http.post("/rooms", json=body, headers=ADMIN)
    patched = await service.http.patch(
        f"/rooms/{room['id']}", json={"name": INJECTED_NAME}, headers=ADMIN
    )
    read = await service.http.get(f"/rooms/{room['id']}", headers=ADMIN)

    for refused in (created, patched):
        assert refused.status_code == 422
        assert refused.headers["content-type"].startswith("application/problem+json")
        [issue] = refused.json()["errors"]
        assert issue["loc"] == ["body", "name"]
        assert "control characters (found U+000D, U+000A)" in issue["msg"]
    assert read.json()["name"] == "Room 9"
    assert await rooms_named_like(service, "Bcc:") == 0


async def test_a_description_may_have_lines_but_no_other_control_character(
    service: Service,
) -> None:
    room = await service.room()

    lines = await service.http.patch(
        f"/rooms/{room['id']}",
        json={"description": "Ground floor.\r\nWheelchair access:\tyes"},
        headers=ADMIN,
    )
    escape = await service.http.patch(
        f"/rooms/{room['id']}", json={"description": "\x1b[31mred alert"}, headers=ADMIN
    )
    read = await service.http.get(f"/rooms/{room['id']}", headers=ADMIN)

    assert lines.status_code == 200
    assert escape.status_code == 422
    assert "control characters (found U+001B)" in escape.text
    assert read.json()["description"] == "Ground floor.\r\nWheelchair access:\tyes"


async def test_generation_creates_the_schedule_once_however_often_it_runs(
    service: Service,
) -> None:
    room = await service.room()

    first = await service.generate(room["id"], "2030-02-04", "2030-02-10")  # Mon-Sun
    again = await service.generate(room["id"], "2030-02-04", "2030-02-10")
    slots = await service.slots(room["id"], **{"from": "2030-02-04", "to": "2030-02-10"})
    events = await service.events(room["id"], at_least=3)

    assert first["created"] == 5 * 16
    assert first["skipped"] == 0
    assert again["created"] == 0
    assert again["skipped"] == 80
    assert len(slots) == 80
    assert slots[0]["starts_at"] == "2030-02-04T08:00:00Z"  # 09:00 in Berlin (CET)
    assert slots[0]["price"] == {"amount": "15.00", "currency": "EUR"}  # 30.00/h x 30 min
    generated = [e["data"]["slots"] for e in events if e["type"] == "SlotsGenerated.v1"]
    published = [slot["slot_id"] for batch in generated for slot in batch]
    assert sorted(published) == sorted(s["id"] for s in slots)


async def test_concurrent_generations_of_one_room_never_duplicate_a_slot(
    service: Service,
) -> None:
    room = await service.room()

    results = await asyncio.gather(
        *(service.generate(room["id"], "2030-03-01", "2030-03-31") for _ in range(4))
    )
    slots = await service.slots(room["id"], **{"from": "2030-03-01", "to": "2030-03-31"})

    assert sum(r["created"] for r in results) == len(slots) == 21 * 16
    assert len({s["starts_at"] for s in slots}) == len(slots)


@pytest.mark.parametrize(
    ("time_zone", "day", "first_utc", "last_utc"),
    [
        ("Europe/Berlin", "2026-03-29", "2026-03-29T07:00:00Z", "2026-03-29T14:30:00Z"),
        ("Europe/Berlin", "2026-10-25", "2026-10-25T08:00:00Z", "2026-10-25T15:30:00Z"),
        ("America/New_York", "2026-03-08", "2026-03-08T13:00:00Z", "2026-03-08T20:30:00Z"),
        ("America/New_York", "2026-11-01", "2026-11-01T14:00:00Z", "2026-11-01T21:30:00Z"),
    ],
)
async def test_on_the_days_clocks_change_nine_to_five_is_still_sixteen_slots(
    service: Service, time_zone: str, day: str, first_utc: str, last_utc: str
) -> None:
    room = await service.room(
        time_zone=time_zone,
        schedule={"open_weekdays": [7], "hours": [{"start": "09:00", "end": "17:00"}]},
    )

    result = await service.generate(room["id"], day, day)
    slots = await service.slots(room["id"], date=day)

    assert result["created"] == 16
    assert [s["starts_at"] for s in slots][:: len(slots) - 1] == [first_utc, last_utc]
    lengths = {
        datetime.fromisoformat(s["ends_at"]) - datetime.fromisoformat(s["starts_at"]) for s in slots
    }
    assert lengths == {timedelta(minutes=30)}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"date_from": "2030-02-10", "date_to": "2030-02-01"}, "ends before it starts"),
        ({"date_from": "2030-01-01", "date_to": "2031-06-01"}, "more than 366"),
        ({"date_from": "9999-12-31", "date_to": "9999-12-31"}, "from 2000 to 2199"),
        (
            {
                "date_from": "2030-02-01",
                "date_to": "2030-02-02",
                "price_override": {"amount": "5.00", "currency": "USD"},
            },
            "priced in EUR",
        ),
    ],
)
async def test_an_invalid_generation_is_422_and_creates_nothing(
    service: Service, body: dict[str, object], reason: str
) -> None:
    room = await service.room()

    response = await service.http.post(
        f"/rooms/{room['id']}/slots/generate", json=body, headers=ADMIN
    )
    slots = await service.slots(room["id"], **{"from": "2030-01-01", "to": "2030-01-31"})

    assert response.status_code == 422
    assert reason in response.text
    assert slots == []


async def test_a_price_override_prices_every_new_slot(service: Service) -> None:
    room = await service.room()

    response = await service.http.post(
        f"/rooms/{room['id']}/slots/generate",
        json={
            "date_from": "2030-02-04",
            "date_to": "2030-02-04",
            "price_override": {"amount": "9.99", "currency": "EUR"},
        },
        headers=ADMIN,
    )
    slots = await service.slots(room["id"], date="2030-02-04")

    assert response.json()["created"] == 16
    assert {s["price"]["amount"] for s in slots} == {"9.99"}


async def test_a_schedule_with_two_intervals_buffers_holidays_and_a_blackout(
    service: Service,
) -> None:
    room = await service.room(
        schedule={
            "open_weekdays": [1, 2],
            "weekday_hours": {
                "1": [{"start": "09:00", "end": "12:00"}, {"start": "13:00", "end": "15:00"}],
                "2": [{"start": "10:00", "end": "11:00"}],
            },
            "slot_minutes": 50,
            "buffer_minutes": 10,
            "excluded_dates": ["2030-02-11"],
            "blackouts": [{"starts_at": "2030-02-19T09:00:00Z", "ends_at": "2030-02-19T09:30:00Z"}],
        },
    )

    await service.generate(room["id"], "2030-02-04", "2030-02-19")
    slots = await service.slots(room["id"], **{"from": "2030-02-04", "to": "2030-02-19"})
    schedule = await service.http.get(f"/rooms/{room['id']}/schedule", headers=USER)

    per_day = Counter(s["starts_at"][:10] for s in slots)
    # Monday: 09:00, 10:00, 11:00 and 13:00, 14:00 (50 min + 10 min buffer); Tuesday: 10:00.
    # 2030-02-11 is a holiday, 2030-02-19's only slot (09:00Z = 10:00 CET) is blacked out.
    assert per_day == {"2030-02-04": 5, "2030-02-05": 1, "2030-02-12": 1, "2030-02-18": 5}
    assert schedule.json()["weekday_hours"]["2"] == [{"start": "10:00:00", "end": "11:00:00"}]
    assert schedule.json()["slot_minutes"] == 50


@pytest.mark.parametrize(
    ("schedule", "reason"),
    [
        ({"hours": [{"start": "17:00", "end": "09:00"}]}, "must start before it ends"),
        (
            {"hours": [{"start": "09:00", "end": "12:00"}, {"start": "11:00", "end": "13:00"}]},
            "overlap",
        ),
        ({"open_weekdays": [6], "weekday_hours": {"1": []}}, "no working hours"),
        ({"hours": [{"start": "09:00", "end": "17:00"}], "open_weekdays": [8]}, "less than"),
        ({"hours": [{"start": "09:00", "end": "17:00"}], "slot_minutes": 0}, "greater than"),
    ],
)
async def test_a_schedule_that_makes_no_sense_is_refused(
    service: Service, schedule: dict[str, object], reason: str
) -> None:
    room = await service.room()

    response = await service.http.put(f"/rooms/{room['id']}/schedule", json=schedule, headers=ADMIN)
    kept = await service.http.get(f"/rooms/{room['id']}/schedule", headers=ADMIN)

    assert response.status_code == 422
    assert reason in response.text
    assert kept.json()["weekday_hours"]["1"] == [{"start": "09:00:00", "end": "17:00:00"}]


async def test_a_room_without_a_schedule_cannot_generate(service: Service) -> None:
    response = await service.http.post(
        "/rooms",
        json={
            "name": "No hours",
            "capacity": 1,
            "room_type": "office",
            "hourly_rate": {"amount": "1.00", "currency": "EUR"},
            "time_zone": "UTC",
        },
        headers=ADMIN,
    )
    room_id = response.json()["id"]

    generate = await service.http.post(
        f"/rooms/{room_id}/slots/generate",
        json={"date_from": "2030-02-04", "date_to": "2030-02-04"},
        headers=ADMIN,
    )
    schedule = await service.http.get(f"/rooms/{room_id}/schedule", headers=ADMIN)

    assert generate.status_code == 409
    assert "no schedule" in generate.json()["detail"]
    assert schedule.status_code == 409


async def test_custom_slots_are_added_all_or_nothing(service: Service) -> None:
    room = await service.room(rate="60.00")
    await service.generate(room["id"], "2030-02-04", "2030-02-04")  # 08:00Z-16:00Z

    added = await service.http.post(
        f"/rooms/{room['id']}/slots",
        json={
            "slots": [
                {"starts_at": "2030-02-04T16:00:00Z", "ends_at": "2030-02-04T17:30:00Z"},
                {
                    "starts_at": "2030-02-04T19:30:00+01:00",
                    "ends_at": "2030-02-04T20:00:00+01:00",
                    "price": {"amount": "5.00", "currency": "EUR"},
                    "max_bookings": 3,
                },
            ]
        },
        headers=ADMIN,
    )
    overlapping = await service.http.post(
        f"/rooms/{room['id']}/slots",
        json={
            "slots": [
                {"starts_at": "2030-02-04T20:00:00Z", "ends_at": "2030-02-04T21:00:00Z"},
                {"starts_at": "2030-02-04T15:45:00Z", "ends_at": "2030-02-04T16:15:00Z"},
            ]
        },
        headers=ADMIN,
    )
    slots = await service.slots(room["id"], date="2030-02-04")

    assert added.status_code == 201, added.text
    assert [s["price"]["amount"] for s in added.json()] == ["90.00", "5.00"]
    assert added.json()[1]["starts_at"] == "2030-02-04T18:30:00Z"
    assert added.json()[1]["max_bookings"] == 3
    assert overlapping.status_code == 409
    assert "overlaps" in overlapping.json()["detail"]
    assert len(slots) == 16 + 2


@pytest.mark.parametrize(
    ("slot", "reason"),
    [
        ({"starts_at": "2030-02-05T10:00:00Z", "ends_at": "2030-02-05T09:00:00Z"}, "end after"),
        ({"starts_at": "2030-02-05T10:00:00", "ends_at": "2030-02-05T11:00:00"}, "with an offset"),
        ({"starts_at": "2029-12-01T10:00:00Z", "ends_at": "2029-12-01T11:00:00Z"}, "in the past"),
        ({"starts_at": "2030-02-05T10:00:00Z", "ends_at": "2030-02-06T11:00:00Z"}, "longer"),
        ({"starts_at": "2030-02-05T10:00:30Z", "ends_at": "2030-02-05T11:00:00Z"}, "whole"),
        ({"starts_at": "2040-02-05T10:00:00Z", "ends_at": "2040-02-05T11:00:00Z"}, "ahead"),
    ],
)
async def test_an_invalid_custom_slot_is_422(
    service: Service, slot: dict[str, str], reason: str
) -> None:
    room = await service.room()

    response = await service.http.post(
        f"/rooms/{room['id']}/slots", json={"slots": [slot]}, headers=ADMIN
    )

    assert response.status_code == 422
    assert reason in response.text


async def test_blocking_a_slot_takes_it_out_of_sale_and_publishes_the_change(
    service: Service,
) -> None:
    room = await service.room()
    await service.generate(room["id"], "2030-02-04", "2030-02-04")
    slot = (await service.slots(room["id"], date="2030-02-04"))[0]

    blocked = await service.http.post(f"/slots/{slot['id']}/block", headers=ADMIN)
    again = await service.http.post(f"/slots/{slot['id']}/block", headers=ADMIN)
    search = await service.http.get(
        f"/rooms/{room['id']}/availability", params={"date": "2030-02-04"}, headers=USER
    )
    unblocked = await service.http.post(f"/slots/{slot['id']}/unblock", headers=ADMIN)
    by_user = await service.http.post(f"/slots/{slot['id']}/block", headers=USER)
    events = await service.events(room["id"], at_least=5)

    assert blocked.json()["status"] == "blocked"
    assert blocked.json()["revision"] == 2
    assert again.json()["revision"] == 2
    assert slot["id"] not in {s["slot_id"] for s in search.json()["items"]}
    assert unblocked.json()["status"] == "open"
    assert unblocked.json()["revision"] == 3
    assert by_user.status_code == 403
    changes = [e["data"]["slot"] for e in events if e["type"] == "SlotChanged.v1"]
    assert [(c["status"], c["revision"]) for c in changes] == [("blocked", 2), ("open", 3)]


async def test_a_deactivated_room_sells_nothing_and_takes_no_new_slots(service: Service) -> None:
    room = await service.room()
    await service.generate(room["id"], "2030-02-04", "2030-02-04")

    deactivated = await service.http.post(f"/rooms/{room['id']}/deactivate", headers=ADMIN)
    search = await service.http.get(
        f"/rooms/{room['id']}/availability", params={"date": "2030-02-04"}, headers=USER
    )
    generate = await service.http.post(
        f"/rooms/{room['id']}/slots/generate",
        json={"date_from": "2030-02-05", "date_to": "2030-02-05"},
        headers=ADMIN,
    )
    reactivated = await service.http.post(f"/rooms/{room['id']}/activate", headers=ADMIN)
    events = await service.events(room["id"], at_least=5)

    assert deactivated.json()["active"] is False
    assert search.json()["items"] == []
    assert generate.status_code == 409
    assert reactivated.json()["active"] is True
    types = [e["type"] for e in events]
    assert types[-2:] == ["RoomDeactivated.v1", "RoomUpserted.v1"]


async def test_every_room_event_carries_the_rooms_version_counted_by_the_database(
    service: Service,
) -> None:
    room = await service.room(name="Counted")

    await service.http.patch(f"/rooms/{room['id']}", json={"name": "Renamed"}, headers=ADMIN)
    await service.http.post(f"/rooms/{room['id']}/deactivate", headers=ADMIN)
    await service.http.post(f"/rooms/{room['id']}/activate", headers=ADMIN)
    events = await service.events(room["id"], at_least=5)

    assert [(e["type"], e["data"]["room_version"]) for e in events] == [
        ("RoomUpserted.v1", 1),
        ("RoomRulesSet.v1", 2),  # a new room's rules in force
        ("RoomUpserted.v1", 3),
        ("RoomDeactivated.v1", 4),
        ("RoomUpserted.v1", 5),
    ]


async def test_rooms_are_listed_by_type_a_page_at_a_time(service: Service) -> None:
    made = {(await service.room(room_type="treatment"))["id"] for _ in range(3)}

    seen: list[str] = []
    cursor = None
    while True:
        params = {"room_type": "treatment", "limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = (await service.http.get("/rooms", params=params, headers=USER)).json()
        seen += [room["id"] for room in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert made <= set(seen)
    assert len(seen) == len(set(seen))


async def test_a_cursor_of_another_shape_is_422_and_any_of_the_documented_shape_a_page(
    service: Service,
) -> None:
    refused = await service.http.get("/rooms", params={"cursor": "bm90LWEtdXVpZA"}, headers=USER)
    past_every_room = await service.http.get("/rooms", params={"cursor": "_" * 22}, headers=USER)

    assert refused.status_code == 422
    assert "cursor" in refused.text
    assert past_every_room.status_code == 200
    assert past_every_room.json() == {"items": [], "next_cursor": None}


async def test_an_empty_patch_changes_nothing_and_an_unknown_room_is_404(service: Service) -> None:
    room = await service.room(name="Same")

    empty = await service.http.patch(f"/rooms/{room['id']}", json={}, headers=ADMIN)
    unknown = await service.http.patch(
        "/rooms/00000000-0000-4000-8000-000000000002", json={"name": "x"}, headers=ADMIN
    )
    events = await service.events(room["id"], at_least=2, settle_s=0.5)

    assert empty.json() == room
    assert unknown.status_code == 404
    assert [e["type"] for e in events] == ["RoomUpserted.v1", "RoomRulesSet.v1"]


async def test_deactivating_twice_announces_it_once(service: Service) -> None:
    room = await service.room()

    for _ in range(2):
        response = await service.http.post(f"/rooms/{room['id']}/deactivate", headers=ADMIN)
        assert response.json()["active"] is False
    inactive = await service.http.get("/rooms", params={"active": "false"}, headers=USER)
    events = await service.events(room["id"], at_least=3, settle_s=0.5)

    assert room["id"] in {r["id"] for r in inactive.json()["items"]}
    assert [e["type"] for e in events] == [
        "RoomUpserted.v1",
        "RoomRulesSet.v1",
        "RoomDeactivated.v1",
    ]


async def test_custom_slots_are_refused_for_an_inactive_room_or_in_too_large_a_batch(
    service: Service,
) -> None:
    room = await service.room()
    start = datetime(2030, 5, 1, 8, tzinfo=UTC)
    many = [
        {
            "starts_at": (start + timedelta(hours=i)).isoformat(),
            "ends_at": (start + timedelta(hours=i, minutes=30)).isoformat(),
        }
        for i in range(service.settings.custom_slots_max + 1)
    ]

    too_many = await service.http.post(
        f"/rooms/{room['id']}/slots", json={"slots": many}, headers=ADMIN
    )
    await service.http.post(f"/rooms/{room['id']}/deactivate", headers=ADMIN)
    inactive = await service.http.post(
        f"/rooms/{room['id']}/slots", json={"slots": many[:1]}, headers=ADMIN
    )

    assert too_many.status_code == 422
    assert "at most 500" in too_many.json()["detail"]
    assert inactive.status_code == 409
    assert "inactive" in inactive.json()["detail"]


async def test_two_admins_adding_the_same_slot_at_once_create_it_once(service: Service) -> None:
    room = await service.room()
    slot = {"starts_at": "2030-06-03T08:00:00Z", "ends_at": "2030-06-03T09:00:00Z"}

    responses = await asyncio.gather(
        *(
            service.http.post(f"/rooms/{room['id']}/slots", json={"slots": [slot]}, headers=ADMIN)
            for _ in range(6)
        )
    )

    assert sorted(r.status_code for r in responses) == [201] + [409] * 5
    assert len(await service.slots(room["id"], date="2030-06-03")) == 1


async def test_generated_events_decode_into_the_catalogue_model_slot_for_slot(
    service: Service,
) -> None:
    room = await service.room(rate="45.00")

    await service.generate(room["id"], "2030-07-01", "2030-07-05")
    slots = await service.slots(room["id"], **{"from": "2030-07-01", "to": "2030-07-05"})
    records = await service.broker.read(
        topics.TIMESLOTS_EVENTS,
        at_least=1,
        where=lambda r: r.key == room["id"].encode() and b"SlotsGenerated" in (r.value or b""),
    )

    envelope, event = decode(records[0].value)
    assert isinstance(event, SlotsGenerated)
    assert envelope.source == "/timeslots"
    assert envelope.subject == room["id"]
    assert dict(records[0].headers)["ce_id"] == str(envelope.id).encode()
    assert [
        (
            str(s.slot_id),
            s.starts_at.isoformat().replace("+00:00", "Z"),
            s.ends_at.isoformat().replace("+00:00", "Z"),
            s.price.model_dump(mode="json"),
            s.max_bookings,
            s.status.value,
            s.revision,
        )
        for s in event.slots
    ] == [(s["id"], s["starts_at"], s["ends_at"], s["price"], 1, "open", 1) for s in slots]


async def test_an_admin_lists_every_slot_of_a_room_a_page_at_a_time(service: Service) -> None:
    room = await service.room()
    await service.generate(room["id"], "2030-08-05", "2030-08-05")

    seen: list[str] = []
    cursor = None
    while True:
        params = {"date": "2030-08-05", "limit": "6"} | ({"cursor": cursor} if cursor else {})
        page = await service.http.get(f"/rooms/{room['id']}/slots", params=params, headers=ADMIN)
        seen += [slot["starts_at"] for slot in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break

    assert len(seen) == 16
    assert seen == sorted(set(seen))
