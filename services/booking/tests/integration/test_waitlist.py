"""The waitlist on the real database and broker: a freed place goes to the first waiter, once,
in order, and is held for them against everyone else; offers lapse down the line; waiters
who got a place at that time another way are passed over; lines close at the start."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

from booking.domain import WaitlistStatus
from booking.models import allowed_waitlist_changes
from booking_contracts import topics
from booking_contracts.catalogue import SlotChanged, SlotSnapshot
from tests.support.triggers import allowed_changes

from .conftest import START, Service, types, user

BROKERS = ("memory", "kafka")
"""The in-memory broker and the real one: this module is about delivery too (the waitlist's events,
in order and once)."""


async def _join(service: Service, slot: SlotSnapshot, who: str) -> Any:
    return await service.http.post(f"/slots/{slot.slot_id}/waitlist", headers=user(who))


async def _mine(service: Service, slot: SlotSnapshot, who: str) -> dict[str, Any]:
    response = await service.http.get(f"/slots/{slot.slot_id}/waitlist", headers=user(who))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _line_events(service: Service, slot: SlotSnapshot, at_least: int) -> list[dict[str, Any]]:
    return await service.envelopes_about(
        topics.BOOKING_EVENTS, str(slot.slot_id), at_least=at_least
    )


async def _full_slot(
    service: Service, places: int = 1
) -> tuple[SlotSnapshot, list[dict[str, Any]]]:
    room = await service.room()
    (slot,) = await service.slots(room, max_bookings=places)
    holders = [
        await service.confirmed(slot, f"holder-{uuid.uuid4().hex[:6]}") for _ in range(places)
    ]
    return slot, holders


async def test_a_freed_place_goes_down_the_line_until_someone_books_it(service: Service) -> None:
    slot, (holder,) = await _full_slot(service)
    ann, bob, cat = (f"{name}-{uuid.uuid4().hex[:6]}" for name in ("ann", "bob", "cat"))
    joined = [await _join(service, slot, who) for who in (ann, bob, cat)]

    cancelled = await service.http.post(
        f"/bookings/{holder['id']}/cancel", headers=user(holder["user_id"])
    )
    offer = await _mine(service, slot, ann)
    events = await _line_events(service, slot, at_least=4)
    made = next(e for e in events if e["type"] == "WaitlistOfferMade.v1")["data"]
    taken_meanwhile = await service.book(slot, "someone-else")

    service.clock.now = datetime.fromisoformat(offer["offer_expires_at"]) + timedelta(seconds=1)
    try:
        bob_offer = await service.until(lambda: _offered(service, slot, bob))
        booked = await service.http.post(
            "/bookings",
            json={"slot_id": str(slot.slot_id), "offer_id": bob_offer["entry_id"]},
            headers=user(bob),
        )
        assert booked.status_code == 201, booked.text
        await service.pay(booked.json())
        await service.status(booked.json()["id"], "confirmed")
        cat_place = await _mine(service, slot, cat)
    finally:
        service.clock.now = START

    assert [r.status_code for r in joined] == [201, 201, 201]
    assert [r.json()["position"] for r in joined] == [1, 2, 3]
    assert cancelled.status_code == 200
    assert offer["status"] == "offered"
    assert offer["position"] is None
    assert made["user_id"] == ann
    assert made["contact"]["email"]
    assert made["starts_at"].startswith(slot.starts_at.strftime("%Y-%m-%dT%H:%M"))
    assert made["room_name"] == "Room 7"
    assert made["room_time_zone"] == "Europe/Berlin"
    assert taken_meanwhile.status_code == 409  # the place is held for the waiter
    assert await service.booked(slot.slot_id) == 1
    assert cat_place["status"] == "waiting"
    assert cat_place["position"] == 1
    lapsed = await service.row(
        "SELECT status FROM waitlist_entries WHERE user_id = $1 AND slot_id = $2", ann, slot.slot_id
    )
    assert lapsed == {"status": "lapsed"}
    line = types(await _line_events(service, slot, at_least=8))
    assert line.count("WaitlistOfferMade.v1") == 2
    assert "WaitlistOfferLapsed.v1" in line
    assert "WaitlistOfferTaken.v1" in line


async def _offered(service: Service, slot: SlotSnapshot, who: str) -> dict[str, Any] | None:
    response = await service.http.get(f"/slots/{slot.slot_id}/waitlist", headers=user(who))
    body: dict[str, Any] = response.json()
    return body if response.status_code == 200 and body["status"] == "offered" else None


async def test_a_freed_place_racing_fifty_bookings_is_held_for_the_waiter(service: Service) -> None:
    slot, (holder,) = await _full_slot(service)
    waiter = f"waiter-{uuid.uuid4().hex[:6]}"
    await _join(service, slot, waiter)

    cancel = service.http.post(f"/bookings/{holder['id']}/cancel", headers=user(holder["user_id"]))
    racing = [service.book(slot, f"racer-{i}") for i in range(50)]
    answers = await asyncio.gather(cancel, *racing)

    assert answers[0].status_code == 200
    assert [r.status_code for r in answers[1:]] == [409] * 50
    offer = await _mine(service, slot, waiter)
    assert offer["status"] == "offered"
    assert await service.booked(slot.slot_id) == 1
    offers = await service.row(
        "SELECT count(*) AS n FROM waitlist_entries WHERE slot_id = $1 AND status = 'offered'",
        slot.slot_id,
    )
    assert offers == {"n": 1}


async def test_a_waiter_who_got_a_place_at_that_time_another_way_is_passed_over(
    service: Service,
) -> None:
    slot, (holder,) = await _full_slot(service)
    room = uuid.UUID(holder["room_id"])
    (same_time,) = await service.slots(room, starts_at=slot.starts_at + timedelta(minutes=30))
    first, second = f"first-{uuid.uuid4().hex[:6]}", f"second-{uuid.uuid4().hex[:6]}"
    await _join(service, slot, first)
    await _join(service, slot, second)
    await service.booking(same_time, first)  # overlaps the slot they wait for

    await service.http.post(f"/bookings/{holder['id']}/cancel", headers=user(holder["user_id"]))

    assert (await _mine(service, slot, second))["status"] == "offered"
    gone = await service.http.get(f"/slots/{slot.slot_id}/waitlist", headers=user(first))
    assert gone.status_code == 404
    skipped = next(
        e["data"]
        for e in await _line_events(service, slot, at_least=4)
        if e["type"] == "WaitlistLeft.v1"
    )
    assert (skipped["user_id"], skipped["reason"]) == (first, "skipped")


async def test_declining_passes_the_place_on_and_with_nobody_left_it_goes_back_to_sale(
    service: Service,
) -> None:
    slot, (holder,) = await _full_slot(service)
    waiter = f"decliner-{uuid.uuid4().hex[:6]}"
    await _join(service, slot, waiter)
    await service.http.post(f"/bookings/{holder['id']}/cancel", headers=user(holder["user_id"]))
    assert (await _mine(service, slot, waiter))["status"] == "offered"

    declined = await service.http.delete(f"/slots/{slot.slot_id}/waitlist", headers=user(waiter))
    after = await service.book(slot, "walk-in")

    assert declined.status_code == 200
    assert declined.json()["status"] == "left"
    assert after.status_code == 201, after.text  # nobody waits: the place is for sale again
    event = next(
        e["data"]
        for e in await _line_events(service, slot, at_least=4)
        if e["type"] == "WaitlistLeft.v1"
    )
    assert event["declined_offer"] is True


async def test_joining_is_refused_with_the_reason_and_changes_nothing(service: Service) -> None:
    room = await service.room()
    (open_slot,) = await service.slots(room, max_bookings=2)
    slot, (holder,) = await _full_slot(service)
    who = f"joiner-{uuid.uuid4().hex[:6]}"

    with_places = await _join(service, open_slot, who)
    first = await _join(service, slot, who)
    again = await _join(service, slot, who)
    holder_joins = await _join(service, slot, holder["user_id"])
    unknown = await service.http.post(f"/slots/{uuid.uuid4()}/waitlist", headers=user(who))
    not_in_line = await service.http.get(f"/slots/{open_slot.slot_id}/waitlist", headers=user(who))
    left = await service.http.delete(f"/slots/{slot.slot_id}/waitlist", headers=user(who))

    assert with_places.status_code == 409
    assert "1 place left" not in with_places.text
    assert "2 places left" in with_places.text
    assert first.status_code == 201
    assert again.status_code == 409
    assert "already" in again.json()["detail"]
    assert holder_joins.status_code == 409
    assert unknown.status_code == 404
    assert not_in_line.status_code == 404
    assert left.status_code == 200
    assert left.json()["status"] == "left"


async def test_one_user_waits_in_at_most_the_allowed_number_of_lines(service: Service) -> None:
    who = f"queuer-{uuid.uuid4().hex[:6]}"
    most = service.settings.max_waitlists
    full = [(await _full_slot(service))[0] for _ in range(most + 1)]

    answers = await asyncio.gather(*(_join(service, slot, who) for slot in full))

    assert sorted(r.status_code for r in answers) == [201] * most + [409]
    refused = next(r for r in answers if r.status_code == 409)
    assert "the most allowed" in refused.json()["detail"]


async def test_raised_capacity_goes_to_the_line_first(service: Service) -> None:
    slot, _ = await _full_slot(service)
    waiter = f"capacity-{uuid.uuid4().hex[:6]}"
    await _join(service, slot, waiter)

    bigger = slot.model_copy(update={"max_bookings": 3, "revision": 2})
    await service.publish(SlotChanged(room_id=slot.room_id, slot=bigger))
    offer = await service.until(lambda: _offered(service, slot, waiter))

    assert offer["status"] == "offered"
    assert await service.booked(slot.slot_id) == 2  # the holder's place and the offer's


async def test_a_line_closes_when_its_slot_starts(service: Service) -> None:
    slot, _ = await _full_slot(service)
    waiter = f"late-{uuid.uuid4().hex[:6]}"
    await _join(service, slot, waiter)

    service.clock.now = slot.starts_at
    try:
        await service.until(
            lambda: service.row(
                "SELECT 1 FROM waitlist_entries WHERE user_id = $1 AND status = 'expired'", waiter
            ),
        )
    finally:
        service.clock.now = START

    assert "WaitlistExpired.v1" in types(await _line_events(service, slot, at_least=2))


async def test_the_database_allows_exactly_the_entry_changes_the_domain_allows(
    service: Service,
) -> None:
    slot, _ = await _full_slot(service)
    entry_id = uuid.UUID((await _join(service, slot, "trigger-probe")).json()["entry_id"])
    booking_id = (await service.row("SELECT id FROM bookings LIMIT 1") or {})["id"]
    allowed = await allowed_changes(
        service.db,
        "waitlist_entries",
        [s.value for s in WaitlistStatus],
        "UPDATE waitlist_entries SET status = $2::text, offer_expires_at = "
        "CASE WHEN $2::text = 'offered' THEN now() END, booking_id = CASE WHEN "
        "$2::text = 'booked' THEN $3::uuid END WHERE id = $1",
        entry_id,
        booking_id,
    )

    assert allowed == set(allowed_waitlist_changes())


async def test_only_the_waiter_books_with_their_offer_and_only_once(service: Service) -> None:
    slot, (holder,) = await _full_slot(service)
    waiter = f"taker-{uuid.uuid4().hex[:6]}"
    await _join(service, slot, waiter)
    await service.http.post(f"/bookings/{holder['id']}/cancel", headers=user(holder["user_id"]))
    offer = await _mine(service, slot, waiter)
    body = {"slot_id": str(slot.slot_id), "offer_id": offer["entry_id"]}
    key = {"Idempotency-Key": f"offer-{offer['entry_id']}"}

    stolen = await service.http.post("/bookings", json=body, headers=user("thief"))
    first = await service.http.post("/bookings", json=body, headers=user(waiter) | key)
    retried = await service.http.post("/bookings", json=body, headers=user(waiter) | key)
    again = await service.http.post("/bookings", json=body, headers=user(waiter))
    not_in_line = await service.http.delete(
        f"/slots/{slot.slot_id}/waitlist", headers=user("thief")
    )

    assert stolen.status_code == 404
    assert first.status_code == 201, first.text
    assert retried.status_code == 201
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert retried.json()["id"] == first.json()["id"]
    assert again.status_code == 409
    assert "the offer is over (booked)" in again.json()["detail"]
    assert not_in_line.status_code == 404
    assert await service.booked(slot.slot_id) == 1


async def test_a_place_freed_by_an_expired_hold_or_a_failed_payment_goes_to_the_line(
    service: Service,
) -> None:
    room = await service.room()
    expiring, declined = await service.slots(room, 2, max_bookings=1)
    unpaid = await service.booking(expiring, f"unpaid-{uuid.uuid4().hex[:6]}")
    card_declined = await service.booking(declined, f"declined-{uuid.uuid4().hex[:6]}")
    first, second = f"exp-{uuid.uuid4().hex[:6]}", f"dec-{uuid.uuid4().hex[:6]}"
    await _join(service, expiring, first)
    await _join(service, declined, second)

    await service.fail_payment(card_declined)
    offer_after_failure = await service.until(lambda: _offered(service, declined, second))
    held_after_failure = await service.booked(declined.slot_id)
    service.clock.now = datetime.fromisoformat(unpaid["hold_expires_at"]) + timedelta(seconds=1)
    try:
        offer_after_expiry = await service.until(lambda: _offered(service, expiring, first))
    finally:
        service.clock.now = START

    assert offer_after_failure["status"] == "offered"
    assert offer_after_expiry["status"] == "offered"
    assert await service.booked(expiring.slot_id) == 1
    assert held_after_failure == 1
