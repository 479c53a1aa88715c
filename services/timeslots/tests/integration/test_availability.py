"""Availability search over HTTP: local dates, future only, runs of free time, pages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from .conftest import ADMIN, USER, Service


async def _search(service: Service, room_id: str, **params: str) -> dict[str, Any]:
    response = await service.http.get(f"/rooms/{room_id}/availability", params=params, headers=USER)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_date_means_the_rooms_own_local_day(service: Service) -> None:
    room = await service.room(time_zone="Asia/Tokyo", currency="JPY", rate="2000")
    await service.generate(room["id"], "2030-02-04", "2030-02-05")

    page = await _search(service, room["id"], date="2030-02-04", limit="100")

    items = page["items"]
    assert len(items) == 16
    assert items[0]["starts_at"] == "2030-02-04T00:00:00Z"  # 09:00 in Tokyo
    assert items[0]["local_starts_at"] == "2030-02-04T09:00:00+09:00"
    assert items[-1]["local_ends_at"] == "2030-02-04T17:00:00+09:00"
    assert items[0]["price"] == {"amount": "1000", "currency": "JPY"}
    assert {item["places_left"] for item in items} == {1}
    assert page["next_cursor"] is None


async def test_slots_that_have_started_are_not_offered(service: Service) -> None:
    room = await service.room()
    await service.generate(room["id"], "2030-02-06", "2030-02-06")
    service.clock.now = datetime(2030, 2, 6, 10, 10, tzinfo=UTC)  # 11:10 in Berlin
    try:
        page = await _search(service, room["id"], date="2030-02-06", limit="100")
    finally:
        service.clock.now = datetime(2030, 1, 7, 6, 0, tzinfo=UTC)

    assert page["items"][0]["local_starts_at"] == "2030-02-06T11:30:00+01:00"
    assert len(page["items"]) == 11


async def test_min_duration_offers_only_starts_with_enough_free_time_after_them(
    service: Service,
) -> None:
    room = await service.room()
    await service.generate(room["id"], "2030-02-07", "2030-02-07")
    noon = next(
        s
        for s in await service.slots(room["id"], date="2030-02-07")
        if s["starts_at"] == "2030-02-07T11:00:00Z"  # 12:00 in Berlin
    )
    await service.http.post(f"/slots/{noon['id']}/block", headers=ADMIN)

    page = await _search(service, room["id"], date="2030-02-07", min_duration="90", limit="100")

    starts = [item["local_starts_at"][11:16] for item in page["items"]]
    assert starts == [
        "09:00", "09:30", "10:00", "10:30",
        "12:30", "13:00", "13:30", "14:00", "14:30", "15:00", "15:30",
    ]  # fmt: skip
    assert page["items"][0]["free_minutes"] == 180
    assert page["items"][3]["free_minutes"] == 90


async def test_results_come_a_page_at_a_time_in_start_order(service: Service) -> None:
    room = await service.room()
    await service.generate(room["id"], "2030-02-11", "2030-02-12")

    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"from": "2030-02-11", "to": "2030-02-12", "limit": "5"}
        page = await _search(
            service, room["id"], **params, **({"cursor": cursor} if cursor else {})
        )
        seen += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert pages == 7  # 32 slots, 5 a page
    assert len({item["slot_id"] for item in seen}) == 32
    assert [item["starts_at"] for item in seen] == sorted(item["starts_at"] for item in seen)


async def test_a_search_by_type_covers_every_active_room_of_it_in_its_own_zone(
    service: Service,
) -> None:
    berlin = await service.room(room_type="consultation", name="Berlin")
    new_york = await service.room(
        room_type="consultation", name="New York", time_zone="America/New_York"
    )
    closed = await service.room(room_type="consultation", name="Closed")
    for room in (berlin, new_york, closed):
        await service.generate(room["id"], "2030-02-13", "2030-02-13")
    await service.http.post(f"/rooms/{closed['id']}/deactivate", headers=ADMIN)

    response = await service.http.get(
        "/availability",
        params={"room_type": "consultation", "date": "2030-02-13", "limit": "100"},
        headers=USER,
    )

    items = response.json()["items"]
    by_room = {
        name: [i for i in items if i["room_name"] == name] for name in ("Berlin", "New York")
    }
    assert len(items) == 32
    assert by_room["Berlin"][0]["starts_at"] == "2030-02-13T08:00:00Z"
    assert by_room["New York"][0]["starts_at"] == "2030-02-13T14:00:00Z"
    assert by_room["New York"][0]["local_starts_at"] == "2030-02-13T09:00:00-05:00"


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"from": "2030-02-10", "to": "2030-02-01"}, "ends before it starts"),
        ({"from": "2030-01-01", "to": "2030-03-01"}, "more than 31"),
        ({"date": "2030-02-01", "from": "2030-02-01", "to": "2030-02-02"}, "not both"),
        ({}, "give `date`"),
        ({"date": "2030-02-31"}, "date"),
        ({"date": "9999-12-31"}, "from 2000 to 2199"),
        ({"date": "2030-02-01", "min_duration": "0"}, "greater than"),
        ({"date": "2030-02-01", "cursor": "!!"}, "cursor"),
    ],
)
async def test_an_invalid_search_is_422(
    service: Service, params: dict[str, str], reason: str
) -> None:
    room = await service.room()

    response = await service.http.get(
        f"/rooms/{room['id']}/availability", params=params, headers=USER
    )

    assert response.status_code == 422
    assert reason in response.text


async def test_searching_needs_a_token_and_an_existing_room(service: Service) -> None:
    room = await service.room()
    missing = "00000000-0000-4000-8000-000000000001"

    anonymous = await service.http.get(
        f"/rooms/{room['id']}/availability", params={"date": "2030-02-04"}
    )
    unknown = await service.http.get(
        f"/rooms/{missing}/availability", params={"date": "2030-02-04"}, headers=USER
    )

    assert anonymous.status_code == 401
    assert unknown.status_code == 404
