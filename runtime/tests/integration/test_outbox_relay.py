"""The outbox and its relay against a real PostgreSQL and a real Kafka broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable, Sequence
from typing import TypedDict, Unpack

import asyncpg
import pytest
from sqlalchemy import func, insert, select

from platform_runtime.db import asyncpg_dsn
from platform_runtime.kafka import KafkaPublisher, ensure_topics
from platform_runtime.outbox import (
    NOTIFY_CHANNEL,
    OutboundRecord,
    Outbox,
    OutboxNotifier,
    OutboxRelay,
    Publisher,
)
from platform_tooling.polling import eventually
from tests.support.kafka import read_topic

from .conftest import Db, KernelTestEvent, effects, outbox
from .helpers import effect_notes, running_consumer


async def write(db: Db, *notes: str, order_id: uuid.UUID | None = None) -> list[uuid.UUID]:
    """One transaction: a state change plus one event per note."""
    ids = []
    async with db.sessions() as session, session.begin():
        for note in notes:
            oid = order_id or uuid.uuid4()
            await session.execute(insert(effects).values(order_id=oid, note=f"state:{note}"))
            [envelope] = await db.outbox.add(session, KernelTestEvent(order_id=oid, note=note))
            ids.append(envelope.id)
    return ids


class RelayOptions(TypedDict, total=False):
    """The settings of :class:`OutboxRelay` these tests change; the rest keep its defaults."""

    listen_dsn: str
    batch_size: int
    poll_interval_s: float
    retry_backoff_max_s: float


def relay(db: Db, publisher: Publisher, **options: Unpack[RelayOptions]) -> OutboxRelay:
    return OutboxRelay(session_factory=db.sessions, table=outbox, publisher=publisher, **options)


async def pending(db: Db) -> int:
    async with db.sessions() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
            )
            or 0
        )


async def test_committed_event_is_published_once_with_its_envelope(
    db: Db, publisher: KafkaPublisher, kafka_bootstrap: str, topic: str
) -> None:
    [event_id] = await write(db, "hello")
    r = relay(db, publisher)

    assert await r.publish_pending() == 1
    assert await r.publish_pending() == 0

    records = await read_topic(kafka_bootstrap, topic, at_least=1, settle_s=1.0)
    assert len(records) == 1
    document = json.loads(records[0].value)
    assert document["id"] == str(event_id)
    assert document["type"] == "KernelTestEvent.v1"
    assert document["source"] == "/kernel-tests"
    assert document["data"]["note"] == "hello"
    assert records[0].key == document["subject"].encode()
    assert dict(records[0].headers)["ce_id"] == str(event_id).encode()
    assert await pending(db) == 0


async def test_rolled_back_transaction_publishes_nothing(
    db: Db, publisher: KafkaPublisher, kafka_bootstrap: str, topic: str
) -> None:
    async def failing_change() -> None:
        async with db.sessions() as session, session.begin():
            await db.outbox.add(session, KernelTestEvent(order_id=uuid.uuid4(), note="ghost"))
            raise RuntimeError("the state change failed")

    with pytest.raises(RuntimeError, match="state change failed"):
        await failing_change()
    await write(db, "real")

    assert await relay(db, publisher).publish_pending() == 1
    records = await read_topic(kafka_bootstrap, topic, at_least=1, settle_s=1.0)
    assert [json.loads(r.value)["data"]["note"] for r in records] == ["real"]


class PublishThenHang:
    """Publishes for real, then never returns: the relay dies before marking the rows."""

    def __init__(self, real: KafkaPublisher) -> None:
        self.real = real
        self.published = asyncio.Event()

    async def send_batch(self, records: Sequence[OutboundRecord]) -> None:
        await self.real.send_batch(records)
        self.published.set()
        await asyncio.Event().wait()


async def test_relay_killed_between_publish_and_mark_publishes_again_and_applies_once(
    db: Db,
    publisher: KafkaPublisher,
    kafka_bootstrap: str,
    topic: str,
    unique: Callable[[str], str],
) -> None:
    [event_id] = await write(db, "at-least-once")
    hanging = PublishThenHang(publisher)
    task = asyncio.create_task(relay(db, hanging).run(asyncio.Event()))
    await asyncio.wait_for(hanging.published.wait(), 20)
    task.cancel()  # the process dies here: the transaction never commits
    with contextlib.suppress(asyncio.CancelledError):
        await task

    assert await pending(db) == 1
    assert await relay(db, publisher).publish_pending() == 1
    records = await read_topic(kafka_bootstrap, topic, at_least=2, settle_s=1.0)
    assert [json.loads(r.value)["id"] for r in records] == [str(event_id)] * 2
    assert await pending(db) == 0

    # The consumer's inbox absorbs the repeat: one effect for the one event.
    before = await effect_notes(db)
    async with running_consumer(db, kafka_bootstrap, topic, unique("g")):
        after = await eventually(lambda: effect_notes(db), lambda n: len(n) > len(before))
        after = await eventually(
            lambda: effect_notes(db), lambda n: len(n) > len(before) + 1, timeout_s=1.5
        )
    assert after[len(before) :] == ["at-least-once"]


async def test_relay_in_the_same_process_wakes_on_commit_not_on_rollback(
    db: Db, publisher: KafkaPublisher, kafka_bootstrap: str, topic: str
) -> None:
    await ensure_topics(kafka_bootstrap, [topic])
    stop = asyncio.Event()
    r = relay(db, publisher, poll_interval_s=60.0)  # no LISTEN: only the in-process wake
    wakes: list[str] = []

    def on_commit() -> None:
        wakes.append("wake")
        r.wake()

    writer = Outbox(outbox, source="/kernel-tests", on_commit=on_commit)
    task = asyncio.create_task(r.run(stop))
    try:
        async with db.sessions() as session:
            await writer.add(session, KernelTestEvent(order_id=uuid.uuid4(), note="ghost"))
            await session.rollback()
        assert wakes == []
        async with db.sessions() as session, session.begin():
            await writer.add(session, KernelTestEvent(order_id=uuid.uuid4(), note="one"))
            await writer.add(session, KernelTestEvent(order_id=uuid.uuid4(), note="two"))
        assert wakes == ["wake"]  # once per committed transaction
        records = await read_topic(kafka_bootstrap, topic, at_least=2, timeout_s=5.0)
        assert sorted(json.loads(r.value)["data"]["note"] for r in records) == ["one", "two"]
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_write_transactions_send_no_notify_and_the_notifier_coalesces(
    db: Db, publisher: KafkaPublisher, kafka_bootstrap: str, topic: str
) -> None:
    """A NOTIFY in every write transaction would serialise the commits of the whole cluster:
    writers only signal, and a process without a relay sends one NOTIFY for many commits,
    which wakes a relay listening in another process."""
    await ensure_topics(kafka_bootstrap, [topic])
    listener = await asyncpg.connect(asyncpg_dsn(db.url))
    heard: list[str] = []
    await listener.add_listener(NOTIFY_CHANNEL, lambda *args: heard.append(args[2]))
    stop = asyncio.Event()
    notifier = OutboxNotifier(asyncpg_dsn(db.url), interval_s=0.01)
    writer = Outbox(outbox, source="/kernel-tests", on_commit=notifier.signal)
    r = relay(db, publisher, listen_dsn=asyncpg_dsn(db.url), poll_interval_s=60.0)
    tasks = [asyncio.create_task(r.run(stop))]
    try:
        await asyncio.sleep(0.5)  # the relay is idle, listening
        for note in ("a", "b", "c"):
            async with db.sessions() as session, session.begin():
                await writer.add(session, KernelTestEvent(order_id=uuid.uuid4(), note=note))
        await asyncio.sleep(0.3)  # a NOTIFY sent by a transaction would have arrived
        assert heard == []
        assert await pending(db) == 3  # and nothing woke the relay

        tasks.append(asyncio.create_task(notifier.run(stop)))
        records = await read_topic(kafka_bootstrap, topic, at_least=3, timeout_s=10.0)
        assert sorted(json.loads(r.value)["data"]["note"] for r in records) == ["a", "b", "c"]
        assert notifier.sent == 1  # three commits, one NOTIFY
        assert len(heard) == 1
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        await listener.close()


async def test_two_relays_at_once_publish_every_row_once_in_order_per_aggregate(
    db: Db, publisher: KafkaPublisher, kafka_bootstrap: str, topic: str
) -> None:
    orders = [uuid.uuid4() for _ in range(5)]
    for i in range(40):
        await write(db, f"{i}", order_id=orders[i % 5])
    stop = asyncio.Event()
    relays = [relay(db, publisher, batch_size=7, poll_interval_s=0.05) for _ in range(2)]
    tasks = [asyncio.create_task(r.run(stop)) for r in relays]
    try:
        records = await read_topic(kafka_bootstrap, topic, at_least=40, settle_s=1.5)
    finally:
        stop.set()
        await asyncio.gather(*tasks)

    documents = [json.loads(r.value) for r in records]
    assert len({d["id"] for d in documents}) == 40 == len(documents)
    for order in orders:
        notes = [int(d["data"]["note"]) for d in documents if d["subject"] == str(order)]
        assert notes == sorted(notes)
        assert len(notes) == 8
    assert sum(r.stats.published for r in relays) == 40


class BrokerDown:
    async def send_batch(self, records: Sequence[OutboundRecord]) -> None:
        raise ConnectionError("broker unreachable")


async def test_rows_wait_while_publishing_fails_and_the_failure_is_recorded(
    db: Db, publisher: KafkaPublisher, kafka_bootstrap: str, topic: str
) -> None:
    await write(db, "patient")
    stop = asyncio.Event()
    failing = relay(db, BrokerDown(), poll_interval_s=0.05, retry_backoff_max_s=0.1)
    task = asyncio.create_task(failing.run(stop))
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.wait_for(task, 10)

    assert failing.stats.failures >= 2
    assert "broker unreachable" in (failing.stats.last_error or "")
    async with db.sessions() as session:
        row = (await session.execute(select(outbox.c.attempts, outbox.c.last_error))).one()
    assert row.attempts >= 2
    assert "broker unreachable" in row.last_error
    stats = await failing.refresh_stats()
    assert stats.backlog == 1
    assert stats.oldest_pending_age_s > 0

    assert await relay(db, publisher).publish_pending() == 1
    assert len(await read_topic(kafka_bootstrap, topic, at_least=1)) == 1
    assert (await failing.refresh_stats()).backlog == 0


async def test_a_row_the_broker_refuses_for_good_is_parked_and_the_rows_behind_it_flow_on(
    db: Db, publisher: KafkaPublisher, kafka_bootstrap: str, topic: str
) -> None:
    order = uuid.uuid4()
    [before] = await write(db, "before", order_id=order)
    async with db.sessions() as session, session.begin():  # over the broker's 1 MiB limit
        [envelope] = await db.outbox.add(
            session, KernelTestEvent(order_id=order, note="x" * 1_300_000)
        )
    huge = envelope.id
    [after] = await write(db, "after", order_id=order)  # same key: it waited behind the huge one
    r = relay(db, publisher)

    done = await r.publish_pending()
    again = await r.publish_pending()
    records = await read_topic(kafka_bootstrap, topic, at_least=2, settle_s=0.5)
    [dead] = await read_topic(kafka_bootstrap, f"{topic}.dlq", at_least=1, settle_s=0.5)
    async with db.sessions() as session:
        parked_error = await session.scalar(
            select(outbox.c.last_error).where(outbox.c.event_id == huge)
        )

    assert (done, again) == (3, 0)  # every row is done: two published, one parked
    assert (r.stats.published, r.stats.parked) == (2, 1)
    ids = [json.loads(record.value)["id"] for record in records]
    assert ids[0] == str(before)
    assert ids[-1] == str(after)
    assert str(huge) not in ids
    headers = {k: v.decode() for k, v in dead.headers}
    assert headers["dlq_kind"] == "unpublishable"
    assert "MessageSizeTooLarge" in headers["dlq_reason"]
    assert headers["ce_id"] == str(huge)
    assert int(headers["dlq_value_truncated"]) > 1_300_000
    assert dead.value is not None
    assert len(dead.value) == 512 * 1024
    assert parked_error is not None
    assert parked_error.startswith("parked: MessageSizeTooLarge")
    assert await pending(db) == 0
