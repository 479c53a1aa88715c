"""The rules a business sets per room, as the booking service applies them from RoomRulesSet:
each refusal is a 409 naming the rule and its limit, and changes nothing."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

from booking_contracts.catalogue import RoomRules, RoomRulesSet

from .conftest import ADMIN, START, Service, user


async def _at(service: Service, when: datetime) -> None:
    service.clock.now = when


def _refused(response: Any, rule: str, limit: str) -> dict[str, Any]:
    assert response.status_code == 409, response.text
    body: dict[str, Any] = response.json()
    assert (body["rule"], body["limit"]) == (rule, limit)
    assert body["type"] == "urn:problem:rule_broken"
    return body


async def test_a_booking_needs_the_rooms_notice_to_book(service: Service) -> None:
    room = await service.room()
    await service.rules(room, 1, book_notice_minutes=120)
    (slot,) = await service.slots(room)
    try:
        await _at(service, slot.starts_at - timedelta(minutes=119))
        late = await service.book(slot)
        booked_after_late = await service.booked(slot.slot_id)
        await _at(service, slot.starts_at - timedelta(minutes=120))
        in_time = await service.book(slot)
    finally:
        service.clock.now = START

    body = _refused(late, "book_notice", "2 h")
    assert body["detail"] == (
        "bookings in this room need at least 2 h notice; the slot starts in 119 min"
    )
    assert booked_after_late == 0  # the refusal took no place
    assert in_time.status_code == 201, in_time.text


async def test_a_booking_may_be_made_at_most_the_rooms_horizon_ahead(service: Service) -> None:
    room = await service.room()
    await service.rules(room, 1, horizon_minutes=7 * 24 * 60)
    (slot,) = await service.slots(room)  # weeks after START

    too_early = await service.book(slot)
    try:
        await _at(service, slot.starts_at - timedelta(days=7))
        in_reach = await service.book(slot)
    finally:
        service.clock.now = START

    body = _refused(too_early, "horizon", "7 days")
    assert "at most 7 days ahead" in body["detail"]
    assert in_reach.status_code == 201, in_reach.text


async def test_a_paid_booking_is_cancelled_by_its_user_only_with_the_rooms_notice(
    service: Service,
) -> None:
    room = await service.room()
    await service.rules(room, 1, cancel_notice_minutes=24 * 60)
    mine, theirs, unpaid = await service.slots(room, 3)
    booking = await service.confirmed(mine)
    other = await service.confirmed(theirs, "user-2")
    try:
        await _at(service, mine.starts_at - timedelta(hours=23))
        hold = await service.booking(unpaid)
        quote = await service.http.get(
            f"/bookings/{booking['id']}/refund-quote", headers=user("user-1")
        )
        refused = await service.http.post(
            f"/bookings/{booking['id']}/cancel", headers=user("user-1")
        )
        by_admin = await service.http.post(f"/bookings/{other['id']}/cancel", headers=ADMIN)
        let_go = await service.http.post(f"/bookings/{hold['id']}/cancel", headers=user("user-1"))
    finally:
        service.clock.now = START

    _refused(quote, "cancel_notice", "1 day")
    _refused(refused, "cancel_notice", "1 day")
    still = await service.http.get(f"/bookings/{booking['id']}", headers=user("user-1"))
    assert still.json()["status"] == "confirmed"
    assert await service.booked(mine.slot_id) == 1
    assert by_admin.status_code == 200  # staff act for their customers at any time
    assert by_admin.json()["cancelled_by"] == "admin"
    assert let_go.status_code == 200  # an unpaid hold may always be let go


async def test_a_booking_moves_as_often_as_the_room_allows_and_with_its_notice(
    service: Service,
) -> None:
    room = await service.room()
    await service.rules(room, 1, max_reschedules=1, reschedule_notice_minutes=60)
    first, second, third = await service.slots(room, 3, starts_at=service.day())
    booking = await service.confirmed(first)

    async def move(to: Any, who: dict[str, str]) -> Any:
        return await service.http.post(
            f"/bookings/{booking['id']}/reschedule", json={"slot_id": str(to.slot_id)}, headers=who
        )

    moved = await move(second, user("user-1"))
    again = await move(third, user("user-1"))
    by_staff = await move(third, ADMIN)  # staff act for their customers: no count binds them

    assert moved.status_code == 200, moved.text
    body = _refused(again, "max_reschedules", "1")
    assert body["detail"] == "a booking in this room may be moved 1 time; this one was moved 1 time"
    assert by_staff.status_code == 200, by_staff.text
    assert by_staff.json()["slot_id"] == str(third.slot_id)
    row = await service.row(
        "SELECT reschedules FROM bookings WHERE id = $1", uuid.UUID(booking["id"])
    )
    assert row == {"reschedules": 2}


async def test_a_user_moves_a_booking_only_with_the_rooms_notice(service: Service) -> None:
    room = await service.room()
    await service.rules(room, 1, reschedule_notice_minutes=60)
    first, second = await service.slots(room, 2, starts_at=service.day())
    booking = await service.confirmed(first)
    try:
        await _at(service, first.starts_at - timedelta(minutes=59))
        refused = await service.http.post(
            f"/bookings/{booking['id']}/reschedule",
            json={"slot_id": str(second.slot_id)},
            headers=user("user-1"),
        )
    finally:
        service.clock.now = START

    _refused(refused, "reschedule_notice", "1 h")
    assert await service.booked(first.slot_id) == 1
    assert await service.booked(second.slot_id) == 0


async def test_an_unpaid_booking_holds_its_place_as_long_as_its_room_says(
    service: Service,
) -> None:
    room, plain = await service.room(), await service.room()
    await service.rules(room, 1, hold_minutes=5)
    (slot,) = await service.slots(room)
    (other,) = await service.slots(plain)

    short = await service.booking(slot)
    default = await service.booking(other)

    held = datetime.fromisoformat(short["hold_expires_at"]) - START
    assert held == timedelta(minutes=5)
    assert datetime.fromisoformat(default["hold_expires_at"]) - START == timedelta(
        minutes=service.settings.hold_minutes
    )


async def test_a_cancellation_refunds_by_the_rooms_own_tiers(service: Service) -> None:
    room = await service.room()
    await service.rules(
        room,
        1,
        refund_tiers=[
            {"notice_minutes": 48 * 60, "percent": "100"},
            {"notice_minutes": 12 * 60, "percent": "25"},
        ],
    )
    (slot,) = await service.slots(room, price="40.00")
    booking = await service.confirmed(slot)
    try:
        await _at(service, slot.starts_at - timedelta(hours=30))  # 100 % by the platform's
        cancelled = await service.http.post(
            f"/bookings/{booking['id']}/cancel", headers=user("user-1")
        )
    finally:
        service.clock.now = START

    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["refund"] == {"amount": "10.00", "currency": "EUR"}


async def test_a_rule_change_applies_after_one_event_hop_and_an_older_one_never_undoes_it(
    service: Service,
) -> None:
    room = await service.room()
    old = await service.rules(room, 1, book_notice_minutes=0)
    (slot,) = await service.slots(room)
    await service.rules(room, 2, horizon_minutes=24 * 60)

    refused = await service.book(slot)
    await service.publish(old)  # a dead letter replayed late: version 1 < 2
    await service.publish(RoomRulesSet(room_id=room, rules=RoomRules(), room_version=2))
    await service.rules(room, 3, horizon_minutes=60 * 24 * 60)
    allowed = await service.book(slot)

    _refused(refused, "horizon", "1 day")
    assert allowed.status_code == 201, allowed.text
    row = await service.row("SELECT rules_version, horizon FROM rooms WHERE id = $1", room)
    assert row == {"rules_version": 3, "horizon": timedelta(days=60)}


async def test_rules_that_arrive_before_their_room_are_kept_when_it_arrives(
    service: Service,
) -> None:
    room_id = uuid.uuid4()
    await service.rules(room_id, 2, book_notice_minutes=24 * 60)
    await service.publish(service.room_event(room_id))
    await service.until(
        lambda: service.row("SELECT 1 FROM rooms WHERE id = $1 AND name <> ''", room_id)
    )
    (slot,) = await service.slots(room_id)
    try:
        await _at(service, slot.starts_at - timedelta(hours=1))
        refused = await service.book(slot)
    finally:
        service.clock.now = START

    _refused(refused, "book_notice", "1 day")


async def test_requests_that_arrive_together_are_refused_by_the_rule_each_on_its_own(
    service: Service,
) -> None:
    room = await service.room()
    await service.rules(room, 1, horizon_minutes=24 * 60)
    far = await service.slots(room, 5, max_bookings=3)  # weeks ahead of START

    responses = await asyncio.gather(
        *(service.book(slot, f"user-{i}") for i, slot in enumerate(far * 2))
    )

    for response in responses:
        _refused(response, "horizon", "1 day")
    for slot in far:
        assert await service.booked(slot.slot_id) == 0
