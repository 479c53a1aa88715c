"""Batch handlers (``EventConsumer.on_many``) against a real Kafka broker and PostgreSQL: a run
of consecutive events of their types is applied by one call, in offset order, between the
events of one-event handlers; a blamed event is dead-lettered or retried alone and the rest
applied once; a batch that fails without blaming one event is split; replies written for
many causes (``Outbox.add_replies``) name each cause."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, ClassVar

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from booking_contracts.envelope import Envelope, EventCatalogue
from platform_runtime.http.metrics import Metrics
from platform_runtime.kafka import KafkaPublisher
from platform_runtime.messaging import (
    BatchItemError,
    EventConsumer,
    EventContext,
    PermanentEventError,
)
from platform_runtime.observability import correlation_id as correlation_id_var
from platform_runtime.outbox import Outbox, causation_id_var
from platform_tooling.polling import eventually
from tests.support.kafka import read_all

from .conftest import Db, KernelTestEvent, effects, outbox
from .helpers import consuming, effect_notes, new_consumer, outcome_count, produce_to

EVENT = KernelTestEvent.type_name()


class KernelNotice(KernelTestEvent):
    """A second event type on the kernel tests' topic (it inherits the topic of the test)."""

    name: ClassVar[str] = "KernelNotice"


EventCatalogue.register(KernelNotice)
NOTICE = KernelNotice.type_name()

Batch = list[tuple[Envelope, KernelTestEvent]]


def envelope(note: str, *, notice: bool = False, correlation: str | None = None) -> Envelope:
    """A new ``KernelTestEvent`` (a ``KernelNotice`` if ``notice``) with ``note``."""
    kind = KernelNotice if notice else KernelTestEvent
    return Envelope.wrap(
        kind(order_id=uuid.uuid4(), note=note), source="/t", correlation_id=correlation
    )


async def produce(bootstrap: str, topic: str, envelopes: list[Envelope]) -> None:
    """``envelopes`` on partition 0, in order, with the headers the outbox writes."""
    await produce_to(
        bootstrap, topic, [(0, b"k", e.to_json_bytes(), e.headers()) for e in envelopes]
    )


@asynccontextmanager
async def running(
    db: Db,
    bootstrap: str,
    group: str,
    many: Callable[[AsyncSession, Batch], Awaitable[None]],
    *,
    metrics: Metrics | None = None,
    calls: list[tuple[str, list[str]]] | None = None,
) -> AsyncIterator[EventConsumer]:
    """A consumer applying ``KernelTestEvent`` with the batch handler ``many`` and
    ``KernelNotice`` with a one-event handler (one ``effects`` row each), running its loop;
    ``calls`` gets ``("one", [note])`` for every call of the one-event handler."""
    dead_letters = KafkaPublisher(bootstrap, client_id=group)
    consumer = new_consumer(db, bootstrap, group, dead_letters, metrics=metrics)
    consumer.on_many(KernelTestEvent)(many)

    @consumer.on(KernelNotice)
    async def notice(event: KernelNotice, ctx: EventContext) -> None:
        if calls is not None:
            calls.append(("one", [event.note]))
        await write_effects(ctx.session, [event])

    try:
        async with consuming(consumer):
            yield consumer
    finally:
        await dead_letters.stop()


async def write_effects(session: AsyncSession, events: list[KernelTestEvent]) -> None:
    """One ``effects`` row per event, in one statement."""
    await session.execute(
        insert(effects), [{"order_id": e.order_id, "note": e.note} for e in events]
    )


async def test_a_run_of_consecutive_events_is_one_call_between_one_event_handlers(
    db: Db, kafka_bootstrap: str, topic: str, unique: Callable[[str], str]
) -> None:
    m1, m2, m3, m4, m5, m6 = (envelope(f"m{i}") for i in range(1, 7))
    o1, o2, o3 = (envelope(f"o{i}", notice=True) for i in range(1, 4))
    # m2 is delivered twice inside the first run: applied once, still one call.
    await produce(kafka_bootstrap, topic, [m1, m2, m2, m3, o1, m4, m5, o2, o3, m6])
    calls: list[tuple[str, list[str]]] = []
    seen: list[tuple[uuid.UUID, str]] = []

    async def many(session: AsyncSession, batch: Batch) -> None:
        calls.append(("many", [event.note for _, event in batch]))
        seen.extend((env.id, event.note) for env, event in batch)
        await write_effects(session, [event for _, event in batch])

    group, metrics = unique("g"), Metrics()
    async with running(db, kafka_bootstrap, group, many, metrics=metrics, calls=calls):
        applied = await eventually(lambda: effect_notes(db), lambda n: "m6" in n)

    assert calls == [
        ("many", ["m1", "m2", "m3"]),
        ("one", ["o1"]),
        ("many", ["m4", "m5"]),
        ("one", ["o2"]),
        ("one", ["o3"]),
        ("many", ["m6"]),
    ]
    assert applied == ["m1", "m2", "m3", "o1", "m4", "m5", "o2", "o3", "m6"]
    assert seen == [(e.id, e.data["note"]) for e in (m1, m2, m3, m4, m5, m6)]
    assert outcome_count(metrics, group, EVENT, "processed") == 6
    assert outcome_count(metrics, group, EVENT, "duplicate") == 1
    assert outcome_count(metrics, group, NOTICE, "processed") == 3


async def test_a_blamed_event_with_a_permanent_error_is_dead_lettered_alone(
    db: Db, kafka_bootstrap: str, topic: str, unique: Callable[[str], str]
) -> None:
    # The notice first: the batch's indexes are not the lane's.
    notes = ["notice", "a", "b", "bad", "c", "d"]
    envelopes = [envelope(note, notice=note == "notice") for note in notes]
    await produce(kafka_bootstrap, topic, envelopes)
    calls: list[list[str]] = []

    async def many(session: AsyncSession, batch: Batch) -> None:
        calls.append([event.note for _, event in batch])
        for index, (_, event) in enumerate(batch):
            if event.note == "bad":  # after the rows of the events before it
                raise BatchItemError(index, PermanentEventError("room 7 does not exist"))
            await write_effects(session, [event])

    group, metrics = unique("g"), Metrics()
    async with running(db, kafka_bootstrap, group, many, metrics=metrics):
        applied = await eventually(lambda: effect_notes(db), lambda n: "d" in n)
    dead = await read_all(kafka_bootstrap, f"{topic}.dlq")

    assert applied == ["notice", "a", "b", "c", "d"], "what the batch wrote before rolled back"
    assert [r.value for r in dead] == [envelopes[3].to_json_bytes()]
    headers = {k: v.decode() for k, v in dead[0].headers}
    assert headers["dlq_kind"] == "rejected"
    assert headers["dlq_reason"] == "PermanentEventError: room 7 does not exist"
    assert (headers["dlq_consumer"], headers["dlq_original_offset"]) == (group, "3")
    # The whole run once, then the events before the blamed one again as one batch; the
    # blamed one is never handed over again; the rest once each.
    assert calls[:2] == [["a", "b", "bad", "c", "d"], ["a", "b"]]
    assert [note for call in calls[1:] for note in call] == ["a", "b", "c", "d"]
    assert outcome_count(metrics, group, EVENT, "dead_lettered") == 1
    assert outcome_count(metrics, group, EVENT, "processed") == 4


async def test_a_blamed_event_with_a_passing_error_is_retried_alone_and_applied_once(
    db: Db, kafka_bootstrap: str, topic: str, unique: Callable[[str], str]
) -> None:
    await produce(kafka_bootstrap, topic, [envelope(note) for note in ["a", "flaky", "b"]])
    calls: list[list[str]] = []

    async def many(session: AsyncSession, batch: Batch) -> None:
        calls.append([event.note for _, event in batch])
        for index, (_, event) in enumerate(batch):
            await write_effects(session, [event])
            if event.note == "flaky" and len(calls) == 1:
                raise BatchItemError(index, RuntimeError("a deadlock, say"))

    async with running(db, kafka_bootstrap, unique("g"), many):
        applied = await eventually(lambda: effect_notes(db), lambda n: "b" in n)

    assert applied == ["a", "flaky", "b"]
    assert calls[:3] == [["a", "flaky", "b"], ["a"], ["flaky"]]
    assert [note for call in calls[1:] for note in call] == ["a", "flaky", "b"]


async def test_a_batch_failing_once_without_blame_is_split_and_each_event_applied_once(
    db: Db, kafka_bootstrap: str, topic: str, unique: Callable[[str], str]
) -> None:
    notes = ["a", "b", "c", "d", "e", "f", "x", "g"]
    await produce(kafka_bootstrap, topic, [envelope(n, notice=n == "x") for n in notes])
    calls: list[tuple[str, list[str]]] = []

    async def many(session: AsyncSession, batch: Batch) -> None:
        calls.append(("many", [event.note for _, event in batch]))
        await write_effects(session, [event for _, event in batch])
        if len(calls) == 1:
            raise RuntimeError("a passing failure of the whole statement")

    group, metrics = unique("g"), Metrics()
    async with running(db, kafka_bootstrap, group, many, metrics=metrics, calls=calls):
        applied = await eventually(lambda: effect_notes(db), lambda n: "g" in n)

    assert applied == notes, "each event once, in offset order"
    assert calls[0] == ("many", ["a", "b", "c", "d", "e", "f"])
    again = [note for _, call in calls[1:] for note in call]
    assert again == notes, "after the failure every event was handled once more"
    assert all(len(call) < 6 for kind, call in calls[1:] if kind == "many"), "it was split"
    assert outcome_count(metrics, group, EVENT, "processed") == 7
    assert outcome_count(metrics, group, NOTICE, "processed") == 1
    assert outcome_count(metrics, group, EVENT, "dead_lettered") == 0


async def outbox_rows(db: Db, event_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    """The outbox rows of ``event_ids``, in that order."""
    async with db.sessions() as session:
        rows = (
            (await session.execute(select(outbox).where(outbox.c.event_id.in_(event_ids))))
            .mappings()
            .all()
        )
    by_id = {row["event_id"]: dict(row) for row in rows}
    return [by_id[i] for i in event_ids if i in by_id]


async def test_replies_carry_the_correlation_of_their_cause_and_name_it(db: Db) -> None:
    woken: list[str] = []
    writer = Outbox(outbox, source="/kernel-tests", on_commit=lambda: woken.append("wake"))
    in_conversation = envelope("asked", correlation="conversation-1")
    first = envelope("first")  # no correlation id: it starts a conversation
    r1, r2, r3 = (KernelTestEvent(order_id=uuid.uuid4(), note=f"r{i}") for i in range(1, 4))

    ambient = correlation_id_var.set("ambient"), causation_id_var.set("ambient")
    try:  # what is being handled otherwise does not leak into replies
        async with db.sessions() as session, session.begin():
            written = await writer.add_replies(
                session, [(in_conversation, r1), (first, r2), (in_conversation, r3)]
            )
    finally:
        causation_id_var.reset(ambient[1])
        correlation_id_var.reset(ambient[0])
    rows = await outbox_rows(db, [e.id for e in written])

    expected = [
        ("conversation-1", str(in_conversation.id)),
        (str(first.id), str(first.id)),
        ("conversation-1", str(in_conversation.id)),
    ]
    assert [(e.correlationid, e.causationid) for e in written] == expected
    assert [e.data["note"] for e in written] == ["r1", "r2", "r3"]
    assert len(rows) == 3, "one row per reply"
    assert [(r["payload"]["correlationid"], r["payload"]["causationid"]) for r in rows] == expected
    assert [r["headers"]["ce_correlationid"] for r in rows] == [c for c, _ in expected]
    assert [r["payload"]["id"] for r in rows] == [str(e.id) for e in written]
    assert [(r["event_type"], r["key"]) for r in rows] == [
        (EVENT, str(reply.order_id)) for reply in (r1, r2, r3)
    ]
    assert woken == ["wake"], "the relay is woken once the transaction committed"

    async with db.sessions() as session, session.begin():
        assert await writer.add_replies(session, []) == []
    async with db.sessions() as session:
        total = len((await session.execute(select(outbox.c.id))).all())
    assert total == 3, "no reply, no row"
    assert woken == ["wake"], "nothing written, nobody woken"


async def test_replies_written_by_a_batch_handler_name_each_consumed_event(
    db: Db, kafka_bootstrap: str, topic: str, unique: Callable[[str], str]
) -> None:
    consumed = [envelope("p", correlation="c-p"), envelope("q"), envelope("r", correlation="c-r")]
    await produce(kafka_bootstrap, topic, consumed)

    async def many(session: AsyncSession, batch: Batch) -> None:
        await write_effects(session, [event for _, event in batch])
        await db.outbox.add_replies(
            session,
            [
                (env, KernelNotice(order_id=event.order_id, note=f"re:{event.note}"))
                for env, event in batch
            ],
        )

    async with running(db, kafka_bootstrap, unique("g"), many):
        await eventually(lambda: effect_notes(db), lambda n: "r" in n)
    async with db.sessions() as session:
        payloads = (await session.scalars(select(outbox.c.payload).order_by(outbox.c.id))).all()

    assert [(p["data"]["note"], p["correlationid"], p["causationid"]) for p in payloads] == [
        ("re:p", "c-p", str(consumed[0].id)),
        ("re:q", str(consumed[1].id), str(consumed[1].id)),
        ("re:r", "c-r", str(consumed[2].id)),
    ]
