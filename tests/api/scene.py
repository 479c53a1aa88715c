"""What the probes aim at: real resources (a room, two of its slots and a pending booking of
one user), so that a request let through by mistake would change something."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from platform_tooling.client import Api, Json, expect, next_minute, unique_user, utc_now


@dataclass(frozen=True)
class Scene:
    room: Json
    slot: Json
    other_slot: Json
    owner: str
    booking: Json
    """The owner's booking of ``slot`` (pending: it is never paid)."""

    def path_values(self) -> dict[str, str]:
        """Path parameter -> the id of a real resource."""
        return {
            "room_id": str(self.room["id"]),
            "slot_id": str(self.slot["id"]),
            "booking_id": str(self.booking["id"]),
        }


async def set_scene(api: Api) -> Scene:
    """Create the scene as an admin and its owner would; returns once the owner has booked
    (the booking service learns of slots from Kafka, a moment after they are made)."""
    room = await api.create_room(f"API probe {unique_user('room')}")
    starts_at = next_minute(utc_now() + timedelta(days=2))
    slot = await api.custom_slot(room["id"], starts_at)
    other_slot = await api.custom_slot(room["id"], starts_at + timedelta(hours=2))
    owner = unique_user("owner")
    booking = expect(await api.book(owner, slot["id"]), 201)
    return Scene(room=room, slot=slot, other_slot=other_slot, owner=owner, booking=booking)
