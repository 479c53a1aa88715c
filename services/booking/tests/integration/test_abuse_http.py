"""Hostile HTTP input against the running booking service: every request here is answered
with a 4xx problem, never a 500, and nothing of it is written."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import make_url

from booking.main import create_app
from platform_runtime.http.inputs import MAX_FREE_FORM_BYTES, MAX_FREE_FORM_DEPTH
from platform_runtime.http.pagination import encode_cursor
from platform_runtime.settings import DEV_JWT_SECRET, Role
from platform_runtime.tokens import issue_token
from tests.support.abuse import JSON, CountedBody, fetch_from, loose_json, nested, problem

from .conftest import ADMIN, Service, user


async def _bookings_of(service: Service, user_id: str) -> int:
    row = await service.row("SELECT count(*) AS n FROM bookings WHERE user_id = $1", user_id)
    assert row is not None
    count: int = row["n"]
    return count


async def test_a_10_mb_body_without_a_token_is_refused_unread_and_the_service_goes_on(
    service: Service,
) -> None:
    declared = CountedBody()
    chunked = CountedBody()

    refused = await service.http.post(
        "/bookings", content=declared, headers=JSON | {"Content-Length": str(declared.size)}
    )
    cut_off = await service.http.post("/bookings", content=chunked, headers=JSON | user("big"))

    problem(refused, 413)
    assert refused.headers["connection"] == "close"
    assert declared.read == 0  # refused on its declared length: not a byte was read
    problem(cut_off, 413)
    assert chunked.read <= service.settings.http_max_body_bytes + 16 * 1024  # a chunk past
    assert await _bookings_of(service, "big") == 0
    room = await service.room()
    (slot,) = await service.slots(room)
    assert (await service.book(slot, "big")).status_code == 201  # the service goes on


def _create(slot_id: uuid.UUID, **fields: Any) -> dict[str, Any]:
    return {"slot_id": str(slot_id)} | fields


async def test_a_booking_nothing_could_store_is_a_422_and_books_nothing(service: Service) -> None:
    room = await service.room()
    (slot,) = await service.slots(room)
    too_long = {"text": "x" * MAX_FREE_FORM_BYTES}
    requests: dict[str, dict[str, Any]] = {
        "attributes 300 deep": {"json": _create(slot.slot_id, attributes=nested(300))},
        "attributes one level too deep": {
            "json": _create(slot.slot_id, attributes=nested(MAX_FREE_FORM_DEPTH + 1))
        },
        "attributes too long": {"json": _create(slot.slot_id, attributes=too_long)},
        "NUL in notes": {"json": _create(slot.slot_id, notes="window\x00seat")},
        "NUL in booking_type": {"json": _create(slot.slot_id, booking_type="vip\x00")},
        "NUL in an attribute": {"json": _create(slot.slot_id, attributes={"k": ["\x00"]})},
        "NUL in an attribute name": {"json": _create(slot.slot_id, attributes={"k\x00": 1})},
        "NaN in attributes": {
            "content": loose_json(_create(slot.slot_id, attributes={"x": float("nan")}))
        },
        "Infinity in attributes": {
            "content": loose_json(_create(slot.slot_id, attributes={"x": [float("inf")]}))
        },
    }

    answers = {
        name: await service.http.post("/bookings", headers=JSON | user("hostile"), **request)
        for name, request in requests.items()
    }
    listing = await service.http.get("/bookings", headers=user("hostile"))

    statuses = {name: response.status_code for name, response in answers.items()}
    assert statuses == dict.fromkeys(requests, 422)
    for response in answers.values():
        assert problem(response, 422)["errors"]
    assert await _bookings_of(service, "hostile") == 0
    assert listing.status_code == 200
    assert listing.json()["items"] == []
    assert await service.booked(slot.slot_id) == 0


async def test_attributes_at_the_bounds_are_booked_and_listed(service: Service) -> None:
    room = await service.room()
    (slot,) = await service.slots(room)
    deepest = nested(MAX_FREE_FORM_DEPTH)

    created = await service.book(slot, "bounded", attributes=deepest, notes="line\nbreak")
    listing = await service.http.get("/bookings", headers=user("bounded"))

    assert created.status_code == 201, created.text
    assert listing.status_code == 200
    [listed] = listing.json()["items"]
    assert listed["attributes"] == deepest
    assert listed["notes"] == "line\nbreak"


async def test_a_cancellation_reason_with_a_nul_is_a_422_and_cancels_nothing(
    service: Service,
) -> None:
    room = await service.room()
    (slot,) = await service.slots(room)
    booking = await service.booking(slot, "canceller")

    refused = await service.http.post(
        f"/bookings/{booking['id']}/cancel", json={"reason": "no\x00"}, headers=user("canceller")
    )

    assert problem(refused, 422)["errors"][0]["type"] == "nul_character"
    row = await service.row("SELECT status FROM bookings WHERE id = $1", uuid.UUID(booking["id"]))
    assert row == {"status": "pending"}


async def test_instants_outside_the_documented_years_are_a_422_and_any_cursor_a_page(
    service: Service,
) -> None:
    refused = [
        await service.http.get("/bookings", params=params, headers=user("timer"))
        for params in (
            {"starts_from": "0001-01-01T00:00:00+01:00"},  # no such instant in UTC
            {"starts_before": "9999-12-31T23:30:00-01:00"},
            {"starts_from": "1999-12-31T23:59:59Z"},  # before the documented years
            {"starts_from": "1800000000"},  # no Unix time
            {"cursor": "not-a-cursor"},
        )
    ]
    far_past = encode_cursor(datetime(1, 1, 1, tzinfo=UTC), uuid.uuid4())
    extremes = await service.http.get(
        "/bookings",
        params={
            "starts_from": "2000-01-01T00:00:00Z",
            "starts_before": "2199-12-31T23:59:59Z",
            "cursor": far_past,
        },
        headers=user("timer"),
    )

    for answer in refused:
        problem(answer, 422)
    assert extremes.status_code == 200, extremes.text  # the first and last documented instants


async def test_a_nul_in_a_query_parameter_is_a_422(service: Service) -> None:
    response = await service.http.get("/bookings", params={"user_id": "a\x00b"}, headers=ADMIN)

    assert problem(response, 422)["errors"] == [
        {
            "loc": ["query", "user_id"],
            "msg": "must not contain the NUL character (U+0000)",
            "type": "nul_character",
        }
    ]


def _token(subject: str, email: str) -> dict[str, str]:
    token = issue_token(secret_or_private_key=DEV_JWT_SECRET, subject=subject, email=email)
    return {"Authorization": f"Bearer {token}"}


async def test_a_token_whose_claims_cannot_be_a_caller_is_a_401_and_books_nothing(
    service: Service,
) -> None:
    room = await service.room()
    (slot,) = await service.slots(room)
    long_subject = "u" * 256

    bad_email = await service.book(slot, headers=_token("no-address", "not an address"))
    long_sub = await service.book(slot, headers=_token(long_subject, "long@example.com"))

    assert "email claim is not an e-mail address" in problem(bad_email, 401)["detail"]
    assert "sub claim must be at most 255 characters" in problem(long_sub, 401)["detail"]
    assert await _bookings_of(service, "no-address") == 0
    assert await _bookings_of(service, long_subject) == 0
    assert await service.booked(slot.slot_id) == 0


async def test_readiness_names_its_checks_without_the_database_error(service: Service) -> None:
    url = make_url(service.settings.database_url)
    wrong_password = url.set(password="wrong").render_as_string(hide_password=False)
    app = create_app(
        service.settings.model_copy(update={"database_url": wrong_password, "role": Role.API})
    )
    (ready,) = await fetch_from(app, "/health/ready")

    assert ready.status_code == 503
    # PostgreSQL refused the password, naming the user: that stays in the log
    assert ready.json() == {"status": "unavailable", "checks": {"database": "failed"}}


async def test_the_documentation_and_metrics_can_be_switched_off(service: Service) -> None:
    app = create_app(
        service.settings.model_copy(
            update={"http_docs_enabled": False, "http_metrics_enabled": False}
        )
    )
    *hidden_documents, metrics = await fetch_from(app, "/docs", "/openapi.json", "/metrics")
    hidden = [response.status_code for response in hidden_documents]
    served = await service.http.get("/openapi.json")

    assert hidden == [404, 404]
    assert metrics.status_code == 404
    assert served.status_code == 200  # on by default
