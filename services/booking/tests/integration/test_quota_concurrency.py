"""A quota holds under concurrency: many requests of one user at once get exactly what the
quota allows, whether the service writes concurrent creates in shared transactions or each
alone. Each of its two services runs on an in-memory broker of its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.support.brokers import MemoryBroker
from tests.support.fixtures import CreateDatabase

from .conftest import Service, serve
from .test_rules import berlin, refused_by


@pytest_asyncio.fixture(
    scope="module", loop_scope="session", params=[64, 1], ids=["coalesced", "alone"]
)
async def each_way(
    request: pytest.FixtureRequest, create_database: CreateDatabase
) -> AsyncIterator[Service]:
    """A service whose concurrent creates are written in shared transactions (64) or each in
    a transaction of its own (1): the quota holds either way."""
    async with serve(
        create_database, MemoryBroker(), create_batch_max=request.param, max_unpaid_holds=100
    ) as running_service:
        yield running_service


async def test_fifty_requests_of_one_user_at_once_get_exactly_the_quota(
    each_way: Service,
) -> None:
    service = each_way
    room = await service.room()
    await service.rules(room, 1, quotas=[{"most": 3, "per": "week"}])
    week = await service.slots(room, 50, starts_at=berlin("2030-05-06T08:00"), minutes=30)

    responses = await asyncio.gather(*(service.book(slot, "member-50") for slot in week))

    made = [r for r in responses if r.status_code == 201]
    assert len(made) == 3
    for refused in (r for r in responses if r.status_code != 201):
        body = refused_by(refused, "quota_per_week", "3 per week")
        assert body["detail"] == (
            "room 'Room 7' allows 3 bookings per week; you have 3 in the week of 2030-05-06"
        )
    booked = [await service.booked(slot.slot_id) for slot in week]
    assert sum(booked) == 3  # the refused requests took no place
    count = await service.row(
        "SELECT used FROM quota_counts WHERE user_id = 'member-50' AND scope LIKE 'room:%'"
    )
    assert count == {"used": 3}
