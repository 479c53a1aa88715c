"""Hold expiry is set-based: one sweep costs the same few statements whether it expires five
holds or fifty, in as many slots (not a statement or four per slot, as it once did)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event

from booking import handlers
from booking.store import SqlStore
from platform_runtime.db import make_engine, make_session_factory
from platform_runtime.http.context import runtime_of

from .conftest import Service


async def _sweep(service: Service, holds: int) -> tuple[int, list[str]]:
    """Make ``holds`` unpaid holds in as many slots, then expire them in one sweep an hour
    after their hold ran out: how many it expired, and the statements it sent."""
    room = await service.room()
    for i, slot in enumerate(await service.slots(room, holds)):
        await service.booking(slot, f"sweep-{holds}-{i}")
    engine = make_engine(service.settings.database_url, pool_size=1)
    sent: list[str] = []
    event.listen(
        engine.sync_engine,
        "before_cursor_execute",
        lambda _conn, _cursor, statement, *_: sent.append(statement),
    )
    try:
        async with make_session_factory(engine).begin() as session:
            expired = await handlers.expire_holds(
                SqlStore(session),
                runtime_of(service.app).outbox,
                now=service.clock() + timedelta(hours=1),
                limit=500,
            )
    finally:
        await engine.dispose()
    return expired, sent


async def test_a_sweep_of_fifty_expired_holds_costs_what_a_sweep_of_five_does(
    service: Service,
) -> None:
    few, for_few = await _sweep(service, 5)
    many, for_many = await _sweep(service, 50)
    booked = await service.row("SELECT sum(booked_count) AS n FROM slots")
    expired = await service.row("SELECT count(*) AS n FROM bookings WHERE status = 'expired'")

    assert (few, many) == (5, 50)
    assert len(for_many) == len(for_few) <= 8, "\n".join(for_many)
    assert booked == {"n": 0}  # every place went back
    assert expired == {"n": 55}
