"""Hostile HTTP input against the running timeslots service: every request here is answered
with a 4xx problem, never a 500, and nothing of it is written."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from platform_runtime.http.inputs import MAX_FREE_FORM_BYTES, MAX_FREE_FORM_DEPTH
from platform_runtime.http.pagination import encode_cursor
from tests.support.abuse import JSON, CountedBody, loose_json, nested, problem

from .conftest import ADMIN, USER, Service

ROOM = {
    "name": "Hostile",
    "capacity": 4,
    "room_type": "meeting",
    "hourly_rate": {"amount": "30.00", "currency": "EUR"},
    "time_zone": "Europe/Berlin",
}


async def _room_ids(service: Service) -> set[str]:
    response = await service.http.get("/rooms", params={"limit": "500"}, headers=ADMIN)
    assert response.status_code == 200, response.text
    return {room["id"] for room in response.json()["items"]}


async def test_a_10_mb_body_without_a_token_is_refused_unread_and_the_service_goes_on(
    service: Service,
) -> None:
    before = await _room_ids(service)
    declared = CountedBody()
    chunked = CountedBody()

    refused = await service.http.post(
        "/rooms", content=declared, headers=JSON | {"Content-Length": str(declared.size)}
    )
    cut_off = await service.http.post("/rooms", content=chunked, headers=JSON | ADMIN)

    problem(refused, 413)
    assert declared.read == 0
    problem(cut_off, 413)
    assert chunked.read <= service.settings.http_max_body_bytes + 16 * 1024
    assert await _room_ids(service) == before
    assert (await service.http.post("/rooms", json=ROOM, headers=ADMIN)).status_code == 201


async def test_a_room_nothing_could_store_is_a_422_and_creates_nothing(service: Service) -> None:
    before = await _room_ids(service)
    requests: dict[str, dict[str, Any]] = {
        "attributes 300 deep": {"json": ROOM | {"attributes": nested(300)}},
        "attributes one level too deep": {
            "json": ROOM | {"attributes": nested(MAX_FREE_FORM_DEPTH + 1)}
        },
        "attributes too long": {"json": ROOM | {"attributes": {"t": "x" * MAX_FREE_FORM_BYTES}}},
        "NUL in an attribute": {"json": ROOM | {"attributes": {"floor": "3\x00"}}},
        "NUL in an attribute name": {"json": ROOM | {"attributes": {"fl\x00or": 3}}},
        "NaN in attributes": {"content": loose_json(ROOM | {"attributes": {"x": float("nan")}})},
        "Infinity in capacity": {"content": loose_json(ROOM | {"capacity": float("inf")})},
        "NaN as the rate": {"json": ROOM | {"hourly_rate": {"amount": "NaN", "currency": "EUR"}}},
    }

    answers = {
        name: await service.http.post("/rooms", headers=JSON | ADMIN, **request)
        for name, request in requests.items()
    }

    assert {name: a.status_code for name, a in answers.items()} == dict.fromkeys(requests, 422)
    for answer in answers.values():
        assert problem(answer, 422)["errors"]
    assert await _room_ids(service) == before
    assert (await service.http.get("/rooms", headers=USER)).status_code == 200


async def test_patching_unstorable_attributes_is_a_422_and_changes_nothing(
    service: Service,
) -> None:
    room = await service.room(name="Patched")

    deep = await service.http.patch(
        f"/rooms/{room['id']}", json={"attributes": nested(300)}, headers=ADMIN
    )
    nul = await service.http.patch(
        f"/rooms/{room['id']}", json={"attributes": {"k": "\x00"}}, headers=ADMIN
    )
    kept = await service.http.get(f"/rooms/{room['id']}", headers=USER)
    listing = await service.http.get("/rooms", headers=USER)

    problem(deep, 422)
    problem(nul, 422)
    assert kept.json()["attributes"] == room["attributes"]
    assert kept.json()["updated_at"] == room["updated_at"]
    assert listing.status_code == 200


async def test_attributes_at_the_bounds_are_stored_and_listed(service: Service) -> None:
    deepest = nested(MAX_FREE_FORM_DEPTH)

    created = await service.http.post("/rooms", json=ROOM | {"attributes": deepest}, headers=ADMIN)
    fetched = await service.http.get(f"/rooms/{created.json()['id']}", headers=USER)

    assert created.status_code == 201, created.text
    assert fetched.json()["attributes"] == deepest


async def test_instants_outside_the_documented_years_and_misshapen_cursors_are_a_422(
    service: Service,
) -> None:
    room = await service.room(name="Timeless")
    before_year_1 = "0001-01-01T00:00:00+01:00"
    after_year_9999 = "9999-12-31T23:30:00-01:00"
    cursor = encode_cursor(datetime(2030, 1, 7, tzinfo=UTC), uuid.uuid4())[:-1]  # one short
    dates = {"from": "2030-01-07", "to": "2030-01-08"}

    answers = [
        await service.http.post(
            f"/rooms/{room['id']}/slots",
            json={"slots": [{"starts_at": before_year_1, "ends_at": "2030-01-08T10:00:00Z"}]},
            headers=ADMIN,
        ),
        await service.http.put(
            f"/rooms/{room['id']}/schedule",
            json={
                "hours": [{"start": "09:00", "end": "17:00"}],
                "blackouts": [{"starts_at": "2030-01-08T10:00:00Z", "ends_at": after_year_9999}],
            },
            headers=ADMIN,
        ),
        await service.http.get(
            f"/rooms/{room['id']}/slots", params=dates | {"cursor": cursor}, headers=ADMIN
        ),
        await service.http.get(
            f"/rooms/{room['id']}/availability", params=dates | {"cursor": cursor}, headers=USER
        ),
        await service.http.get(
            "/availability", params=dates | {"room_type": "meeting", "cursor": cursor}, headers=USER
        ),
    ]

    assert [a.status_code for a in answers] == [422] * len(answers)
    for answer in answers:
        problem(answer, 422)
    assert await service.slots(room["id"], **dates) == []


async def test_a_blackout_at_the_ends_of_the_documented_years_is_kept_and_slots_are_still_generated(
    service: Service,
) -> None:
    room = await service.room(name="Ends of time")
    schedule = {
        "hours": [{"start": "09:00", "end": "10:00"}],
        "blackouts": [
            {"starts_at": "2000-01-01T00:00:00Z", "ends_at": "2000-01-02T00:00:00Z"},
            {"starts_at": "2199-12-30T00:00:00Z", "ends_at": "2199-12-31T23:59:59.999999-12:00"},
        ],
    }

    put = await service.http.put(f"/rooms/{room['id']}/schedule", json=schedule, headers=ADMIN)
    generated = await service.generate(room["id"], "2030-01-07", "2030-01-07")

    assert put.status_code == 200, put.text
    assert generated["created"] == 2


async def test_a_nul_in_a_query_parameter_or_the_path_is_a_422(service: Service) -> None:
    answers = [
        await service.http.get("/rooms", params={"cursor": "abc\x00"}, headers=USER),
        await service.http.get("/availability", params={"room_type": "\x00"}, headers=USER),
        await service.http.get("/rooms/%00", headers=USER),
    ]

    assert [a.status_code for a in answers] == [422, 422, 422]
    assert [problem(a, 422)["errors"][0]["type"] for a in answers] == ["nul_character"] * 3
