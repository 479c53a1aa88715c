"""Without valid credentials every endpoint (each operation of each service's OpenAPI
document but the health probes) answers a 401 problem, and nothing changes; the health probes
and the metrics answer anyone."""

from __future__ import annotations

import httpx
import pytest
import pytest_asyncio

from platform_tooling.client import ADMIN, Api, Json
from tests.support.platform import SERVICES, Platform

from .endpoints import HTTP_METHODS, Endpoint, documented, send
from .problems import problem_faults
from .scene import Scene, set_scene
from .state import differences, settled
from .tokens import BAD_CREDENTIALS, BadCredentials

KNOWN = {
    Endpoint("timeslots", "POST", "/rooms"),
    Endpoint("timeslots", "GET", "/rooms"),
    Endpoint("timeslots", "PATCH", "/rooms/{room_id}"),
    Endpoint("timeslots", "PUT", "/rooms/{room_id}/schedule"),
    Endpoint("timeslots", "POST", "/rooms/{room_id}/slots"),
    Endpoint("timeslots", "POST", "/slots/{slot_id}/block"),
    Endpoint("timeslots", "GET", "/availability"),
    Endpoint("booking", "POST", "/bookings"),
    Endpoint("booking", "GET", "/bookings/{booking_id}"),
    Endpoint("booking", "POST", "/bookings/{booking_id}/cancel"),
    Endpoint("booking", "POST", "/bookings/{booking_id}/reschedule"),
    Endpoint("booking", "GET", "/bookings/{booking_id}/refund-quote"),
    Endpoint("booking", "POST", "/bookings/{booking_id}/complete"),
    Endpoint("reminders", "GET", "/bookings/{booking_id}/reminders"),
}
"""Some endpoints of today, to show the enumeration finds what it should."""


def test_the_endpoints_probed_are_those_the_services_document(documents: dict[str, Json]) -> None:
    endpoints = documented(documents)
    assert set(endpoints) >= KNOWN, f"not found in the documents: {KNOWN - set(endpoints)}"
    operations = [
        (service, method, path)
        for service, document in documents.items()
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    ]
    health = [o for o in operations if o[2].startswith("/health/")]
    assert len(health) == 2 * len(SERVICES)  # live and ready: the only public operations
    assert len(endpoints) == len(operations) - len(health)
    assert not [e for e in endpoints if e.path.startswith("/health/")]


@pytest.mark.parametrize("credentials", BAD_CREDENTIALS, ids=str)
async def test_every_endpoint_refuses_a_caller_without_valid_credentials(
    credentials: BadCredentials, platform: Platform, documents: dict[str, Json], scene: Scene
) -> None:
    endpoints = documented(documents)
    assert len(endpoints) >= len(KNOWN)
    before = await settled(platform)
    faults = []
    async with httpx.AsyncClient(timeout=30) as client:
        for endpoint in endpoints:
            response = await send(client, platform, endpoint, scene, credentials.headers())
            found = problem_faults(response, 401)
            challenge = response.headers.get("www-authenticate", "")
            if credentials.challenge not in challenge:
                found.append(f"WWW-Authenticate {challenge!r} lacks {credentials.challenge!r}")
            if not found and credentials.reason not in response.json()["detail"]:
                found.append(f"detail {response.json()['detail']!r} lacks {credentials.reason!r}")
            faults += [f"{endpoint}: {fault}" for fault in found]
    after = await settled(platform)
    assert not faults, "\n".join(faults)
    assert not differences(before, after), "\n".join(differences(before, after))


async def test_the_same_requests_with_an_admin_token_go_through_and_change_things(
    platform: Platform, documents: dict[str, Json], own_scene: Scene
) -> None:
    """The control of the test above: its requests are ones the services accept, and the
    state it compares notices what they do."""
    scene = own_scene
    before = await settled(platform)
    refused = []
    async with httpx.AsyncClient(timeout=30) as client:
        for endpoint in documented(documents):
            response = await send(client, platform, endpoint, scene, ADMIN)
            if response.status_code in {401, 403} or response.status_code >= 500:
                refused.append(f"{endpoint}: {response.status_code} {response.text[:300]}")
    after = await settled(platform)
    assert not refused, "\n".join(refused)
    changed = {line.split(":")[0] for line in differences(before, after)}
    assert {"timeslots.rooms", "timeslots.timeslots", "booking.bookings"} <= changed, changed


@pytest.mark.parametrize("path", ["/health/live", "/health/ready", "/metrics"])
@pytest.mark.parametrize("service", SERVICES)
async def test_health_probes_and_metrics_need_no_token(
    platform: Platform, service: str, path: str
) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(platform.url(service) + path)
    assert response.status_code == 200, response.text


@pytest_asyncio.fixture(loop_scope="session")
async def own_scene(api: Api) -> Scene:
    """A scene of its own: the control changes what it touches."""
    return await set_scene(api)
