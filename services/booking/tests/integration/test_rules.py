"""The rules a business sets per room, as the booking service applies them from RoomRulesSet:
each refusal is a 409 naming the rule and its limit, and changes nothing."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from booking_contracts.catalogue import RoomRules, RoomRulesSet

from .conftest import ADMIN, START, Service, user

BROKERS = ("memory", "kafka")
"""The in-memory broker and the real one: this module is about delivery too (a rule change reaches
the service in one event hop)."""


async def _at(service: Service, when: datetime) -> None:
    service.clock.now = when


def refused_by(response: Any, rule: str, limit: str) -> dict[str, Any]:
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

    body = refused_by(late, "book_notice", "2 h")
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

    body = refused_by(too_early, "horizon", "7 days")
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

    refused_by(quote, "cancel_notice", "1 day")
    refused_by(refused, "cancel_notice", "1 day")
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
    body = refused_by(again, "max_reschedules", "1")
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

    refused_by(refused, "reschedule_notice", "1 h")
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

    refused_by(refused, "horizon", "1 day")
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

    refused_by(refused, "book_notice", "1 day")


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
        refused_by(response, "horizon", "1 day")
    for slot in far:
        assert await service.booked(slot.slot_id) == 0


# --- quotas ------------------------------------------------------------------------------


def berlin(text: str) -> datetime:
    """A local time of Berlin as the UTC instant the slot snapshots carry."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo("Europe/Berlin")).astimezone(UTC)


async def _slot_at(service: Service, room: uuid.UUID, local: str, places: int = 1) -> Any:
    (slot,) = await service.slots(room, starts_at=berlin(local), minutes=30, max_bookings=places)
    return slot


@pytest.mark.parametrize(
    ("per", "counted", "over", "next_window", "window"),
    [
        pytest.param(
            "day",
            ["2030-03-31T00:30"],  # still UTC+1
            "2030-03-31T23:00",  # UTC+2: a 23-hour day
            "2030-04-01T00:15",  # the same UTC date as the one over the quota
            "on 2030-03-31",
            id="day",
        ),
        pytest.param(
            "week",
            ["2030-03-25T00:30", "2030-03-31T23:00"],  # Sunday 23:30 UTC; after the change
            "2030-03-28T12:00",
            "2030-04-01T00:15",
            "in the week of 2030-03-25",
            id="week",
        ),
        pytest.param(
            "month",
            ["2030-10-01T00:30"],  # September in UTC
            "2030-10-31T23:00",  # after DST ended
            "2030-11-01T00:15",  # October in UTC
            "in October 2030",
            id="month",
        ),
    ],
)
async def test_a_quota_counts_its_window_of_the_rooms_calendar_across_a_dst_change(
    service: Service, per: str, counted: list[str], over: str, next_window: str, window: str
) -> None:
    room = await service.room(time_zone="Europe/Berlin")
    most = len(counted)
    await service.rules(room, 1, quotas=[{"most": most, "per": per}])
    firsts = [await _slot_at(service, room, local) for local in counted]
    one_more = await _slot_at(service, room, over)
    later = await _slot_at(service, room, next_window)
    member = f"member-{per}"

    made = [await service.book(slot, member) for slot in firsts]
    refused = await service.book(one_more, member)
    after = await service.book(later, member)

    assert [r.status_code for r in made] == [201] * most
    body = refused_by(refused, f"quota_per_{per}", f"{most} per {per}")
    assert body["detail"].endswith(f"you have {most} {window}")
    assert after.status_code == 201, after.text


async def test_a_quota_per_room_type_counts_every_room_of_the_type_that_carries_it(
    service: Service,
) -> None:
    gym, other_gym = await service.room(name="Gym A"), await service.room(name="Gym B")
    quota = [{"most": 1, "per": "week", "scope": "room_type"}]
    await service.rules(gym, 1, quotas=quota)
    await service.rules(other_gym, 1, quotas=quota)
    here = await _slot_at(service, gym, "2030-06-04T10:00")
    there = await _slot_at(service, other_gym, "2030-06-05T10:00")

    first = await service.book(here, "member-type")
    refused = await service.book(there, "member-type")
    someone_else = await service.book(there, "member-other")

    assert first.status_code == 201, first.text
    body = refused_by(refused, "quota_per_week", "1 per week")
    assert body["detail"] == (
        "rooms of type 'meeting' allow 1 booking per week; you have 1 in the week of 2030-06-03"
    )
    assert someone_else.status_code == 201  # quotas are per user


async def test_a_cancelled_or_expired_booking_gives_its_quota_back(service: Service) -> None:
    room = await service.room()
    await service.rules(room, 1, quotas=[{"most": 1, "per": "day"}])
    one = await _slot_at(service, room, "2030-07-02T09:00")
    two = await _slot_at(service, room, "2030-07-02T11:00")
    three = await _slot_at(service, room, "2030-07-02T13:00")

    first = (await service.book(one, "member-back")).json()
    await service.http.post(f"/bookings/{first['id']}/cancel", headers=user("member-back"))
    second = await service.book(two, "member-back")
    assert second.status_code == 201, second.text
    service.clock.now = START + timedelta(minutes=service.settings.hold_minutes, seconds=1)
    try:
        await service.status(second.json()["id"], "expired")
        third = await service.book(three, "member-back")
    finally:
        service.clock.now = START

    assert third.status_code == 201, third.text
    counts = await service.row(
        "SELECT used FROM quota_counts WHERE user_id = 'member-back' AND scope LIKE 'room:%'"
    )
    assert counts == {"used": 1}


async def test_a_move_counts_where_it_lands_and_gives_back_where_it_left(
    service: Service,
) -> None:
    room = await service.room()
    await service.rules(room, 1, quotas=[{"most": 1, "per": "day"}])
    monday = await _slot_at(service, room, "2030-08-05T09:00")
    monday_later = await _slot_at(service, room, "2030-08-05T15:00")
    tuesday = await _slot_at(service, room, "2030-08-06T09:00")
    tuesday_later = await _slot_at(service, room, "2030-08-06T15:00")
    booking = await service.confirmed(monday, "member-move")
    other = await service.confirmed(tuesday_later, "member-move")

    refused = await service.http.post(
        f"/bookings/{other['id']}/reschedule",
        json={"slot_id": str(monday_later.slot_id)},
        headers=user("member-move"),
    )
    freed_monday = await service.http.post(
        f"/bookings/{booking['id']}/cancel", headers=user("member-move")
    )
    moved = await service.http.post(
        f"/bookings/{other['id']}/reschedule",
        json={"slot_id": str(monday_later.slot_id)},
        headers=user("member-move"),
    )
    tuesday_again = await service.book(tuesday, "member-move")

    refused_by(refused, "quota_per_day", "1 per day")
    assert freed_monday.status_code == 200
    assert moved.status_code == 200, moved.text
    assert tuesday_again.status_code == 201, tuesday_again.text  # Tuesday's count went back


# --- availability "for me" ---------------------------------------------------------------


async def test_availability_for_me_lists_only_what_the_caller_could_book_now(
    service: Service,
) -> None:
    room = await service.room(time_zone="Europe/Berlin")
    await service.rules(room, 1, book_notice_minutes=120, quotas=[{"most": 2, "per": "day"}])
    await _slot_at(service, room, "2030-09-03T07:30")  # too soon: the clock says 06:00 there
    full = await _slot_at(service, room, "2030-09-03T10:00")
    mine = await _slot_at(service, room, "2030-09-03T11:00", places=2)
    free = await _slot_at(service, room, "2030-09-03T12:00", places=3)
    other_day = await _slot_at(service, room, "2030-09-04T12:00")
    service.clock.now = berlin("2030-09-03T06:00")  # the holds below last past the test

    async def bookable(who: str, day: str = "2030-09-03") -> list[str]:
        response = await service.http.get(
            f"/rooms/{room}/bookable", params={"date": day}, headers=user(who)
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["room_id"], body["time_zone"]) == (str(room), "Europe/Berlin")
        return [item["slot_id"] for item in body["items"]]

    try:
        await service.booking(full, "someone-else")
        await service.booking(mine, "member-avail")
        before = await bookable("member-avail")
        for_someone_new = await bookable("member-new")
        await service.booking(free, "member-avail")  # the second of the day: quota reached
        after = await bookable("member-avail")
        next_day = await bookable("member-avail", "2030-09-04")
        unknown = await service.http.get(
            f"/rooms/{uuid.uuid4()}/bookable",
            params={"date": "2030-09-03"},
            headers=user("member-avail"),
        )
    finally:
        service.clock.now = START

    assert before == [str(free.slot_id)]  # not the one too soon, the full one or the one held
    assert for_someone_new == [str(mine.slot_id), str(free.slot_id)]
    assert after == []
    assert next_day == [str(other_day.slot_id)]
    assert unknown.status_code == 404


async def test_a_rule_change_never_touches_a_booking_made_before_it(service: Service) -> None:
    room = await service.room()
    await service.rules(room, 1, max_reschedules=5)
    before, after, spare = await service.slots(room, 3, price="40.00", max_bookings=2)
    earlier = await service.confirmed(before, "member-terms")
    await service.rules(
        room,
        2,
        cancel_notice_minutes=48 * 60,
        max_reschedules=0,
        refund_tiers=[{"notice_minutes": 72 * 60, "percent": "100"}],
    )
    later = await service.confirmed(after, "member-terms")
    try:
        await _at(service, before.starts_at - timedelta(hours=30))
        moved_earlier = await service.http.post(
            f"/bookings/{earlier['id']}/reschedule",
            json={"slot_id": str(spare.slot_id)},
            headers=user("member-terms"),
        )
        cancelled_earlier = await service.http.post(
            f"/bookings/{earlier['id']}/cancel", headers=user("member-terms")
        )
        cancelled_later = await service.http.post(
            f"/bookings/{later['id']}/cancel", headers=user("member-terms")
        )
    finally:
        service.clock.now = START

    assert moved_earlier.status_code == 200, moved_earlier.text  # made when 5 moves were allowed
    assert cancelled_earlier.status_code == 200, cancelled_earlier.text
    # the platform's tiers it was paid under: 30 h before its paid start is 100 %
    assert cancelled_earlier.json()["refund"] == {"amount": "40.00", "currency": "EUR"}
    refused_by(cancelled_later, "cancel_notice", "2 days")
