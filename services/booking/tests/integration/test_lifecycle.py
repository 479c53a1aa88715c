"""Cancel with refunds, reschedule, complete and no-show, reading bookings, inventory order."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from booking_contracts import topics
from booking_contracts.catalogue import RoomDeactivated, SlotChanged, SlotStatus
from booking_contracts.envelope import Envelope

from .conftest import ADMIN, START, Service, types, user


async def _cancel(service: Service, booking: dict[str, Any], who: dict[str, str]) -> Any:
    return await service.http.post(
        f"/bookings/{booking['id']}/cancel", json={"reason": "plans changed"}, headers=who
    )


@pytest.mark.parametrize(
    ("notice", "percent", "refund"),
    [
        (timedelta(hours=24), "100", "40.00"),
        (timedelta(hours=23, minutes=59), "50", "20.00"),
        (timedelta(hours=6), "50", "20.00"),
        (timedelta(hours=5, minutes=59), "0", None),
    ],
)
async def test_cancelling_refunds_by_the_time_left_before_the_start(
    service: Service, notice: timedelta, percent: str, refund: str | None
) -> None:
    room = await service.room()
    (slot,) = await service.slots(room, price="40.00")
    booking = await service.confirmed(slot)
    service.clock.now = slot.starts_at - notice
    try:
        quote = await service.http.get(
            f"/bookings/{booking['id']}/refund-quote", headers=user("user-1")
        )
        cancelled = await _cancel(service, booking, user("user-1"))
    finally:
        service.clock.now = START
    events = await service.events(booking["id"], at_least=4 if refund else 3)

    assert quote.json()["percent"] == percent
    assert cancelled.status_code == 200
    body = cancelled.json()
    assert body["status"] == "cancelled"
    assert body["cancelled_by"] == "user"
    assert body["cancellation_reason"] == "plans changed"
    assert await service.booked(slot.slot_id) == 0
    cancel_event = next(e for e in events if e["type"] == "BookingCancelled.v1")
    if refund is None:
        assert body["refund"] is None
        assert body["payment_status"] == "paid"
        assert cancel_event["data"]["refund"] is None
        assert "RefundRequested.v1" not in types(events)
    else:
        assert body["refund"] == {"amount": refund, "currency": "EUR"}
        assert body["payment_status"] == "refund_pending"  # until the payment service answers
        refund_event = next(e for e in events if e["type"] == "RefundRequested.v1")
        assert refund_event["data"]["amount"] == {"amount": refund, "currency": "EUR"}
        assert refund_event["data"]["payment_id"] == booking["payment_id"]


async def test_cancelling_an_unpaid_booking_refunds_nothing(service: Service) -> None:
    room = await service.room()
    (slot,) = await service.slots(room)
    booking = await service.booking(slot)

    cancelled = await _cancel(service, booking, user("user-1"))
    events = await service.events(booking["id"], at_least=2, settle_s=1.0)

    assert cancelled.json()["refund"] is None
    assert types(events) == ["BookingCreated.v1", "BookingCancelled.v1"]


async def test_an_admin_cancellation_refunds_everything_even_at_the_last_minute(
    service: Service,
) -> None:
    room = await service.room()
    (slot,) = await service.slots(room, price="40.00")
    booking = await service.confirmed(slot)
    service.clock.now = slot.starts_at - timedelta(minutes=10)
    try:
        cancelled = await _cancel(service, booking, ADMIN)
    finally:
        service.clock.now = START

    assert cancelled.json()["cancelled_by"] == "admin"
    assert cancelled.json()["refund"] == {"amount": "40.00", "currency": "EUR"}


async def test_only_the_owner_or_an_admin_may_cancel_and_only_once(service: Service) -> None:
    room = await service.room()
    (slot,) = await service.slots(room)
    booking = await service.booking(slot)

    stranger = await _cancel(service, booking, user("someone-else"))
    first = await _cancel(service, booking, user("user-1"))
    second = await _cancel(service, booking, user("user-1"))
    quote = await service.http.get(
        f"/bookings/{booking['id']}/refund-quote", headers=user("user-1")
    )

    assert stranger.status_code == 404
    assert first.status_code == 200
    assert second.status_code == 409
    assert second.json()["detail"] == (
        "cannot cancel a booking that is cancelled (only when confirmed, pending)"
    )
    assert quote.status_code == 409


async def test_a_confirmed_booking_moves_to_another_slot_of_its_room_atomically(
    service: Service,
) -> None:
    room = await service.room(time_zone="Europe/Paris")
    old, new = await service.slots(room, 2, price="30.00")
    (cheaper,) = await service.slots(room, price="25.00")
    booking = await service.confirmed(old)

    moved = await service.http.post(
        f"/bookings/{booking['id']}/reschedule",
        json={"slot_id": str(new.slot_id)},
        headers=user("user-1"),
    )
    again = await service.http.post(
        f"/bookings/{booking['id']}/reschedule",
        json={"slot_id": str(cheaper.slot_id)},
        headers=user("user-1"),
    )
    events = await service.events(booking["id"], at_least=5)

    assert moved.status_code == 200
    assert moved.json()["slot_id"] == str(new.slot_id)
    assert moved.json()["status"] == "confirmed"
    assert [await service.booked(s.slot_id) for s in (old, new, cheaper)] == [0, 0, 1]
    rescheduled = [e["data"] for e in events if e["type"] == "BookingRescheduled.v1"]
    assert rescheduled[0]["price_difference"] == {"amount": "0.00", "currency": "EUR"}
    assert rescheduled[1]["price_difference"] == {"amount": "-5.00", "currency": "EUR"}
    assert rescheduled[1]["old_slot_id"] == str(new.slot_id)
    assert rescheduled[1]["room_time_zone"] == "Europe/Paris"
    assert again.json()["starts_at"] == cheaper.starts_at.isoformat().replace("+00:00", "Z")


async def test_a_reschedule_that_cannot_happen_changes_nothing(service: Service) -> None:
    room = await service.room()
    current, full, free = await service.slots(room, 3)
    other_room = await service.room()
    (elsewhere,) = await service.slots(other_room)
    booking = await service.confirmed(current)
    await service.booking(full, "someone-else")
    pending = await service.booking(free, "user-2")

    async def move(target: uuid.UUID, who: str = "user-1", bid: str = booking["id"]) -> Any:
        return await service.http.post(
            f"/bookings/{bid}/reschedule", json={"slot_id": str(target)}, headers=user(who)
        )

    to_full = await move(full.slot_id)
    to_elsewhere = await move(elsewhere.slot_id)
    to_same = await move(current.slot_id)
    to_unknown = await move(uuid.uuid4())
    unpaid = await move(current.slot_id, "user-2", pending["id"])
    counts = [await service.booked(s.slot_id) for s in (current, full, free)]
    service.clock.now = current.starts_at  # (the hold sweeper may now expire the holds)
    try:
        started = await move(free.slot_id)
    finally:
        service.clock.now = START

    assert to_full.status_code == 409
    assert to_elsewhere.status_code == 422
    assert to_same.status_code == 422
    assert to_unknown.status_code == 404
    assert unpaid.status_code == 409
    assert "pending" in unpaid.json()["detail"]
    assert started.status_code == 409
    assert "already started" in started.json()["detail"]
    assert counts == [1, 1, 1]
    assert await service.booked(current.slot_id) == 1


async def test_admins_complete_or_mark_no_shows_once_the_slot_has_started(
    service: Service,
) -> None:
    room = await service.room()
    first, second = await service.slots(room, 2)
    attended = await service.confirmed(first)
    absent = await service.confirmed(second, "user-2")

    too_early = await service.http.post(f"/bookings/{attended['id']}/complete", headers=ADMIN)
    by_user = await service.http.post(
        f"/bookings/{attended['id']}/complete", headers=user("user-1")
    )
    service.clock.now = second.starts_at + timedelta(minutes=5)
    try:
        completed = await service.http.post(f"/bookings/{attended['id']}/complete", headers=ADMIN)
        no_show = await service.http.post(f"/bookings/{absent['id']}/no-show", headers=ADMIN)
        twice = await service.http.post(f"/bookings/{absent['id']}/complete", headers=ADMIN)
    finally:
        service.clock.now = START
    events = await service.events(absent["id"], at_least=3)

    assert too_early.status_code == 409
    assert "not started yet" in too_early.json()["detail"]
    assert by_user.status_code == 403
    assert completed.json()["status"] == "completed"
    assert no_show.json()["status"] == "no_show"
    assert twice.status_code == 409
    assert "no_show" in twice.json()["detail"]
    assert types(events)[-1] == "BookingNoShow.v1"
    assert await service.booked(first.slot_id) == 1  # the place was used


async def test_users_see_only_their_own_bookings_a_page_at_a_time(service: Service) -> None:
    room = await service.room()
    slots = await service.slots(room, 5)
    mine = [await service.booking(slot, "lister") for slot in slots[:4]]
    theirs = await service.booking(slots[4], "other-lister")
    await service.http.post(f"/bookings/{mine[0]['id']}/cancel", headers=user("lister"))

    pages: list[list[str]] = []
    cursor = None
    while True:
        params = {"limit": "3"} | ({"cursor": cursor} if cursor else {})
        page = (await service.http.get("/bookings", params=params, headers=user("lister"))).json()
        pages.append([item["id"] for item in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    pending = await service.http.get(
        "/bookings", params={"status": "pending"}, headers=user("lister")
    )
    peek = await service.http.get(f"/bookings/{theirs['id']}", headers=user("lister"))
    spy = await service.http.get(
        "/bookings", params={"user_id": "other-lister"}, headers=user("lister")
    )
    admin_view = await service.http.get(
        "/bookings", params={"user_id": "other-lister"}, headers=ADMIN
    )
    by_room = await service.http.get("/bookings", params={"room_id": str(room)}, headers=ADMIN)

    assert pages == [[b["id"] for b in mine[:3]], [mine[3]["id"]]]
    assert {b["id"] for b in pending.json()["items"]} == {b["id"] for b in mine[1:]}
    assert peek.status_code == 404
    assert spy.status_code == 403
    assert [b["id"] for b in admin_view.json()["items"]] == [theirs["id"]]
    assert len(by_room.json()["items"]) == 5


async def test_a_time_window_filters_by_start(service: Service) -> None:
    room = await service.room()
    slots = await service.slots(room, 3)
    made = [await service.booking(slot, "window-user") for slot in slots]

    response = await service.http.get(
        "/bookings",
        params={
            "starts_from": slots[1].starts_at.isoformat(),
            "starts_before": slots[2].starts_at.isoformat(),
        },
        headers=user("window-user"),
    )
    naive = await service.http.get(
        "/bookings", params={"starts_from": "2030-01-01T00:00:00"}, headers=user("window-user")
    )

    assert [b["id"] for b in response.json()["items"]] == [made[1]["id"]]
    assert naive.status_code == 422


async def test_late_and_repeated_inventory_events_never_undo_newer_ones(
    service: Service,
) -> None:
    room = await service.room()
    (slot,) = await service.slots(room)
    blocked = slot.model_copy(update={"status": SlotStatus.BLOCKED, "revision": 3})
    stale = slot.model_copy(update={"status": SlotStatus.OPEN, "revision": 2})

    await service.publish(SlotChanged(room_id=room, slot=blocked))
    await service.publish(SlotChanged(room_id=room, slot=stale))
    await service.publish(service.room_event(room, name="Renamed"))
    await service.until(
        lambda: service.row("SELECT 1 FROM rooms WHERE id = $1 AND name = 'Renamed'", room)
    )
    row = await service.row("SELECT status, revision FROM slots WHERE id = $1", slot.slot_id)

    assert row == {"status": "blocked", "revision": 3}


async def test_a_deactivation_seen_before_the_room_keeps_the_room_inactive(
    service: Service,
) -> None:
    room_id = uuid.uuid4()
    snapshot = Envelope.wrap(service.room_event(room_id, name="Late"), source="/timeslots")
    deactivated = Envelope.wrap(
        RoomDeactivated(room_id=room_id, deactivated_at=START), source="/timeslots"
    )  # written after the snapshot...

    await service.publish_raw(topics.TIMESLOTS_EVENTS, deactivated)  # ...but seen first
    await service.until(lambda: service.row("SELECT 1 FROM rooms WHERE id = $1", room_id))
    await service.publish_raw(topics.TIMESLOTS_EVENTS, snapshot)
    row = await service.until(
        lambda: service.row("SELECT name, active FROM rooms WHERE id = $1 AND name <> ''", room_id)
    )

    assert row == {"name": "Late", "active": False}
