"""Inbox rows older than the retention are purged, a batch at a time, by every worker."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select

from platform_runtime.db import make_engine, make_session_factory
from platform_runtime.http.metrics import Metrics
from platform_runtime.inbox import InboxPurger
from platform_runtime.service import ServiceRuntime
from platform_runtime.settings import Role, ServiceSettings
from platform_tooling.polling import eventually
from tests.support.service import running

from .conftest import Db, inbox, metadata

RETENTION = timedelta(days=30)
PURGED_3 = re.compile(r'^inbox_rows_purged_total\{table="inbox"\} 3\.0$', re.M)


async def add_claims(db: Db, consumer: str, ages: list[timedelta]) -> list[uuid.UUID]:
    """Claims made ``ages`` ago; their event ids, in that order."""
    ids = [uuid.uuid4() for _ in ages]
    now = datetime.now(UTC)
    async with db.sessions() as session, session.begin():
        await session.execute(
            insert(inbox),
            [
                {"consumer": consumer, "event_id": i, "event_type": "A.v1", "processed_at": now - a}
                for i, a in zip(ids, ages, strict=True)
            ],
        )
    return ids


async def claimed(db: Db) -> set[uuid.UUID]:
    async with db.sessions() as session:
        return set((await session.scalars(select(inbox.c.event_id))).all())


async def test_claims_older_than_the_retention_are_purged_and_newer_ones_kept(db: Db) -> None:
    old = await add_claims(db, "c", [RETENTION + timedelta(days=1)] * 4)
    old += await add_claims(db, "other", [RETENTION + timedelta(minutes=1)])
    kept = await add_claims(db, "c", [RETENTION - timedelta(hours=1), timedelta(0)])
    metrics = Metrics()
    purged = metrics.counter("inbox_rows_purged_total", "purged", ["table"])
    purger = InboxPurger(db.sessions, [inbox], retention=RETENTION, batch_size=2, purged=purged)

    deleted = await purger.purge_once()
    again = await purger.purge_once()

    assert (deleted, again) == (len(old), 0)
    assert await claimed(db) == set(kept)
    assert metrics.registry.get_sample_value("inbox_rows_purged_total", {"table": "inbox"}) == 5


async def test_a_stopped_purge_deletes_no_further_batch(db: Db) -> None:
    await add_claims(db, "c", [RETENTION * 2] * 3)
    stop = asyncio.Event()
    stop.set()

    deleted = await InboxPurger(db.sessions, [inbox], retention=RETENTION).purge_once(stop)

    assert deleted == 0
    assert len(await claimed(db)) == 3


async def test_the_worker_role_purges_the_inbox_and_counts_what_it_purged(
    db: Db, kafka_bootstrap: str
) -> None:
    await add_claims(db, "c", [RETENTION + timedelta(days=2)] * 3)
    kept = await add_claims(db, "c", [timedelta(days=1)])
    settings = ServiceSettings(
        service_name="kernel-purge",
        database_url=db.url,
        kafka_bootstrap_servers=kafka_bootstrap,
        role=Role.WORKER,
        inbox_retention_days=30,
        inbox_purge_interval_s=0.05,
    )
    runtime = ServiceRuntime(settings, metadata=metadata, source="/kernel-purge", run_relay=False)
    app = runtime.create_app(title="Kernel purge", version="1")

    async with running(app) as client:

        async def metrics() -> str:
            return (await client.get("/metrics")).text

        text = await eventually(metrics, lambda text: PURGED_3.search(text) is not None)

    assert PURGED_3.search(text)
    assert await claimed(db) == set(kept)


async def test_a_purge_that_cannot_reach_the_database_is_tried_again_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = make_engine("postgresql+asyncpg://nobody:nothing@127.0.0.1:1/none", pool_size=1)
    purger = InboxPurger(
        make_session_factory(engine), [inbox], retention=RETENTION, interval_s=0.01
    )
    stop = asyncio.Event()
    caplog.set_level(logging.WARNING, logger="platform_runtime.inbox")

    task = asyncio.create_task(purger.run(stop))
    failures = await eventually(
        lambda: asyncio.sleep(0, [r for r in caplog.records if "inbox purge failed" in r.message]),
        lambda found: len(found) >= 2,
    )
    stop.set()
    await asyncio.wait_for(task, 10)
    await engine.dispose()

    assert "(failure 1 in a row)" in failures[0].message
    assert failures[0].exc_info is not None  # one traceback per outage, not one per round
    assert not failures[1].exc_info
