"""``make demo``: one journey through the platform started by ``make up``, narrated.

An admin sets up a room and a week of slots; a user searches, books and (through the payment
service stand-in) pays; the booking is confirmed and its reminders scheduled; a booking an hour
ahead gets its 1-hour reminder by email, which the local mail stand-in keeps; a cancellation
refunds by the policy; a full class gets a waiter, a cancellation frees a place, the waiter
gets the offer by email and books it. Everything goes through the services' HTTP APIs with
real JWTs; the services talk to each other only through Kafka.

    python -m platform_tooling.demo [--timeslots URL] [--booking URL] [--reminders URL]
                                    [--mail-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import os
import sys
import time
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

from platform_tooling.client import Api, connect, expect, next_minute, unique_user, utc_now
from platform_tooling.polling import until

ZONE = "Europe/Berlin"


def say(step: str, detail: str = "") -> None:
    print(f"\n\033[1m{step}\033[0m" if sys.stdout.isatty() else f"\n== {step}")
    if detail:
        print("   " + detail.replace("\n", "\n   "))


async def journey(api: Api, mail_dir: Path) -> None:
    started = time.monotonic()
    local = ZoneInfo(ZONE)
    for name, client in (("timeslots", api.timeslots), ("booking", api.booking)):
        response = await client.get("/health/ready")
        if response.status_code != 200:
            raise SystemExit(f"{name} is not ready at {client.base_url}: run `make up` first")

    say("1. An admin creates a room (Europe/Berlin, 40.00 EUR an hour) and its working hours")
    room = await api.create_room(f"Demo room {uuid.uuid4().hex[:6]}", time_zone=ZONE)
    await api.put_schedule(
        room["id"],
        open_weekdays=[1, 2, 3, 4, 5, 6, 7],
        hours=[{"start": "09:00", "end": "17:00"}],
        slot_minutes=60,
    )
    today = utc_now().astimezone(local).date()
    generated = await api.generate(room["id"], today + timedelta(days=1), today + timedelta(days=7))
    say(
        "2. ... and generates a week of slots (09:00-17:00 Berlin time, one hour each)",
        f"{generated['created']} slots created (timeslots publishes them as SlotsGenerated)",
    )
    soon = await api.custom_slot(
        room["id"], next_minute(utc_now() + timedelta(hours=1, seconds=30))
    )

    user = unique_user("demo")
    day = today + timedelta(days=2)
    free = await api.availability(user, room["id"], day)
    say(
        f"3. {user} searches {day:%A %d %B}",
        "\n".join(f"{s['local_starts_at'][11:16]}  {s['price']['amount']} EUR" for s in free[:4])
        + f"\n... {len(free)} free slots",
    )
    ten = next(s for s in free if s["local_starts_at"][11:13] == "10")
    created = expect(await api.book(user, ten["slot_id"]), 201)
    say(
        "4. ... and books 10:00",
        f"booking {created['id']}: {created['status']}, "
        f"{created['price']['amount']} {created['price']['currency']}, "
        f"held until {created['hold_expires_at']}",
    )
    confirmed = await api.wait_status(user, created["id"], "confirmed")
    say(
        "5. The payment service charges it (PaymentSucceeded); booking confirms it",
        f"status {confirmed['status']}, payment {confirmed['payment_id']}",
    )
    reminders = await api.wait_reminders(
        created["id"], {"email_24h": "pending", "email_1h": "pending"}
    )
    say(
        "6. The reminders service schedules its reminders (from BookingConfirmed)",
        "\n".join(
            f"{channel}: {r['scheduled_for']} ({r['status']})" for channel, r in reminders.items()
        ),
    )
    quote = await api.refund_quote(user, created["id"])
    cancelled = await api.cancel(user, created["id"], reason="demo")
    say(
        "7. The user cancels two days ahead: full refund by the policy",
        f"quoted {quote['percent']}% -> refund {cancelled['refund']['amount']} "
        f"{cancelled['refund']['currency']} (RefundRequested to the payment service); "
        "reminders cancelled",
    )

    await _waitlist(api, room, mail_dir, today + timedelta(days=3))

    guest = unique_user("demo")
    booked = expect(await api.book(guest, soon["id"]), 201)
    await api.wait_status(guest, booked["id"], "confirmed")
    starts = soon["starts_at"]
    due = datetime.fromisoformat(starts) - timedelta(hours=1)
    say(
        f"11. {guest} books a slot starting at {starts} and pays",
        f"its 1-hour reminder is due in {max(0, int((due - utc_now()).total_seconds()))} s; "
        "waiting for the email ...",
    )
    sent = await api.wait_reminders(booked["id"], {"email_1h": "sent"}, timeout_s=180)
    message_id = sent["email_1h"]["message_id"]
    found = await until(lambda: _mail(mail_dir, message_id), timeout_s=30, what="the email")
    say(
        "12. The email arrived at the mail server stand-in",
        f"{found['path']}\nSubject: {found['subject']}\nMessage-ID: {message_id}",
    )
    say(f"Done in {time.monotonic() - started:.0f} s.")


async def _waitlist(api: Api, room: dict[str, object], mail_dir: Path, day: date) -> None:
    """A full class, a waiter, a cancellation, the offer email, the booking."""
    local = ZoneInfo(ZONE)
    evening = datetime(day.year, day.month, day.day, 18, tzinfo=local)
    slot = await api.custom_slot(str(room["id"]), evening)
    member, waiter = unique_user("member"), unique_user("waiter")
    held = expect(await api.book(member, slot["id"]), 201)
    await api.wait_status(member, held["id"], "confirmed")
    joined = await api.join_waitlist(waiter, slot["id"])
    say(
        f"8. {member} takes the last place of a class ({day:%A} 18:00); {waiter} joins its "
        "waitlist",
        f"{waiter}: {joined['status']}, position {joined['position']}",
    )
    await api.cancel(member, held["id"], reason="demo")

    async def offered() -> dict[str, object] | None:
        place = await api.place_in_line(waiter, slot["id"])
        return place if place["status"] == "offered" else None

    offer = await until(offered, what="the offer to the waiter")
    until_local = datetime.fromisoformat(str(offer["offer_expires_at"])).astimezone(local)
    sent = await api.wait_reminders(str(offer["entry_id"]), {"waitlist_offer": "sent"})
    found = await until(
        lambda: _mail(mail_dir, sent["waitlist_offer"]["message_id"]), timeout_s=30, what="mail"
    )
    say(
        f"9. {member} cancels: the place is held for {waiter} until {until_local:%H:%M} "
        "(nobody else can take it), and the offer email arrives",
        f"{found['path']}\nSubject: {found['subject']}",
    )
    taken = expect(await api.book_offer(waiter, slot["id"], str(offer["entry_id"])), 201)
    paid = await api.wait_status(waiter, taken["id"], "confirmed")
    say(
        f"10. {waiter} books the held place with the offer and pays",
        f"booking {paid['id']}: {paid['status']}",
    )


async def _mail(directory: Path, message_id: str) -> dict[str, str] | None:
    return await asyncio.to_thread(_find_mail, directory, message_id)


def _find_mail(directory: Path, message_id: str) -> dict[str, str] | None:
    for path in sorted(directory.glob("*.eml"), reverse=True):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if message["Message-ID"] == message_id:
            return {"path": str(path), "subject": str(message["Subject"])}
    return None


def main() -> None:
    state = Path(os.environ.get("PLATFORM_STATE_DIR", ".run"))  # make demo runs at the root
    parser = argparse.ArgumentParser(description="a narrated journey through the platform")
    parser.add_argument("--timeslots", default="http://127.0.0.1:8001")
    parser.add_argument("--booking", default="http://127.0.0.1:8002")
    parser.add_argument("--reminders", default="http://127.0.0.1:8003")
    parser.add_argument("--mail-dir", type=Path, default=state / "mail")
    args = parser.parse_args()

    async def run() -> None:
        async with connect(args.timeslots, args.booking, args.reminders) as api:
            await journey(api, args.mail_dir)

    try:
        asyncio.run(run())
    except httpx.TransportError as exc:
        raise SystemExit(f"cannot reach the platform ({exc}): run `make up` first") from exc
    except TimeoutError as exc:
        raise SystemExit(
            f"\nThe demo stopped: {exc}.\n"
            "Check `make status`: every service ready; the consumer groups close to 0 behind "
            "(a backlog that old runs left on a broker holds new events back); whose "
            "infrastructure is in use (a broker or database another checkout started keeps "
            "its old data: `make reset` there, or `make down` there and `make up` here, gives a "
            "clean slate); and the payment and mail stand-ins running (`make up` without "
            "STANDINS=0). The services' logs are in .run/services/."
        ) from None


if __name__ == "__main__":
    main()
