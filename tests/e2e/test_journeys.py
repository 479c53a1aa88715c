"""Whole journeys through the running platform: HTTP with real JWTs in, Kafka between the
services, the payment stand-in paying, email arriving at a real SMTP server."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest

from platform_tooling import demo
from platform_tooling.client import Api, Json, auth, expect, next_minute, unique_user, utc_now
from platform_tooling.polling import until
from platform_tooling.standins import MailSink, PaymentStandIn
from tests.support.platform import Platform, group_lag

HOUR = timedelta(hours=1)


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def booked_count(api: Api, slot_id: str, count: int) -> dict[str, object]:
    async def probe() -> dict[str, object] | None:
        slot = await api.slot(slot_id)
        return slot if slot["booked_count"] == count else None

    return await until(probe, what=f"slot {slot_id} with {count} booked")


async def test_a_room_is_set_up_searched_booked_paid_confirmed_and_its_reminder_arrives(
    api: Api, mail: MailSink
) -> None:
    # a booking whose 1-hour reminder falls due within ~80 s: the email is checked at the end
    tokyo = await api.create_room(
        "Fuji", time_zone="Asia/Tokyo", hourly_rate="6000", currency="JPY"
    )
    soon = await api.custom_slot(tokyo["id"], next_minute(utc_now() + HOUR + timedelta(seconds=20)))
    guest = unique_user()
    reminded = expect(await api.book(guest, soon["id"]), 201)

    # an admin sets up a room and its working hours, and generates a week of slots
    room = await api.create_room(
        "Consultation 1", time_zone="America/New_York", hourly_rate="60.00", currency="USD"
    )
    await api.put_schedule(
        room["id"],
        open_weekdays=[1, 2, 3, 4, 5, 6, 7],
        hours=[{"start": "09:00", "end": "17:00"}],
        slot_minutes=60,
    )
    new_york = ZoneInfo("America/New_York")
    today = utc_now().astimezone(new_york).date()
    generated = await api.generate(room["id"], today + timedelta(days=2), today + timedelta(days=8))
    assert generated["created"] == 7 * 8
    assert (await api.generate(room["id"], today + timedelta(days=2), today + timedelta(days=8)))[
        "created"
    ] == 0

    # a user searches a day and books its 10:00 (New York time)
    user = unique_user()
    day = today + timedelta(days=3)
    free = await api.availability(user, room["id"], day)
    assert [at(s["local_starts_at"]).hour for s in free] == list(range(9, 17))
    ten = next(s for s in free if at(s["local_starts_at"]).hour == 10)
    assert at(ten["starts_at"]) == datetime.combine(
        day, datetime.min.time().replace(hour=10), new_york
    )
    created = expect(await api.book(user, ten["slot_id"]), 201)
    assert (created["status"], created["payment_status"]) == ("pending", "pending")
    assert created["price"] == {"amount": "60.00", "currency": "USD"}
    assert created["hold_expires_at"] is not None

    # the payment service charges it; the booking is confirmed; the place is taken everywhere
    confirmed = await api.wait_status(user, created["id"], "confirmed")
    assert (confirmed["payment_status"], confirmed["payment_id"]) == (
        "paid",
        f"pay-{created['id']}",
    )
    await booked_count(api, ten["slot_id"], 1)
    after = await api.availability(user, room["id"], day)
    assert ten["slot_id"] not in {s["slot_id"] for s in after}
    assert len(after) == 7
    taken = await api.book(unique_user(), ten["slot_id"])
    assert taken.status_code == 409

    # reminders: 24 h and 1 h before the start
    reminders = await api.wait_reminders(
        created["id"], {"email_24h": "pending", "email_1h": "pending"}
    )
    start = at(ten["starts_at"])
    assert at(reminders["email_24h"]["scheduled_for"]) == start - 24 * HOUR
    assert at(reminders["email_1h"]["scheduled_for"]) == start - HOUR

    # the Tokyo booking: paid, confirmed, only its 1-hour reminder (the 24-hour one has passed),
    # which arrives by email in Tokyo time
    await api.wait_status(guest, reminded["id"], "confirmed")
    sent = await api.wait_reminders(reminded["id"], {"email_1h": "sent"}, timeout_s=150)
    (message,) = mail.to(f"{guest}@example.com")
    local = at(soon["starts_at"]).astimezone(ZoneInfo("Asia/Tokyo"))
    assert f"at {local:%H:%M} (Asia/Tokyo)" in str(message.message["Subject"])
    assert "Fuji" in str(message.message["Subject"])
    assert message.message_id == sent["email_1h"]["message_id"]
    scheduled = at(sent["email_1h"]["scheduled_for"])
    assert scheduled == at(soon["starts_at"]) - HOUR
    assert (
        timedelta(0)
        <= datetime.fromtimestamp(message.arrived, scheduled.tzinfo) - scheduled
        < 5 * timedelta(seconds=1)
    )


async def test_cancelling_refunds_by_the_notice_given(api: Api, payments: PaymentStandIn) -> None:
    room = await api.create_room("Studio B", hourly_rate="40.00", currency="EUR")
    now = utc_now()
    cases = {  # notice -> (percent, refund)
        48 * HOUR: ("100", "40.00"),
        12 * HOUR: ("50", "20.00"),
        2 * HOUR: ("0", None),
    }
    bookings = {}
    for notice in cases:
        slot = await api.custom_slot(room["id"], next_minute(now + notice))
        # the payment service cannot refund this user's card (the stand-in: RefundFailed)
        user = unique_user("unrefundable" if notice == 12 * HOUR else "user")
        booking = expect(await api.book(user, slot["id"]), 201)
        bookings[notice] = (user, slot, booking)
    for user, _, booking in bookings.values():
        await api.wait_status(user, booking["id"], "confirmed")

    for notice, (percent, refund) in cases.items():
        user, slot, booking = bookings[notice]
        quote = await api.refund_quote(user, booking["id"])
        assert Decimal(quote["percent"]) == Decimal(percent)
        cancelled = await api.cancel(user, booking["id"], reason="plans changed")
        assert cancelled["status"] == "cancelled"
        assert cancelled["cancelled_by"] == "user"
        if refund is None:
            assert cancelled["refund"] is None
            assert cancelled["payment_status"] == "paid"
        else:
            assert cancelled["refund"] == {"amount": refund, "currency": "EUR"}
            assert cancelled["payment_status"] == "refund_pending"
        await booked_count(api, slot["id"], 0)

    async def refunds() -> dict[UUID, str] | None:
        found = {r.booking_id: str(r.amount.amount) for r in payments.refunds}
        wanted = {UUID(bookings[n][2]["id"]) for n in (48 * HOUR, 12 * HOUR)}
        return found if wanted <= set(found) else None

    found = await until(refunds, what="refund requests at the payment service")
    assert found[UUID(bookings[48 * HOUR][2]["id"])] == "40.00"
    assert found[UUID(bookings[12 * HOUR][2]["id"])] == "20.00"
    assert UUID(bookings[2 * HOUR][2]["id"]) not in found
    # the payment service reports each refund: made, or (that card) not
    for notice, outcome in ((48 * HOUR, "refunded"), (12 * HOUR, "refund_failed")):
        user, _, booking = bookings[notice]

        async def settled(user: str = user, booking_id: str = booking["id"]) -> Json | None:
            shown = await api.get_booking(user, booking_id)
            return shown if shown["payment_status"] != "refund_pending" else None

        assert (await until(settled, what="the refund's outcome"))["payment_status"] == outcome
    for notice in cases:
        _, _, booking = bookings[notice]
        expected = {"email_1h": "cancelled"} | (
            {"email_24h": "cancelled"} if notice > 24 * HOUR else {}
        )
        await api.wait_reminders(booking["id"], expected)


async def test_rescheduling_moves_the_place_and_the_reminders(api: Api) -> None:
    room = await api.create_room("Room C")
    now = utc_now()
    first = await api.custom_slot(room["id"], next_minute(now + 30 * HOUR))
    second = await api.custom_slot(room["id"], next_minute(now + 50 * HOUR))
    user = unique_user()
    booking = expect(await api.book(user, first["id"]), 201)
    await api.wait_status(user, booking["id"], "confirmed")
    await api.wait_reminders(booking["id"], {"email_24h": "pending", "email_1h": "pending"})

    moved = await api.reschedule(user, booking["id"], second["id"])

    assert (moved["slot_id"], moved["starts_at"]) == (second["id"], moved["starts_at"])
    assert at(moved["starts_at"]) == at(second["starts_at"])
    assert moved["price"] == booking["price"]
    await booked_count(api, first["id"], 0)
    await booked_count(api, second["id"], 1)

    async def moved_reminders() -> list[dict[str, object]] | None:
        live = [r for r in await api.reminders_of(booking["id"]) if r["status"] == "pending"]
        starts = {at(str(r["starts_at"])) for r in live}
        return live if len(live) == 2 and starts == {at(second["starts_at"])} else None

    live = await until(moved_reminders, what="reminders moved to the new time")
    by_channel = {r["channel"]: at(str(r["scheduled_for"])) for r in live}
    assert by_channel == {
        "email_24h": at(second["starts_at"]) - 24 * HOUR,
        "email_1h": at(second["starts_at"]) - HOUR,
    }


async def test_unpaid_declined_completed_and_no_show_bookings_end_as_they_should(
    api: Api,
) -> None:
    room = await api.create_room("Room D")
    start = next_minute(utc_now() + timedelta(seconds=30))
    slot = await api.custom_slot(room["id"], start, minutes=30, max_bookings=4)
    unpaid, declined = unique_user("unpaid"), unique_user("declined")
    attended, absent = unique_user(), unique_user()
    ids = {}
    for user in (unpaid, declined, attended, absent):
        ids[user] = expect(await api.book(user, slot["id"]), 201)["id"]

    refused = await api.wait_status(declined, ids[declined], "cancelled")
    assert refused["cancelled_by"] == "system"
    await api.wait_status(attended, ids[attended], "confirmed")
    await api.wait_status(absent, ids[absent], "confirmed")
    held = await api.get_booking(unpaid, ids[unpaid])
    assert held["status"] == "pending"
    assert at(held["hold_expires_at"]) == start  # a hold never outlasts the slot's start

    too_early = await api.admin_action(ids[attended], "complete")
    assert too_early.status_code == 409
    await until(lambda: _started(start), timeout_s=120, what="the slot's start")

    await api.wait_status(unpaid, ids[unpaid], "expired", timeout_s=30)
    by_user = await api.booking.post(f"/bookings/{ids[attended]}/complete", headers=auth(attended))
    assert by_user.status_code == 403
    assert expect(await api.admin_action(ids[attended], "complete"), 200)["status"] == "completed"
    assert expect(await api.admin_action(ids[absent], "no-show"), 200)["status"] == "no_show"
    again = await api.admin_action(ids[absent], "complete")
    assert again.status_code == 409
    await booked_count(api, slot["id"], 2)


async def _started(moment: datetime) -> bool:
    return utc_now() >= moment


async def test_the_demo_walks_its_whole_journey_to_the_reminder_email(
    api: Api, mail: MailSink, capsys: pytest.CaptureFixture[str]
) -> None:
    assert mail.directory is not None
    await demo.journey(api, mail.directory)

    told = capsys.readouterr().out
    assert "5. The payment service charges it" in told
    assert "joins its waitlist" in told
    assert "position 1" in told
    assert "and the offer email arrives" in told
    assert "Subject: A place is free for you: Demo room" in told
    assert "books the held place with the offer and pays" in told
    assert "12. The email arrived at the mail server stand-in" in told
    assert "Done in" in told


async def test_a_rooms_rules_reach_the_booking_service_in_one_event_hop(api: Api) -> None:
    room = await api.create_room("Studio R", room_type="meeting", capacity=5)
    set_at = utc_now()
    rules = await api.set_rules(room["id"], quotas=[{"most": 1, "per": "day"}])
    berlin = ZoneInfo("Europe/Berlin")
    day = (utc_now().astimezone(berlin) + timedelta(days=3)).date()
    ten = datetime(day.year, day.month, day.day, 10, tzinfo=berlin)
    first = await api.custom_slot(room["id"], ten)
    second = await api.custom_slot(room["id"], ten + 2 * HOUR)
    user = unique_user("member")

    # the slots follow the rules on the room's partition: once a slot is known, so are they
    booked = expect(await api.book(user, first["id"]), 201)
    refused = await api.book(user, second["id"])
    lifted = await api.set_rules(room["id"])  # back to the defaults: no quota

    async def bookable() -> Json | None:
        response = await api.book(user, second["id"])
        return response.json() if response.status_code == 201 else None

    second_booking = await until(bookable, what="the lifted quota applied by the booking service")
    hop = utc_now() - set_at

    assert rules["rules"]["quotas"] == [{"most": 1, "per": "day", "scope": "room"}]
    assert refused.status_code == 409
    assert (refused.json()["rule"], refused.json()["limit"]) == ("quota_per_day", "1 per day")
    assert f"you have 1 on {day.isoformat()}" in refused.json()["detail"]
    assert lifted["rules"]["quotas"] == []
    assert lifted["room_version"] > rules["room_version"]
    assert second_booking["slot_id"] == second["id"]
    assert booked["slot_id"] == first["id"]
    assert hop < timedelta(seconds=30)


async def test_a_full_class_a_waiter_a_cancellation_and_the_waiter_books_the_freed_place(
    api: Api, mail: MailSink, platform: Platform
) -> None:
    room = await api.create_room("Studio W", room_type="meeting", capacity=1)
    slot = await api.custom_slot(room["id"], next_minute(utc_now() + 30 * HOUR))
    member, waiter, walk_in = unique_user("member"), unique_user("waiter"), unique_user("walk")
    day = at(slot["starts_at"]).astimezone(ZoneInfo(room["time_zone"])).date()
    open_before = await api.availability(walk_in, room["id"], day)
    booking = expect(await api.book(member, slot["id"]), 201)
    await api.wait_status(member, booking["id"], "confirmed")

    joined = await api.join_waitlist(waiter, slot["id"])
    await api.cancel(member, booking["id"], "cannot come")

    async def offered() -> Json | None:
        place = await api.place_in_line(waiter, slot["id"])
        return place if place["status"] == "offered" else None

    offer = await until(offered, what="the freed place offered to the waiter")

    async def told() -> list[EmailMessage] | None:
        messages = [m.message for m in mail.to(f"{waiter}@example.com")]
        return messages or None

    (email,) = await until(told, what="the offer email")

    async def counted() -> bool | None:  # the timeslot service has read the cancellation too
        lag = await group_lag(platform.kafka, "timeslots-booking-counts", "booking.events")
        return lag == 0 or None

    await until(counted, what="the timeslot service's counts caught up")
    searched = await api.availability(walk_in, room["id"], day)
    counted_there = await api.slot(slot["id"])
    refused = await api.booking.post(
        "/bookings", headers=auth(walk_in), json={"slot_id": slot["id"]}
    )
    taken = expect(await api.book_offer(waiter, slot["id"], offer["entry_id"]), 201)
    paid = await api.wait_status(waiter, taken["id"], "confirmed")

    assert (joined["status"], joined["position"]) == ("waiting", 1)
    assert str(email["Subject"]).startswith("A place is free for you: Studio W on ")
    body = email.get_body(("plain",))
    assert body is not None
    assert f"offer_id={offer['entry_id']}" in body.get_content()
    assert refused.status_code == 409  # held for the waiter
    assert slot["id"] in {item["slot_id"] for item in open_before}
    assert slot["id"] not in {item["slot_id"] for item in searched}  # the search agrees
    assert counted_there["booked_count"] == 1
    assert paid["slot_id"] == slot["id"]
    await booked_count(api, slot["id"], 1)


async def test_an_offer_let_lapse_goes_to_the_next_waiter_who_books_and_pays(
    api: Api, mail: MailSink
) -> None:
    room = await api.create_room("Studio L", room_type="meeting", capacity=1)
    await api.set_rules(room["id"], offer_minutes=1)
    slot = await api.custom_slot(room["id"], next_minute(utc_now() + 30 * HOUR))
    member = unique_user("member")
    ann, bob, cat = (unique_user(name) for name in ("ann", "bob", "cat"))
    held = expect(await api.book(member, slot["id"]), 201)
    await api.wait_status(member, held["id"], "confirmed")
    for waiter in (ann, bob, cat):
        await api.join_waitlist(waiter, slot["id"])

    await api.cancel(member, held["id"])

    async def offered_to(waiter: str) -> Json | None:
        place = await api.place_in_line(waiter, slot["id"])
        return place if place["status"] == "offered" else None

    async def emailed(waiter: str) -> list[EmailMessage] | None:
        return [m.message for m in mail.to(f"{waiter}@example.com")] or None

    first = await until(lambda: offered_to(ann), what="the offer to the first waiter")
    (to_ann,) = await until(lambda: emailed(ann), what="the first offer email")
    second = await until(lambda: offered_to(bob), timeout_s=120, what="the lapsed offer passed on")
    (to_bob,) = await until(lambda: emailed(bob), what="the second offer email")
    booked = expect(await api.book_offer(bob, slot["id"], second["entry_id"]), 201)
    paid = await api.wait_status(bob, booked["id"], "confirmed")
    cat_now = await api.place_in_line(cat, slot["id"])
    ann_now = await api.booking.get(f"/slots/{slot['id']}/waitlist", headers=auth(ann))

    assert first["entry_id"] != second["entry_id"]
    assert str(to_ann["Subject"]).startswith("A place is free for you: Studio L")
    assert str(to_bob["Subject"]) == str(to_ann["Subject"])
    assert paid["slot_id"] == slot["id"]
    assert (cat_now["status"], cat_now["position"]) == ("waiting", 1)
    assert ann_now.status_code == 404  # her offer lapsed: she is out of the line
