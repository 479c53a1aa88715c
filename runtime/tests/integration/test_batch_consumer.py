"""Work-queue consumers (``on_batch``) against a real Kafka broker and PostgreSQL: each
event applied once, poison records dead-lettered, effects handed on only after the commit."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from booking_contracts.envelope import Envelope
from platform_runtime.kafka import KafkaPublisher, KafkaTransport
from platform_runtime.messaging import BatchItem, EventConsumer
from platform_runtime.timing import RetryPolicy
from platform_runtime.transactions import SqlTransactions
from platform_tooling.polling import eventually
from tests.support.kafka import produce, read_topic

from .conftest import Db, KernelTestEvent, effects, inbox
from .helpers import consuming, effect_notes


def envelope_bytes(note: str) -> bytes:
    event = KernelTestEvent(order_id=uuid.uuid4(), note=note)
    return Envelope.wrap(event, source="/t").to_json_bytes()


@asynccontextmanager
async def running_batches(
    db: Db, bootstrap: str, group: str, *, capacity: int = 100, fail_first: int = 0
) -> AsyncIterator[list[list[str]]]:
    """A batch consumer writing one ``effects`` row per event; yields what it handed on."""
    handed_on: list[list[str]] = []
    failures = {"left": fail_first}
    dead_letters = KafkaPublisher(bootstrap, client_id=group)
    consumer = EventConsumer(
        name=group,
        transactions=SqlTransactions(db.sessions, inbox),
        dead_letters=dead_letters,
        retry=RetryPolicy(
            max_attempts=3, initial=timedelta(seconds=0.01), maximum=timedelta(seconds=0.05)
        ),
        transport=KafkaTransport(bootstrap),
        capacity=lambda: capacity,
    )

    async def apply(session: AsyncSession, items: list[BatchItem]) -> list[str]:
        notes = [event.note for _, event in items if isinstance(event, KernelTestEvent)]
        for _, event in items:
            assert isinstance(event, KernelTestEvent)
            await session.execute(insert(effects).values(order_id=event.order_id, note=event.note))
        if "always-fails" in notes or failures["left"] > 0:
            failures["left"] -= 1
            raise RuntimeError("the batch cannot be applied")
        return notes

    consumer.on_batch(KernelTestEvent, apply, handed_on.append)
    try:
        async with consuming(consumer):
            yield handed_on
    finally:
        await dead_letters.stop()


async def test_a_batch_is_applied_once_and_handed_on_after_its_commit(
    db: Db, kafka_bootstrap: str, topic: str, unique: Callable[[str], str]
) -> None:
    once = envelope_bytes("once")
    await produce(kafka_bootstrap, topic, [once, envelope_bytes("two"), once, b"not json"])
    group = unique("batch")

    async with running_batches(db, kafka_bootstrap, group) as handed_on:
        notes = await eventually(lambda: effect_notes(db), lambda n: len(n) >= 2)
        await eventually(lambda: _count(handed_on), lambda n: n >= 2)
    await produce(kafka_bootstrap, topic, [once, envelope_bytes("three")])
    async with running_batches(db, kafka_bootstrap, group) as later:  # resumes, dedupes
        more = await eventually(lambda: effect_notes(db), lambda n: "three" in n)
        await eventually(lambda: _count(later), lambda n: n >= 1)
    dead = await read_topic(kafka_bootstrap, f"{topic}.dlq", at_least=1)

    assert sorted(notes) == ["once", "two"]
    assert sorted(n for batch in handed_on for n in batch) == ["once", "two"]
    assert sorted(more) == ["once", "three", "two"]
    assert [n for batch in later for n in batch] == ["three"]
    assert [r.value for r in dead] == [b"not json"]
    assert dict(dead[0].headers)["dlq_kind"] == b"undecodable"


async def test_a_failing_batch_is_retried_and_then_dead_lettered_record_by_record(
    db: Db, kafka_bootstrap: str, topic: str, unique: Callable[[str], str]
) -> None:
    group = unique("batch")
    await produce(kafka_bootstrap, topic, [envelope_bytes("flaky")])

    async with running_batches(db, kafka_bootstrap, group, fail_first=1) as handed_on:
        await eventually(lambda: _count(handed_on), lambda n: n >= 1)
    await produce(kafka_bootstrap, topic, [envelope_bytes("always-fails")])
    async with running_batches(db, kafka_bootstrap, group) as failed:
        dead = await read_topic(kafka_bootstrap, f"{topic}.dlq", at_least=1)

    assert handed_on == [["flaky"]]  # applied on its second attempt
    assert failed == []
    assert await effect_notes(db) == ["flaky"]  # the failed attempts rolled back
    assert dict(dead[0].headers)["dlq_kind"] == b"retries_exhausted"
    assert b"always-fails" in (dead[0].value or b"")


async def test_a_batch_that_keeps_failing_is_split_and_only_the_bad_record_dead_lettered(
    db: Db, kafka_bootstrap: str, topic: str, unique: Callable[[str], str]
) -> None:
    group = unique("batch")
    records = [envelope_bytes("before"), envelope_bytes("always-fails"), envelope_bytes("after")]
    await produce(kafka_bootstrap, topic, records)

    async with running_batches(db, kafka_bootstrap, group) as handed_on:
        dead = await read_topic(kafka_bootstrap, f"{topic}.dlq", at_least=1)
        await eventually(lambda: effect_notes(db), lambda n: len(n) >= 2)

    assert sorted(await effect_notes(db)) == ["after", "before"]
    assert sorted(n for batch in handed_on for n in batch) == ["after", "before"]
    assert [r.value for r in dead] == [records[1]]
    assert dict(dead[0].headers)["dlq_kind"] == b"retries_exhausted"


async def _count(batches: list[list[str]]) -> int:
    """How many events were handed on, in all batches."""
    return sum(len(batch) for batch in batches)
