"""The batch consumer runtime against a real Kafka broker and PostgreSQL: a poll is applied a
partition at a time in one transaction, poison records leave alone, a crash before the
offset commit doubles nothing, and per-key order survives batches, replicas and rebalances."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import pytest
import pytest_asyncio
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from booking_contracts.catalogue import PaymentSucceeded
from booking_contracts.envelope import Envelope
from platform_runtime.http.metrics import Metrics
from platform_runtime.kafka import KafkaPublisher
from platform_runtime.messaging import EventContext
from platform_runtime.transactions import SqlTransactions
from platform_runtime.transport import IncomingRecord
from platform_tooling.polling import eventually
from tests.support.kafka import read_all

from .conftest import Db, KernelTestEvent, effects, inbox
from .helpers import (
    consuming,
    effect_notes,
    new_consumer,
    outcome_count,
    produce_to,
    running_consumer,
)

EVENT = KernelTestEvent.type_name()


def event(note: str, order_id: uuid.UUID | None = None) -> Envelope:
    return Envelope.wrap(KernelTestEvent(order_id=order_id or uuid.uuid4(), note=note), source="/t")


async def produce(bootstrap: str, topic: str, notes: list[str]) -> list[bytes]:
    """One event per note on partition 0, with the headers the outbox writes; their values."""
    envelopes = [event(note) for note in notes]
    await produce_to(
        bootstrap, topic, [(0, b"k", e.to_json_bytes(), e.headers()) for e in envelopes]
    )
    return [e.to_json_bytes() for e in envelopes]


@pytest_asyncio.fixture(loop_scope="session")
async def admin(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await client.start()
    yield client
    await client.close()


async def committed(admin: AIOKafkaAdminClient, group: str) -> dict[int, int]:
    """The offsets ``group`` committed, by partition."""
    offsets = await admin.list_consumer_group_offsets(group)
    return {tp.partition: meta.offset for tp, meta in offsets.items()}


async def test_a_poison_record_in_the_middle_of_a_batch_is_dead_lettered_alone(
    db: Db, kafka_bootstrap: str, topic: str, unique: Callable[[str], str]
) -> None:
    notes = ["a", "b", "impossible", "c", "always-fails", "d"]
    values = await produce(kafka_bootstrap, topic, notes)  # one partition, one poll
    calls: list[str] = []

    async with running_consumer(db, kafka_bootstrap, topic, unique("g"), calls=calls):
        applied = await eventually(lambda: effect_notes(db), lambda n: "d" in n)
    dead = await read_all(kafka_bootstrap, f"{topic}.dlq")

    assert applied == ["a", "b", "c", "d"]
    assert [r.value for r in dead] == [values[2], values[4]]
    headers = [dict(r.headers) for r in dead]
    assert [h["dlq_kind"] for h in headers] == [b"rejected", b"retries_exhausted"]
    assert [h["dlq_original_offset"] for h in headers] == [b"2", b"4"]
    assert b"failed 3 times" in headers[1]["dlq_reason"]
    # One transaction for the poll, rolled back at the refused record: the records before it
    # are applied again as one batch, the refused one is not tried again. The failing one is
    # tried on its own as often as a record of its own would be (the batch's try aside).
    assert calls[:5] == ["a", "b", "impossible", "a", "b"]
    assert calls.count("impossible") == 1
    assert calls.count("always-fails") == 1 + 3
    assert calls.count("d") == 1


async def test_a_batch_redelivered_after_a_crash_before_its_offset_commit_has_no_second_effect(
    db: Db,
    kafka_bootstrap: str,
    topic: str,
    unique: Callable[[str], str],
    admin: AIOKafkaAdminClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await produce(kafka_bootstrap, topic, ["x", "y", "z"])
    group = unique("g")
    dead_letters = KafkaPublisher(kafka_bootstrap, client_id=group)

    async def crash(*_: object) -> None:
        raise RuntimeError("the process died after the database commit")

    crashing = new_consumer(db, kafka_bootstrap, group, dead_letters)
    crashing.on(KernelTestEvent)(write_effect)
    monkeypatch.setattr(crashing, "_commit", crash)
    with pytest.raises(RuntimeError, match="process died"):
        async with consuming(crashing) as task:
            await asyncio.wait({task}, timeout=30)
    assert await effect_notes(db) == ["x", "y", "z"]
    assert await committed(admin, group) == {}

    metrics = Metrics()
    again = new_consumer(db, kafka_bootstrap, group, dead_letters, metrics=metrics)
    again.on(KernelTestEvent)(write_effect)
    async with consuming(again):
        offsets = await eventually(lambda: committed(admin, group), lambda c: c == {0: 3})
    await dead_letters.stop()

    assert offsets == {0: 3}
    assert await effect_notes(db) == ["x", "y", "z"]
    assert outcome_count(metrics, group, EVENT, "duplicate") == 3
    assert outcome_count(metrics, group, EVENT, "processed") == 0


async def test_stopping_during_a_retry_commits_only_the_records_before_it(
    db: Db,
    kafka_bootstrap: str,
    topic: str,
    unique: Callable[[str], str],
    admin: AIOKafkaAdminClient,
) -> None:
    await produce(kafka_bootstrap, topic, ["ok", "flaky", "z"])
    group = unique("g")
    calls: list[str] = []

    async with running_consumer(
        db, kafka_bootstrap, topic, group, flaky_times=1_000, max_attempts=1_000, calls=calls
    ):
        await eventually(lambda: _count(calls, "flaky"), lambda n: n >= 3)
    offsets = await committed(admin, group)
    async with running_consumer(db, kafka_bootstrap, topic, group):
        applied = await eventually(lambda: effect_notes(db), lambda n: "z" in n)

    assert offsets == {0: 1}, "the abandoned record and those after it are not committed"
    assert applied == ["ok", "flaky", "z"]


async def test_per_key_order_holds_across_batches_with_two_replicas_and_a_rebalance(
    db: Db,
    kafka_bootstrap: str,
    topic: str,
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = [uuid.uuid4() for _ in range(12)]
    per_key = 25
    await produce_to(
        kafka_bootstrap,
        topic,
        [
            (k % 3, str(key).encode(), envelope.to_json_bytes(), envelope.headers())
            for seq in range(per_key)
            for k, key in enumerate(keys)
            for envelope in [event(f"{k}:{seq}", key)]
        ],
    )
    group = unique("g")
    metrics = Metrics()
    gate, blocked, revoking = asyncio.Event(), asyncio.Event(), asyncio.Event()
    first_calls: list[str] = []

    async def first(event: KernelTestEvent, ctx: EventContext) -> None:
        first_calls.append(event.note)
        if len(first_calls) == 20:  # the rebalance comes while this batch is in flight
            blocked.set()
            await gate.wait()
        await write_effect(event, ctx, replica="1")

    async def second(event: KernelTestEvent, ctx: EventContext) -> None:
        await write_effect(event, ctx, replica="2")

    publisher = KafkaPublisher(kafka_bootstrap, client_id=group)
    one = new_consumer(db, kafka_bootstrap, group, publisher, max_records=10, metrics=metrics)
    two = new_consumer(db, kafka_bootstrap, group, publisher, max_records=10, metrics=metrics)
    one.on(KernelTestEvent)(first)
    two.on(KernelTestEvent)(second)
    hand_over = one._hand_over

    async def observed_hand_over() -> None:
        revoking.set()
        await hand_over()

    monkeypatch.setattr(one, "_hand_over", observed_hand_over)

    async with consuming(one):
        await asyncio.wait_for(blocked.wait(), 30)
        async with consuming(two):
            await asyncio.wait_for(revoking.wait(), 30)
            gate.set()
            total = len(keys) * per_key
            await eventually(lambda: _effect_count(db), lambda n: n >= total, timeout_s=90)
    await publisher.stop()

    async with db.sessions() as session:
        rows = (await session.execute(select(effects.c.note).order_by(effects.c.id))).all()
    applied = [note.split(":") for (note,) in rows]  # replica:key:seq, in commit order
    by_key: dict[str, list[int]] = {}
    for _, key, seq in applied:
        by_key.setdefault(key, []).append(int(seq))
    assert by_key == {str(k): list(range(per_key)) for k in range(len(keys))}
    assert {replica for replica, _, _ in applied} == {"1", "2"}, "the rebalance moved work"
    assert outcome_count(metrics, group, EVENT, "duplicate") == 0, (
        "the batch in flight was committed before its partitions moved on"
    )


async def test_types_without_a_handler_are_skipped_by_their_header_without_decoding(
    db: Db, kafka_bootstrap: str, topic: str, unique: Callable[[str], str]
) -> None:
    good = event("good")
    await produce_to(
        kafka_bootstrap,
        topic,
        [
            (0, b"k", b"\x00 not JSON", {"ce_type": PaymentSucceeded.type_name()}),
            (0, b"k", b"not JSON either", {"ce_type": "NoSuchEvent.v9"}),
            (0, b"k", good.to_json_bytes(), good.headers()),
        ],
    )
    group, metrics = unique("g"), Metrics()

    async with running_consumer(db, kafka_bootstrap, topic, group, metrics=metrics):
        applied = await eventually(lambda: effect_notes(db), lambda n: "good" in n)
    dead = await read_all(kafka_bootstrap, f"{topic}.dlq")

    assert applied == ["good"]
    assert outcome_count(metrics, group, PaymentSucceeded.type_name(), "ignored") == 1
    # A type the platform does not define is decoded, and cannot be: a dead letter.
    assert [(r.value, dict(r.headers)["dlq_kind"]) for r in dead] == [
        (b"not JSON either", b"undecodable")
    ]


async def test_the_partitions_of_a_poll_are_applied_concurrently(
    db: Db, kafka_bootstrap: str, topic: str, unique: Callable[[str], str]
) -> None:
    """Each partition's handler waits until the other partition's handler has started: one
    lane after the other would never get there."""
    started = {"p0": asyncio.Event(), "p1": asyncio.Event()}
    met: dict[str, bool] = {}

    async def meet(event: KernelTestEvent, ctx: EventContext) -> None:
        mine, other = event.note, "p1" if event.note == "p0" else "p0"
        started[mine].set()
        try:
            await asyncio.wait_for(started[other].wait(), 20)
            met[mine] = True
        except TimeoutError:
            met[mine] = False
        await write_effect(event, ctx)

    await produce_to(
        kafka_bootstrap,
        topic,
        [(p, b"k", event(f"p{p}").to_json_bytes(), {}) for p in (0, 1)],
    )
    group = unique("g")
    publisher = KafkaPublisher(kafka_bootstrap, client_id=group)
    consumer = new_consumer(db, kafka_bootstrap, group, publisher)
    consumer.on(KernelTestEvent)(meet)
    async with consuming(consumer):
        applied = await eventually(lambda: effect_notes(db), lambda n: len(n) == 2, timeout_s=40)
    await publisher.stop()

    assert sorted(applied) == ["p0", "p1"]
    assert met == {"p0": True, "p1": True}


class DatabaseDown(SqlTransactions):
    """Transactions on a database that is unreachable for the first ``failures`` of them."""

    def __init__(
        self, db: Db, failures: int, on_failure: Callable[[], None] = lambda: None
    ) -> None:
        super().__init__(db.sessions, inbox)
        self.failures = failures
        self.on_failure = on_failure

    def begin(self) -> AbstractAsyncContextManager[AsyncSession]:
        if self.failures > 0:
            self.failures -= 1
            self.on_failure()
            raise ConnectionRefusedError("the database is down")
        return super().begin()


async def test_while_the_database_is_unreachable_records_wait_without_counting_attempts(
    db: Db, kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    def records(*notes: str, first: int) -> list[IncomingRecord]:
        return [
            IncomingRecord("t", 0, first + i, None, event(note).to_json_bytes())
            for i, note in enumerate(notes)
        ]

    publisher = KafkaPublisher(kafka_bootstrap, client_id="outage")
    consumer = new_consumer(db, kafka_bootstrap, unique("g"), publisher, max_attempts=1)
    consumer.on(KernelTestEvent)(write_effect)

    consumer.transactions = DatabaseDown(db, failures=3)
    batch = await consumer.handle(records("a", "b", "c", first=0))
    consumer.transactions = DatabaseDown(db, failures=3)
    alone = await consumer.handle(records("d", first=3))
    consumer.transactions = DatabaseDown(db, failures=1_000, on_failure=consumer.stop)
    stopped = await consumer.handle(records("e", "f", first=4))  # stopped while it waits
    await publisher.stop()

    assert (batch, alone, stopped) == ({("t", 0): 3}, {("t", 0): 4}, {})
    assert await effect_notes(db) == ["a", "b", "c", "d"], "nothing dead-lettered, nothing lost"


async def write_effect(event: KernelTestEvent, ctx: EventContext, *, replica: str = "") -> None:
    note = f"{replica}:{event.note}" if replica else event.note
    await ctx.session.execute(insert(effects).values(order_id=event.order_id, note=note))


async def _count(calls: list[str], note: str) -> int:
    return calls.count(note)


async def _effect_count(db: Db) -> int:
    async with db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(effects)) or 0)
