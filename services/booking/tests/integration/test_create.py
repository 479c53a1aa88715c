"""Creating bookings: holds, refusals, idempotency and capacity under concurrency."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from booking.domain import BookingStatus
from booking.models import allowed_status_pairs
from booking_contracts.catalogue import RoomDeactivated, SlotChanged, SlotStatus
from platform_runtime.settings import DEV_JWT_SECRET
from platform_runtime.tokens import issue_token
from tests.support.triggers import allowed_changes

from .conftest import START, Service, types, user


async def test_a_booking_holds_a_place_until_its_hold_expires_and_is_announced(
    service: Service,
) -> None:
    room = await service.room()
    (slot,) = await service.slots(room, price="35.50")

    response = await service.book(
        slot, notes="window seat", contact={"phone": "+4915112345678"}, attributes={"k": 1}
    )
    booking = response.json()
    events = await service.events(booking["id"], at_least=1)

    assert response.status_code == 201
    assert booking["status"] == "pending"
    assert booking["payment_status"] == "pending"
    assert booking["price"] == {"amount": "35.50", "currency": "EUR"}
    assert booking["hold_expires_at"] == (START + timedelta(minutes=15)).isoformat().replace(
        "+00:00", "Z"
    )
    assert booking["contact"] == {"email": "user-1@example.com", "phone": "+4915112345678"}
    assert booking["notes"] == "window seat"
    assert await service.booked(slot.slot_id) == 1
    assert types(events) == ["BookingCreated.v1"]
    assert events[0]["data"]["price"] == {"amount": "35.50", "currency": "EUR"}
    assert events[0]["data"]["hold_expires_at"] == booking["hold_expires_at"]


async def test_a_hold_never_outlasts_the_start_of_its_slot(service: Service) -> None:
    room = await service.room()
    (slot,) = await service.slots(room, starts_at=START + timedelta(minutes=5))

    booking = await service.booking(slot)

    assert booking["hold_expires_at"] == slot.starts_at.isoformat().replace("+00:00", "Z")


async def test_a_full_slot_is_409_and_changes_nothing(service: Service) -> None:
    room = await service.room()
    (slot,) = await service.slots(room, max_bookings=1)
    await service.booking(slot, "user-1")

    response = await service.book(slot, "user-2")

    assert response.status_code == 409
    assert "is full" in response.json()["detail"]
    assert await service.booked(slot.slot_id) == 1


async def test_the_same_user_cannot_hold_two_places_in_one_slot(service: Service) -> None:
    room = await service.room()
    (slot,) = await service.slots(room, max_bookings=5)
    await service.booking(slot, "user-1")

    again = await service.book(slot, "user-1")

    assert again.status_code == 409
    assert "already hold a place" in again.json()["detail"]
    assert await service.booked(slot.slot_id) == 1


async def test_a_blocked_or_started_slot_or_an_inactive_room_is_409(service: Service) -> None:
    room = await service.room()
    blocked, started = await service.slots(room, 2)
    (early,) = await service.slots(room, starts_at=START - timedelta(hours=1))
    await service.publish(
        SlotChanged(
            room_id=room,
            slot=blocked.model_copy(update={"status": SlotStatus.BLOCKED, "revision": 2}),
        )
    )
    await service.until(
        lambda: service.row(
            "SELECT 1 FROM slots WHERE id = $1 AND status = 'blocked'", blocked.slot_id
        )
    )
    closed = await service.room()
    (inactive,) = await service.slots(closed)
    await service.publish(RoomDeactivated(room_id=closed, deactivated_at=START))
    await service.until(
        lambda: service.row("SELECT 1 FROM rooms WHERE id = $1 AND NOT active", closed)
    )

    answers = {
        name: await service.book(slot)
        for name, slot in [("blocked", blocked), ("early", early), ("inactive", inactive)]
    }

    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(answers, 409)
    assert "is blocked" in answers["blocked"].json()["detail"]
    assert "already started" in answers["early"].json()["detail"]
    assert "inactive" in answers["inactive"].json()["detail"]
    assert await service.booked(started.slot_id) == 0


async def test_a_slot_whose_room_is_not_known_yet_is_409_and_an_unknown_slot_404(
    service: Service,
) -> None:
    orphan_room = uuid.uuid4()  # its RoomUpserted has not arrived
    (orphan,) = await service.slots(orphan_room)

    not_yet = await service.book(orphan)
    unknown = await service.http.post(
        "/bookings", json={"slot_id": str(uuid.uuid4())}, headers=user("user-1")
    )

    assert not_yet.status_code == 409
    assert "not known here yet" in not_yet.json()["detail"]
    assert unknown.status_code == 404
    assert unknown.json()["type"] == "urn:problem:slot_not_found"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"contact": {"phone": "0151 123"}}, "pattern"),
        ({"contact": {"email": "not-an-email"}}, "email"),
        ({"surprise": True}, "Extra inputs"),
        ({"booking_type": ""}, "at least 1"),
    ],
)
async def test_invalid_input_is_422_and_holds_nothing(
    service: Service, body: dict[str, Any], reason: str
) -> None:
    room = await service.room()
    (slot,) = await service.slots(room)

    response = await service.book(slot, **body)

    assert response.status_code == 422
    assert reason in response.text
    assert await service.booked(slot.slot_id) == 0


async def test_a_token_without_email_needs_a_contact_email_to_book_or_queue(
    service: Service,
) -> None:
    room = await service.room()
    (slot,) = await service.slots(room, max_bookings=1)
    no_email = {
        "Authorization": "Bearer "
        + issue_token(secret_or_private_key=DEV_JWT_SECRET, subject="kiosk-1", roles=[])
    }
    await service.booking(slot, "user-1")  # full: the kiosk user may queue

    refused = await service.http.post(
        "/bookings", json={"slot_id": str(slot.slot_id)}, headers=no_email
    )
    not_queued = await service.http.post(f"/slots/{slot.slot_id}/waitlist", headers=no_email)
    queued = await service.http.post(
        f"/slots/{slot.slot_id}/waitlist",
        json={"contact": {"email": "kiosk@example.com", "phone": "+4930123456"}},
        headers=no_email,
    )

    for response in (refused, not_queued):
        assert response.status_code == 422
        assert "give contact.email: the token carries no email" in response.json()["detail"]
    assert queued.status_code == 201, queued.text
    assert await service.row(
        "SELECT contact_email, contact_phone FROM waitlist_entries WHERE user_id = 'kiosk-1'"
    ) == {"contact_email": "kiosk@example.com", "contact_phone": "+4930123456"}
    assert await service.booked(slot.slot_id) == 1


async def test_booking_needs_a_token(service: Service) -> None:
    response = await service.http.post("/bookings", json={"slot_id": str(uuid.uuid4())})

    assert response.status_code == 401


async def test_a_retried_request_with_the_same_idempotency_key_returns_the_same_booking(
    service: Service,
) -> None:
    room = await service.room()
    (slot,) = await service.slots(room, max_bookings=3)
    key = {"Idempotency-Key": f"key-{uuid.uuid4()}"}

    first = await service.book(slot, headers=key)
    again = await service.book(slot, headers=key)
    other_user = await service.book(slot, "user-2", headers=key)
    different = await service.book(slot, headers=key, notes="changed my mind")

    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert other_user.json()["id"] != first.json()["id"]  # keys are per user
    assert different.status_code == 422
    assert "different request" in different.json()["detail"]
    assert await service.booked(slot.slot_id) == 2


async def test_concurrent_retries_with_one_idempotency_key_make_one_booking(
    service: Service,
) -> None:
    room = await service.room()
    (slot,) = await service.slots(room, max_bookings=10)
    key = {"Idempotency-Key": f"key-{uuid.uuid4()}"}

    responses = await asyncio.gather(*(service.book(slot, headers=key) for _ in range(8)))

    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert await service.booked(slot.slot_id) == 1


async def test_two_hundred_concurrent_requests_for_three_places_make_three_bookings(
    service: Service,
) -> None:
    room = await service.room()
    (slot,) = await service.slots(room, max_bookings=3)

    responses = await asyncio.gather(*(service.book(slot, f"crowd-{i}") for i in range(200)))

    assert Counter(r.status_code for r in responses) == {201: 3, 409: 197}
    assert await service.booked(slot.slot_id) == 3
    count = await service.row("SELECT count(*) AS n FROM bookings WHERE slot_id = $1", slot.slot_id)
    assert count == {"n": 3}


async def test_the_database_refuses_more_bookings_than_places_and_invalid_transitions(
    service: Service,
) -> None:
    room = await service.room()
    (slot,) = await service.slots(room, max_bookings=1)
    booking = await service.booking(slot)

    with pytest.raises(asyncpg.CheckViolationError, match="within_capacity"):
        await service.db.execute(
            "UPDATE slots SET booked_count = booked_count + 1 WHERE id = $1", slot.slot_id
        )
    with pytest.raises(asyncpg.CheckViolationError, match="cannot go from pending to completed"):
        await service.db.execute(
            "UPDATE bookings SET status = 'completed' WHERE id = $1", uuid.UUID(booking["id"])
        )
    async with service.db.acquire() as connection, connection.transaction():
        await connection.execute(
            "CREATE TEMP TABLE copy ON COMMIT DROP AS SELECT * FROM bookings WHERE id = $1",
            uuid.UUID(booking["id"]),
        )
        await connection.execute(
            "UPDATE copy SET id = gen_random_uuid(), user_id = 'x', status = 'confirmed'"
        )
        with pytest.raises(asyncpg.CheckViolationError, match="starts pending, not confirmed"):
            await connection.execute("INSERT INTO bookings SELECT * FROM copy")


async def test_the_database_allows_exactly_the_transitions_of_the_state_machine(
    service: Service,
) -> None:
    room = await service.room()
    (slot,) = await service.slots(room, max_bookings=1)
    booking_id = uuid.UUID((await service.booking(slot, "trigger-probe"))["id"])
    allowed = await allowed_changes(
        service.db,
        "bookings",
        [s.value for s in BookingStatus],
        "UPDATE bookings SET status = $2 WHERE id = $1",
        booking_id,
    )

    assert allowed == set(allowed_status_pairs())
    assert ("pending", "confirmed") in allowed
    assert ("cancelled", "confirmed") not in allowed
