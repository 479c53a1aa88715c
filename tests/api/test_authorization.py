"""Authenticated is not allowed: the endpoints the code reserves for admins refuse a user with
a 403 problem, and a user cannot see or change another user's booking (404, as if it did not
exist); in neither case does anything change."""

from __future__ import annotations

import httpx

from platform_tooling.client import Api, Json, auth, unique_user
from tests.support.platform import SERVICES, Platform

from .endpoints import Endpoint, admin_only, documented, send
from .problems import problem_faults
from .scene import Scene
from .state import differences, settled

ADMIN_ONLY_TODAY = {
    Endpoint("timeslots", "POST", "/rooms"),
    Endpoint("timeslots", "PATCH", "/rooms/{room_id}"),
    Endpoint("timeslots", "POST", "/rooms/{room_id}/deactivate"),
    Endpoint("timeslots", "PUT", "/rooms/{room_id}/schedule"),
    Endpoint("timeslots", "POST", "/rooms/{room_id}/slots/generate"),
    Endpoint("timeslots", "POST", "/rooms/{room_id}/slots"),
    Endpoint("timeslots", "GET", "/rooms/{room_id}/slots"),
    Endpoint("timeslots", "POST", "/slots/{slot_id}/block"),
    Endpoint("booking", "POST", "/bookings/{booking_id}/complete"),
    Endpoint("booking", "POST", "/bookings/{booking_id}/no-show"),
    Endpoint("reminders", "GET", "/bookings/{booking_id}/reminders"),
}
"""Some of them, to show they are found."""

FOR_EVERY_USER = {
    Endpoint("timeslots", "GET", "/rooms"),
    Endpoint("timeslots", "GET", "/slots/{slot_id}"),
    Endpoint("booking", "POST", "/bookings"),
    Endpoint("booking", "GET", "/bookings/{booking_id}"),
    Endpoint("booking", "POST", "/bookings/{booking_id}/cancel"),
}


def test_the_admin_only_endpoints_are_read_from_the_code(documents: dict[str, Json]) -> None:
    admin = admin_only(SERVICES)
    assert admin >= ADMIN_ONLY_TODAY, f"not found: {ADMIN_ONLY_TODAY - admin}"
    assert not FOR_EVERY_USER & admin
    assert admin <= set(documented(documents)), "an admin route the documents do not show"


async def test_admin_only_endpoints_refuse_a_user(
    platform: Platform, documents: dict[str, Json], scene: Scene
) -> None:
    user = auth(unique_user())
    admin = admin_only(SERVICES)
    endpoints = [e for e in documented(documents) if e in admin]
    assert len(endpoints) == len(admin) >= len(ADMIN_ONLY_TODAY)
    before = await settled(platform)
    faults = []
    async with httpx.AsyncClient(timeout=30) as client:
        for endpoint in endpoints:
            response = await send(client, platform, endpoint, scene, user)
            faults += [f"{endpoint}: {fault}" for fault in problem_faults(response, 403)]
    after = await settled(platform)
    assert not faults, "\n".join(faults)
    assert not differences(before, after), "\n".join(differences(before, after))


async def test_a_user_cannot_see_or_change_another_users_booking(
    api: Api, platform: Platform, scene: Scene
) -> None:
    booking_id = scene.booking["id"]
    as_owner = await api.get_booking(scene.owner, booking_id)
    intruder = auth(unique_user("intruder"))
    before = await settled(platform)

    attempts = {
        "get": await api.booking.get(f"/bookings/{booking_id}", headers=intruder),
        "refund quote": await api.booking.get(
            f"/bookings/{booking_id}/refund-quote", headers=intruder
        ),
        "cancel": await api.booking.post(
            f"/bookings/{booking_id}/cancel", headers=intruder, json={"reason": "not mine"}
        ),
        "reschedule": await api.booking.post(
            f"/bookings/{booking_id}/reschedule",
            headers=intruder,
            json={"slot_id": scene.other_slot["id"]},
        ),
    }
    listed = await api.booking.get("/bookings", headers=intruder)
    filtered = await api.booking.get("/bookings", params={"user_id": scene.owner}, headers=intruder)

    faults = [f"{what}: {f}" for what, r in attempts.items() for f in problem_faults(r, 404)]
    faults += [f"list filtered by the owner: {f}" for f in problem_faults(filtered, 403)]
    assert not faults, "\n".join(faults)
    assert listed.status_code == 200, listed.text
    assert booking_id not in {b["id"] for b in listed.json()["items"]}
    after = await settled(platform)
    assert not differences(before, after), "\n".join(differences(before, after))
    assert await api.get_booking(scene.owner, booking_id) == as_owner
    # the control: the owner may do what the intruder was refused
    assert (await api.refund_quote(scene.owner, booking_id))["booking_id"] == booking_id
