"""The platform as a client sees it: HTTP calls with real JWTs, and waiting for what the
services do in the background (events travel through Kafka, so effects are eventual).

Used by the end-to-end tests, the end-to-end benchmark and ``make demo``."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import httpx

from platform_runtime.settings import DEV_JWT_SECRET
from platform_runtime.tokens import issue_token
from platform_tooling.polling import until

T = TypeVar("T")
Json = dict[str, Any]


def token(subject: str, roles: Iterable[str] = (), *, secret: str = DEV_JWT_SECRET) -> str:
    return issue_token(
        secret_or_private_key=secret,
        subject=subject,
        roles=list(roles),
        email=f"{subject}@example.com",
    )


def auth(subject: str, roles: Iterable[str] = ()) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(subject, roles)}"}


ADMIN = auth("admin-1", ["admin"])


def next_minute(after: datetime) -> datetime:
    """The first whole minute at or after ``after``."""
    floor = after.replace(second=0, microsecond=0)
    return floor if floor == after else floor + timedelta(minutes=1)


def expect(response: httpx.Response, status: int) -> Json:
    if response.status_code != status:
        raise AssertionError(
            f"{response.request.method} {response.request.url.path}: expected {status}, "
            f"got {response.status_code}: {response.text}"
        )
    body: Json = response.json()
    return body


@dataclass
class Api:
    timeslots: httpx.AsyncClient
    booking: httpx.AsyncClient
    reminders: httpx.AsyncClient

    # --- rooms and slots (admin) ---------------------------------------------------------

    async def create_room(
        self,
        name: str,
        *,
        time_zone: str = "Europe/Berlin",
        hourly_rate: str = "40.00",
        currency: str = "EUR",
        room_type: str = "consultation",
        capacity: int = 1,
    ) -> Json:
        response = await self.timeslots.post(
            "/rooms",
            headers=ADMIN,
            json={
                "name": name,
                "capacity": capacity,
                "room_type": room_type,
                "hourly_rate": {"amount": hourly_rate, "currency": currency},
                "time_zone": time_zone,
            },
        )
        return expect(response, 201)

    async def put_schedule(self, room_id: str, **schedule: Any) -> Json:
        response = await self.timeslots.put(
            f"/rooms/{room_id}/schedule", headers=ADMIN, json=schedule
        )
        return expect(response, 200)

    async def generate(self, room_id: str, date_from: date, date_to: date) -> Json:
        response = await self.timeslots.post(
            f"/rooms/{room_id}/slots/generate",
            headers=ADMIN,
            json={"date_from": date_from.isoformat(), "date_to": date_to.isoformat()},
        )
        return expect(response, 200)

    async def custom_slot(
        self, room_id: str, starts_at: datetime, *, minutes: int = 60, max_bookings: int = 1
    ) -> Json:
        response = await self.timeslots.post(
            f"/rooms/{room_id}/slots",
            headers=ADMIN,
            json={
                "slots": [
                    {
                        "starts_at": starts_at.isoformat(),
                        "ends_at": (starts_at + timedelta(minutes=minutes)).isoformat(),
                        "max_bookings": max_bookings,
                    }
                ]
            },
        )
        if response.status_code != 201:
            expect(response, 201)
        (slot,) = response.json()
        return dict(slot)

    async def set_rules(self, room_id: str, **rules: Any) -> Json:
        """``PUT /rooms/{id}/rules``: the room's own booking rules (the rest inherited)."""
        response = await self.timeslots.put(f"/rooms/{room_id}/rules", headers=ADMIN, json=rules)
        return expect(response, 200)

    async def slot(self, slot_id: str) -> Json:
        return expect(await self.timeslots.get(f"/slots/{slot_id}", headers=ADMIN), 200)

    async def availability(self, user: str, room_id: str, on: date) -> list[Json]:
        response = await self.timeslots.get(
            f"/rooms/{room_id}/availability",
            params={"date": on.isoformat(), "limit": 200},
            headers=auth(user),
        )
        return list(expect(response, 200)["items"])

    # --- bookings ------------------------------------------------------------------------

    async def book(
        self, user: str, slot_id: str, *, idempotency_key: str | None = None, timeout_s: float = 30
    ) -> httpx.Response:
        """``POST /bookings`` once the booking service knows the slot (it learns slots from
        the timeslot service's events, a moment after they were made)."""
        headers = auth(user) | ({"Idempotency-Key": idempotency_key} if idempotency_key else {})
        deadline = time.monotonic() + timeout_s
        while True:
            response = await self.booking.post(
                "/bookings", headers=headers, json={"slot_id": slot_id}
            )
            not_known = response.status_code == 404 or (
                response.status_code == 409 and "not known" in response.text
            )
            if not not_known or time.monotonic() > deadline:
                return response
            await asyncio.sleep(0.1)

    async def get_booking(self, user: str, booking_id: str, *, roles: Iterable[str] = ()) -> Json:
        response = await self.booking.get(f"/bookings/{booking_id}", headers=auth(user, roles))
        return expect(response, 200)

    async def wait_status(
        self, user: str, booking_id: str, status: str, *, timeout_s: float = 30.0
    ) -> Json:
        async def probe() -> Json | None:
            booking = await self.get_booking(user, booking_id)
            return booking if booking["status"] == status else None

        return await until(probe, timeout_s=timeout_s, what=f"booking {booking_id} {status}")

    async def cancel(self, user: str, booking_id: str, reason: str | None = None) -> Json:
        response = await self.booking.post(
            f"/bookings/{booking_id}/cancel", headers=auth(user), json={"reason": reason}
        )
        return expect(response, 200)

    async def refund_quote(self, user: str, booking_id: str) -> Json:
        response = await self.booking.get(
            f"/bookings/{booking_id}/refund-quote", headers=auth(user)
        )
        return expect(response, 200)

    async def reschedule(self, user: str, booking_id: str, slot_id: str) -> Json:
        response = await self.booking.post(
            f"/bookings/{booking_id}/reschedule", headers=auth(user), json={"slot_id": slot_id}
        )
        return expect(response, 200)

    async def admin_action(self, booking_id: str, action: str) -> httpx.Response:
        return await self.booking.post(f"/bookings/{booking_id}/{action}", headers=ADMIN)

    # --- the waitlist --------------------------------------------------------------------

    async def join_waitlist(self, user: str, slot_id: str) -> Json:
        response = await self.booking.post(
            f"/slots/{slot_id}/waitlist",
            headers=auth(user),
            json={"contact": {"email": f"{user}@example.com"}},
        )
        return expect(response, 201)

    async def place_in_line(self, user: str, slot_id: str) -> Json:
        return expect(await self.booking.get(f"/slots/{slot_id}/waitlist", headers=auth(user)), 200)

    async def book_offer(self, user: str, slot_id: str, offer_id: str) -> httpx.Response:
        return await self.booking.post(
            "/bookings",
            headers=auth(user),
            json={
                "slot_id": slot_id,
                "offer_id": offer_id,
                "contact": {"email": f"{user}@example.com"},
            },
        )

    # --- reminders -----------------------------------------------------------------------

    async def reminders_of(self, booking_id: str) -> list[Json]:
        response = await self.reminders.get(f"/bookings/{booking_id}/reminders", headers=ADMIN)
        if response.status_code == 404:
            return []
        return list(expect(response, 200)["reminders"])

    async def wait_reminders(
        self, booking_id: str, expected: dict[str, str], *, timeout_s: float = 30.0
    ) -> dict[str, Json]:
        """Until the live-or-last reminder of each channel has the expected status."""

        async def probe() -> dict[str, Json] | None:
            latest = {r["channel"]: r for r in await self.reminders_of(booking_id)}
            actual = {channel: r["status"] for channel, r in latest.items()}
            return latest if actual == expected else None

        return await until(probe, timeout_s=timeout_s, what=f"reminders {expected}")


@asynccontextmanager
async def connect(timeslots: str, booking: str, reminders: str) -> AsyncIterator[Api]:
    async with (
        httpx.AsyncClient(base_url=timeslots, timeout=30) as t,
        httpx.AsyncClient(base_url=booking, timeout=30) as b,
        httpx.AsyncClient(base_url=reminders, timeout=30) as r,
    ):
        yield Api(t, b, r)


def unique_user(kind: str = "user") -> str:
    """A user id (``unpaid-…`` and ``declined-…`` tell the payment stand-in what to do)."""
    return f"{kind}-{uuid.uuid4().hex[:8]}"


def utc_now() -> datetime:
    return datetime.now(UTC)
