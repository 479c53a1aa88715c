"""Small async helpers for the kernel's integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TypeVar

from aiokafka import AIOKafkaProducer
from sqlalchemy import insert, select

from platform_runtime.http.metrics import Metrics
from platform_runtime.kafka import KafkaPublisher, KafkaTransport, ensure_topics
from platform_runtime.messaging import EventConsumer, EventContext
from platform_runtime.timing import RetryPolicy
from platform_runtime.transactions import SqlTransactions

from .conftest import Db, KernelTestEvent, effects, inbox

T = TypeVar("T")


class Refused(Exception):
    """Stands for a domain error the service declares impossible to apply."""


@asynccontextmanager
async def consuming(consumer: EventConsumer) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``consumer``'s loop while the block runs; then stop it and wait for it to end
    (its crash, if any, is raised here)."""
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield task
    finally:
        consumer.stop()
        stop.set()
        await asyncio.wait_for(task, 30)


@asynccontextmanager
async def running_consumer(
    db: Db,
    bootstrap: str,
    topic: str,
    group: str,
    *,
    flaky_times: int = 0,
    max_attempts: int = 3,
    max_records: int = 500,
    metrics: Metrics | None = None,
    calls: list[str] | None = None,
) -> AsyncIterator[EventConsumer]:
    """An EventConsumer writing one ``effects`` row per event, running its own loop.

    ``calls``: the note of every event its handler was called with, in order."""
    await ensure_topics(bootstrap, [topic])
    dead_letters = KafkaPublisher(bootstrap, client_id=group)
    consumer = new_consumer(
        db,
        bootstrap,
        group,
        dead_letters,
        max_attempts=max_attempts,
        max_records=max_records,
        metrics=metrics,
    )
    failures = {"left": flaky_times}

    @consumer.on(KernelTestEvent)
    async def record_effect(event: KernelTestEvent, ctx: EventContext) -> None:
        if calls is not None:
            calls.append(event.note)
        await ctx.session.execute(insert(effects).values(order_id=event.order_id, note=event.note))
        if event.note == "impossible":
            raise Refused("this order can never be applied")
        if event.note == "always-fails":
            raise RuntimeError("a bug that does not go away")
        if event.note == "flaky" and failures["left"] > 0:
            failures["left"] -= 1
            raise RuntimeError("a passing failure")

    try:
        async with consuming(consumer):
            yield consumer
    finally:
        await dead_letters.stop()


def new_consumer(
    db: Db,
    bootstrap: str,
    group: str,
    dead_letters: KafkaPublisher,
    *,
    max_attempts: int = 3,
    max_records: int = 500,
    metrics: Metrics | None = None,
) -> EventConsumer:
    """A consumer of ``group`` with quick retries and ``Refused`` as its permanent error."""
    return EventConsumer(
        name=group,
        transactions=SqlTransactions(db.sessions, inbox),
        dead_letters=dead_letters,
        retry=RetryPolicy(
            max_attempts=max_attempts,
            initial=timedelta(seconds=0.01),
            maximum=timedelta(seconds=0.05),
        ),
        permanent_errors=(Refused,),
        metrics=metrics,
        transport=KafkaTransport(bootstrap),
        max_records=max_records,
    )


async def produce_to(
    bootstrap: str, topic: str, records: Sequence[tuple[int, bytes | None, bytes, dict[str, str]]]
) -> None:
    """Publish ``(partition, key, value, headers)`` records in order, acks=all."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for partition, key, value, headers in records:
            await producer.send_and_wait(
                topic,
                value,
                key=key,
                partition=partition,
                headers=[(k, v.encode()) for k, v in headers.items()],
            )
    finally:
        await producer.stop()


def outcome_count(metrics: Metrics, consumer: str, event_type: str, outcome: str) -> float:
    """``events_consumed_total`` of one consumer, event type and outcome (0 if never)."""
    labels = {"consumer": consumer, "event_type": event_type, "outcome": outcome}
    return metrics.registry.get_sample_value("events_consumed_total", labels) or 0.0


async def effect_notes(db: Db) -> list[str]:
    async with db.sessions() as session:
        return list((await session.scalars(select(effects.c.note).order_by(effects.c.id))).all())
