"""The endpoints under test: every operation of each service's OpenAPI document (so a new
endpoint is probed without anyone listing it here), which of them the code reserves for admins,
and a concrete request for each that would change something if it were let through."""

from __future__ import annotations

import importlib
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from platform_runtime.http.auth import require_admin
from platform_tooling.client import Json, next_minute, utc_now
from tests.support.platform import Platform

from .scene import Scene

HTTP_METHODS = ("get", "put", "post", "patch", "delete")
PUBLIC_PREFIXES = ("/health/",)
"""Documented operations that answer without a token (probes of the orchestrator)."""


@dataclass(frozen=True, order=True)
class Endpoint:
    service: str
    method: str
    path: str
    takes_body: bool = field(default=False, compare=False)

    def __str__(self) -> str:
        return f"{self.service} {self.method} {self.path}"


def documented(documents: Mapping[str, Json]) -> list[Endpoint]:
    """Every operation of every service's document except the public health probes."""
    found = []
    for service, document in documents.items():
        for path, item in document["paths"].items():
            if path.startswith(PUBLIC_PREFIXES):
                continue
            for method in HTTP_METHODS:
                if method in item:
                    found.append(
                        Endpoint(service, method.upper(), path, "requestBody" in item[method])
                    )
    return sorted(found)


def admin_only(services: Iterable[str]) -> set[Endpoint]:
    """The routes whose dependencies include ``require_admin`` (``admin: AdminUser``), read
    from each service's app as ``<service>.main.create_app()`` builds it."""
    found = set()
    for service in services:
        app: FastAPI = importlib.import_module(f"{service}.main").create_app()
        for route in iter_route_contexts(app.routes):
            if (
                isinstance(route.original_route, APIRoute)
                and route.path is not None
                and _depends_on_admin(route.dependant)
            ):
                found |= {Endpoint(service, m, route.path) for m in route.methods or ()}
    return found


def _depends_on_admin(dependant: Dependant) -> bool:
    return any(d.call is require_admin or _depends_on_admin(d) for d in dependant.dependencies)


def request_for(endpoint: Endpoint, scene: Scene) -> tuple[str, Json | None]:
    """The path (ids of the scene's resources) and a body the endpoint would accept."""
    ids = scene.path_values()
    path = re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), str(uuid.uuid4())), endpoint.path)
    if not endpoint.takes_body:
        return path, None
    return path, _bodies(scene).get((endpoint.service, endpoint.method, endpoint.path), {})


async def send(
    client: httpx.AsyncClient,
    platform: Platform,
    endpoint: Endpoint,
    scene: Scene,
    headers: dict[str, str],
) -> httpx.Response:
    """Call ``endpoint`` as :func:`request_for` says, with ``headers``."""
    path, body = request_for(endpoint, scene)
    return await client.request(
        endpoint.method, platform.url(endpoint.service) + path, headers=headers, json=body
    )


def _bodies(scene: Scene) -> dict[tuple[str, str, str], Json]:
    """Valid bodies of the endpoints known today; an endpoint added later gets ``{}`` (its
    answer is checked all the same)."""
    starts_at = next_minute(utc_now() + timedelta(days=5))
    day = (utc_now() + timedelta(days=20)).date().isoformat()
    return {
        ("timeslots", "POST", "/rooms"): {
            "name": "Let through",
            "capacity": 1,
            "room_type": "consultation",
            "hourly_rate": {"amount": "10.00", "currency": "EUR"},
            "time_zone": "UTC",
        },
        ("timeslots", "PATCH", "/rooms/{room_id}"): {"name": "Renamed", "capacity": 2},
        ("timeslots", "PUT", "/rooms/{room_id}/schedule"): {
            "open_weekdays": [1, 2, 3, 4, 5, 6, 7],
            "hours": [{"start": "09:00", "end": "10:00"}],
            "slot_minutes": 60,
        },
        ("timeslots", "POST", "/rooms/{room_id}/slots/generate"): {
            "date_from": day,
            "date_to": day,
        },
        ("timeslots", "POST", "/rooms/{room_id}/slots"): {
            "slots": [
                {
                    "starts_at": starts_at.isoformat(),
                    "ends_at": (starts_at + timedelta(hours=1)).isoformat(),
                }
            ]
        },
        ("booking", "POST", "/bookings"): {"slot_id": scene.other_slot["id"]},
        ("booking", "POST", "/bookings/{booking_id}/cancel"): {"reason": "let through"},
        ("booking", "POST", "/bookings/{booking_id}/reschedule"): {
            "slot_id": scene.other_slot["id"]
        },
    }
