"""Which reminders a booking gets, as booking events arrive: on time, twice, late, out of order."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

from booking_contracts import topics
from booking_contracts.catalogue import BookingCompleted, BookingExpired, BookingNoShow
from booking_contracts.envelope import Event
from tests.support.service import bearer

from .conftest import Service

BROKERS = ("memory", "kafka")
"""The in-memory broker and the real one: this module is about delivery too (events on time, twice,
late and out of order)."""

HOUR = timedelta(hours=1)


async def test_a_confirmed_booking_gets_email_24h_and_1h_before_and_an_sms(
    service: Service,
) -> None:
    start = service.day()
    service.clock.set(start - 72 * HOUR)
    booking = service.confirmed(start, phone="+4915112345678")

    rows = await service.confirm(booking, expect=3)

    assert [(r["kind"], r["scheduled_for"], r["status"]) for r in rows] == [
        ("email_24h", start - 24 * HOUR, "pending"),
        ("sms", start - 2 * HOUR, "pending"),
        ("email_1h", start - HOUR, "pending"),
    ]
    assert {r["contact_email"] for r in rows} == {f"{booking.booking_id}@example.com"}
    assert {r["contact_phone"] for r in rows} == {"+4915112345678"}
    assert {(r["room_name"], r["room_time_zone"]) for r in rows} == {("Room 7", "Europe/Berlin")}
    assert all(r["due_at"] == r["scheduled_for"] for r in rows)


async def test_without_a_phone_number_there_is_no_sms(service: Service) -> None:
    start = service.day()
    service.clock.set(start - 72 * HOUR)

    rows = await service.confirm(service.confirmed(start), expect=2)

    assert [r["kind"] for r in rows] == ["email_24h", "email_1h"]


@pytest.mark.parametrize(
    ("ahead", "phone", "kinds"),
    [
        (3 * HOUR, None, ["email_1h"]),
        (3 * HOUR, "+4915112345678", ["sms", "email_1h"]),
        (90 * timedelta(minutes=1), "+4915112345678", ["email_1h"]),
        (25 * HOUR, None, ["email_24h", "email_1h"]),
    ],
)
async def test_reminders_whose_time_has_passed_at_confirmation_are_not_scheduled(
    service: Service, ahead: timedelta, phone: str | None, kinds: list[str]
) -> None:
    start = service.day()
    service.clock.set(start - ahead)

    rows = await service.confirm(service.confirmed(start, phone=phone), expect=len(kinds))

    assert [r["kind"] for r in rows] == kinds


async def test_a_booking_confirmed_after_its_start_gets_no_reminder(service: Service) -> None:
    start = service.day()
    service.clock.set(start + HOUR)

    booking = service.confirmed(start)
    await service.confirm(booking, expect=0)

    response = await service.admin_view(booking.booking_id)
    assert response.status_code == 200
    assert response.json()["reminders"] == []


async def test_a_confirmation_read_late_schedules_by_the_time_it_happened(
    service: Service,
) -> None:
    """The consumer was down for a day: what was confirmed 30 h ahead still gets both
    emails (the 24 h one falls due at once and is caught up)."""
    start = service.day()
    confirmed_at = start - 30 * HOUR
    service.clock.set(start - 20 * HOUR)
    booking = service.confirmed(start)

    await service.publish(booking, at=confirmed_at)
    await service.until(lambda: service.known(booking.booking_id))

    rows = await service.by_kind(booking.booking_id)
    assert set(rows) == {"email_24h", "email_1h"}


async def test_duplicate_confirmations_schedule_each_reminder_once(service: Service) -> None:
    start = service.day()
    service.clock.set(start - 72 * HOUR)
    booking = service.confirmed(start, phone="+4915112345678")

    first = await service.publish(booking)
    await service.publish_raw(first)  # redelivered: the same event id
    await service.publish(booking)  # published again: a new event id
    # a later event of the same booking (same partition) is read after the duplicates
    moved = start + HOUR
    await service.publish(service.rescheduled(booking, moved))
    await service.until(lambda: _starting(service, booking.booking_id, moved))

    rows = await service.reminders(booking.booking_id)
    assert sorted(r["kind"] for r in rows) == ["email_1h", "email_24h", "sms"]


async def test_rescheduling_moves_the_pending_reminders_and_drops_those_now_past(
    service: Service,
) -> None:
    start = service.day()
    service.clock.set(start - 72 * HOUR)
    booking = service.confirmed(start, phone="+4915112345678")
    before = {r["kind"]: r for r in await service.confirm(booking, expect=3)}

    later = start + 48 * HOUR
    await service.publish(service.rescheduled(booking, later))
    moved = await service.until(lambda: _starting(service, booking.booking_id, later))

    assert {k: (r["id"], r["scheduled_for"], r["status"]) for k, r in moved.items()} == {
        "email_24h": (before["email_24h"]["id"], later - 24 * HOUR, "pending"),
        "email_1h": (before["email_1h"]["id"], later - HOUR, "pending"),
        "sms": (before["sms"]["id"], later - 2 * HOUR, "pending"),
    }

    soon = service.clock() + 90 * timedelta(minutes=1)
    await service.publish(service.rescheduled(booking, soon))
    rows = await service.statuses(
        booking.booking_id, {"email_24h": "cancelled", "sms": "cancelled", "email_1h": "pending"}
    )
    assert rows["email_1h"]["scheduled_for"] == soon - HOUR
    assert rows["email_1h"]["starts_at"] == soon
    assert "moved" in rows["sms"]["last_error"]


async def test_a_stale_reschedule_arriving_late_changes_nothing(service: Service) -> None:
    start = service.day()
    service.clock.set(start - 72 * HOUR)
    booking = service.confirmed(start)
    await service.confirm(booking, expect=2)
    first_move = start + 24 * HOUR
    second_move = start + 48 * HOUR

    early = await service.publish(service.rescheduled(booking, first_move))
    await service.until(lambda: _starting(service, booking.booking_id, first_move))
    await service.publish(
        service.rescheduled(booking, second_move), at=early.time + timedelta(minutes=5)
    )
    await service.until(lambda: _starting(service, booking.booking_id, second_move))
    await service.publish(service.rescheduled(booking, first_move), at=early.time)  # late copy
    await service.publish_raw(early)  # and a redelivery
    await service.publish(service.cancelled(booking), at=early.time)
    await service.statuses(booking.booking_id, {"email_24h": "cancelled", "email_1h": "cancelled"})

    rows = await service.by_kind(booking.booking_id)
    assert {r["starts_at"] for r in rows.values()} == {second_move}


async def test_a_reschedule_brings_back_reminders_already_sent_for_the_old_time(
    service: Service,
) -> None:
    """The 24 h email went out; the booking moves two days later: a new one will."""
    start = service.day()
    service.clock.set(start - 72 * HOUR)
    booking = service.confirmed(start)
    await service.confirm(booking, expect=2)
    service.clock.set(start - 24 * HOUR - timedelta(seconds=1))
    await service.statuses(booking.booking_id, {"email_24h": "sent", "email_1h": "pending"})

    later = start + 48 * HOUR
    await service.publish(service.rescheduled(booking, later))
    await service.until(lambda: _starting(service, booking.booking_id, later))

    rows = await service.reminders(booking.booking_id)
    assert [(r["kind"], r["status"], r["scheduled_for"]) for r in rows] == [
        ("email_24h", "sent", start - 24 * HOUR),
        ("email_24h", "pending", later - 24 * HOUR),
        ("email_1h", "pending", later - HOUR),
    ]


async def _starting(
    service: Service, booking_id: uuid.UUID, start: datetime
) -> dict[str, dict[str, Any]]:
    rows = await service.by_kind(booking_id)
    live = {k: r for k, r in rows.items() if r["status"] in ("pending", "queued")}
    return live if live and all(r["starts_at"] == start for r in live.values()) else {}


@pytest.mark.parametrize("ending", ["cancelled", "completed", "no_show", "expired"])
async def test_a_booking_that_ends_cancels_its_pending_reminders(
    service: Service, ending: str
) -> None:
    start = service.day()
    service.clock.set(start - 72 * HOUR)
    booking = service.confirmed(start, phone="+4915112345678")
    await service.confirm(booking, expect=3)
    ids = {"slot_id": booking.slot_id, "room_id": booking.room_id}
    event: Event = {
        "cancelled": service.cancelled(booking),
        "completed": BookingCompleted(booking_id=booking.booking_id, **ids),
        "no_show": BookingNoShow(booking_id=booking.booking_id, **ids),
        "expired": BookingExpired(booking_id=booking.booking_id, user_id="user-1", **ids),
    }[ending]

    await service.publish(event)
    await service.publish(event)  # twice: the same result
    await service.statuses(
        booking.booking_id, {"email_24h": "cancelled", "email_1h": "cancelled", "sms": "cancelled"}
    )
    await service.publish(booking)  # a late duplicate confirmation schedules nothing new

    response = await service.admin_view(booking.booking_id)
    assert response.status_code == 200
    assert [r["status"] for r in response.json()["reminders"]] == ["cancelled"] * 3


async def test_a_cancellation_seen_before_the_confirmation_prevents_scheduling(
    service: Service,
) -> None:
    start = service.day()
    service.clock.set(start - 72 * HOUR)
    booking = service.confirmed(start)

    await service.publish(service.cancelled(booking))
    await service.until(lambda: service.known(booking.booking_id))
    await service.publish(booking)
    marker = service.confirmed(start)
    await service.confirm(marker, expect=2)  # read after the late confirmation

    response = await service.admin_view(booking.booking_id)
    assert response.status_code == 200
    assert response.json() == {"booking_id": str(booking.booking_id), "reminders": []}


async def test_impossible_bookings_go_to_the_dead_letters_and_the_rest_goes_on(
    service: Service,
) -> None:
    start = service.day()
    service.clock.set(start - 72 * HOUR)
    nowhere = service.confirmed(start, time_zone="Mars/Olympus_Mons")
    backwards = service.confirmed(start, minutes=-30)

    await service.publish(nowhere)
    await service.publish(backwards)
    fine = await service.confirm(service.confirmed(start), expect=2)

    dead = await service.broker.read(
        topics.dead_letter_topic(topics.BOOKING_EVENTS),
        at_least=2,
        where=lambda r: r.key in {str(b.booking_id).encode() for b in (nowhere, backwards)},
    )
    reasons = sorted(dict(r.headers)["dlq_reason"].decode() for r in dead)
    assert len(fine) == 2
    assert "unknown time zone 'Mars/Olympus_Mons'" in reasons[1]
    assert "ends" in reasons[0]
    assert {dict(r.headers)["dlq_consumer"] for r in dead} == {b"reminders-bookings"}
    assert not await service.reminders(nowhere.booking_id)


async def test_reminders_of_a_booking_are_for_admins_only(service: Service) -> None:
    start = service.day()
    service.clock.set(start - 72 * HOUR)
    booking = service.confirmed(start)
    await service.confirm(booking, expect=2)
    path = f"/bookings/{booking.booking_id}/reminders"

    anonymous = await service.http.get(path)
    user = await service.http.get(path, headers=bearer("user-1"))
    admin = await service.admin_view(booking.booking_id)
    unknown = await service.admin_view(uuid.uuid4())

    assert anonymous.status_code == 401
    assert user.status_code == 403
    assert admin.status_code == 200
    body = admin.json()
    assert [(r["channel"], r["status"], r["attempts"]) for r in body["reminders"]] == [
        ("email_24h", "pending", 0),
        ("email_1h", "pending", 0),
    ]
    assert body["reminders"][0]["scheduled_for"] == (start - 24 * HOUR).isoformat().replace(
        "+00:00", "Z"
    )
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")
