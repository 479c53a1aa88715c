"""Small async helpers for the kernel's integration tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from faststream.kafka import KafkaBroker
from sqlalchemy import insert, select

from shared.kafka import KafkaPublisher, ensure_topics, make_broker
from shared.messaging import EventConsumer, EventContext, RetryPolicy

from .conftest import Db, KernelTestEvent, effects, inbox

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    timeout_s: float = 20.0,
    interval_s: float = 0.05,
) -> T:
    """Poll ``probe`` until ``done(value)``; return the last value either way."""
    deadline = time.monotonic() + timeout_s
    value = await probe()
    while not done(value) and time.monotonic() < deadline:
        await asyncio.sleep(interval_s)
        value = await probe()
    return value


class Refused(Exception):
    """Stands for a domain error the service declares impossible to apply."""


@asynccontextmanager
async def running_consumer(
    db: Db,
    bootstrap: str,
    topic: str,
    group: str,
    *,
    flaky_times: int = 0,
    max_attempts: int = 3,
) -> AsyncIterator[EventConsumer]:
    """An EventConsumer writing one ``effects`` row per event, on its own broker."""
    await ensure_topics(bootstrap, [topic])
    broker: KafkaBroker = make_broker(bootstrap, client_id=group)
    dead_letters = KafkaPublisher(bootstrap, client_id=group)
    consumer = EventConsumer(
        name=group,
        session_factory=db.sessions,
        inbox_table=inbox,
        dead_letters=dead_letters,
        retry=RetryPolicy(max_attempts=max_attempts, initial_backoff_s=0.01, max_backoff_s=0.05),
        permanent_errors=(Refused,),
    )
    failures = {"left": flaky_times}

    @consumer.on(KernelTestEvent)
    async def record_effect(event: KernelTestEvent, ctx: EventContext) -> None:
        await ctx.session.execute(insert(effects).values(order_id=event.order_id, note=event.note))
        if event.note == "impossible":
            raise Refused("this order can never be applied")
        if event.note == "always-fails":
            raise RuntimeError("a bug that does not go away")
        if event.note == "flaky" and failures["left"] > 0:
            failures["left"] -= 1
            raise RuntimeError("a passing failure")

    consumer.attach(broker)
    await broker.start()
    try:
        yield consumer
    finally:
        consumer.stop()
        await broker.stop()
        await dead_letters.stop()


async def effect_notes(db: Db) -> list[str]:
    async with db.sessions() as session:
        return list((await session.scalars(select(effects.c.note).order_by(effects.c.id))).all())
