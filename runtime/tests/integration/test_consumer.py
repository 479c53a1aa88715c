"""The idempotent consumer runtime against a real PostgreSQL and a real Kafka broker."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy import func, select

from booking_contracts.envelope import Envelope
from platform_tooling.polling import eventually
from tests.support.kafka import produce, read_topic

from .conftest import Db, KernelTestEvent, inbox
from .helpers import effect_notes, running_consumer


def envelope_bytes(note: str, order_id: uuid.UUID | None = None) -> bytes:
    event = KernelTestEvent(order_id=order_id or uuid.uuid4(), note=note)
    return Envelope.wrap(event, source="/tests").to_json_bytes()


async def test_redelivered_event_has_one_effect(
    db: Db, kafka_bootstrap: str, topic: str, unique: Callable[[str], str]
) -> None:
    once = envelope_bytes("once")
    await produce(kafka_bootstrap, topic, [once, once, envelope_bytes("after"), once])

    async with running_consumer(db, kafka_bootstrap, topic, unique("g")):
        notes = await eventually(lambda: effect_notes(db), lambda n: "after" in n)
        # give a wrong second effect of the last redelivery the time to show up
        notes = await eventually(lambda: effect_notes(db), lambda n: len(n) > 2, timeout_s=1.0)

    assert notes == ["once", "after"]
    async with db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(inbox)) == 2


async def test_poison_messages_go_to_the_dead_letter_topic_and_the_partition_moves_on(
    db: Db, kafka_bootstrap: str, topic: str, unique: Callable[[str], str]
) -> None:
    bad_data = Envelope(
        source="/tests", type="KernelTestEvent.v1", data={"order_id": "not-a-uuid", "note": "x"}
    ).to_json_bytes()
    unknown = Envelope(source="/tests", type="NoSuchEvent.v9", data={}).to_json_bytes()
    await produce(
        kafka_bootstrap,
        topic,
        [b"\xff not json", bad_data, unknown, envelope_bytes("impossible"), envelope_bytes("good")],
        headers=[("origin", b"test")],
    )
    group = unique("g")

    async with running_consumer(db, kafka_bootstrap, topic, group):
        await eventually(lambda: effect_notes(db), lambda n: "good" in n)

    assert await effect_notes(db) == ["good"]  # the refused event's effect was rolled back
    dead = await read_topic(kafka_bootstrap, f"{topic}.dlq", at_least=4, settle_s=0.5)
    assert len(dead) == 4
    assert dead[0].value == b"\xff not json"  # the original bytes, untouched
    headers = [{k: v.decode() for k, v in d.headers} for d in dead]
    assert "not JSON" in headers[0]["dlq_reason"]
    assert "order_id" in headers[1]["dlq_reason"]
    assert "NoSuchEvent.v9" in headers[2]["dlq_reason"]
    assert "can never be applied" in headers[3]["dlq_reason"]
    assert [h["dlq_kind"] for h in headers] == ["undecodable"] * 3 + ["rejected"]
    assert all(h["dlq_consumer"] == group and h["dlq_original_topic"] == topic for h in headers)
    assert all(h["origin"] == "test" for h in headers)
    assert [int(h["dlq_original_offset"]) for h in headers] == sorted(
        int(h["dlq_original_offset"]) for h in headers
    )


async def test_a_passing_failure_is_retried_and_applied_once(
    db: Db, kafka_bootstrap: str, topic: str, unique: Callable[[str], str]
) -> None:
    await produce(kafka_bootstrap, topic, [envelope_bytes("flaky"), envelope_bytes("next")])

    async with running_consumer(db, kafka_bootstrap, topic, unique("g"), flaky_times=2):
        notes = await eventually(lambda: effect_notes(db), lambda n: "next" in n)

    assert notes == ["flaky", "next"]


async def test_an_event_that_keeps_failing_is_dead_lettered_after_the_last_attempt(
    db: Db, kafka_bootstrap: str, topic: str, unique: Callable[[str], str]
) -> None:
    await produce(kafka_bootstrap, topic, [envelope_bytes("always-fails"), envelope_bytes("next")])

    async with running_consumer(db, kafka_bootstrap, topic, unique("g"), max_attempts=3):
        notes = await eventually(lambda: effect_notes(db), lambda n: "next" in n)

    assert notes == ["next"]
    [dead] = await read_topic(kafka_bootstrap, f"{topic}.dlq", at_least=1)
    headers = {k: v.decode() for k, v in dead.headers}
    assert headers["dlq_kind"] == "retries_exhausted"
    assert "failed 3 times" in headers["dlq_reason"]
    assert "a bug that does not go away" in headers["dlq_reason"]


async def test_a_restarted_consumer_resumes_after_the_last_committed_event(
    db: Db, kafka_bootstrap: str, topic: str, unique: Callable[[str], str]
) -> None:
    group = unique("g")
    await produce(kafka_bootstrap, topic, [envelope_bytes("first")])
    async with running_consumer(db, kafka_bootstrap, topic, group):
        await eventually(lambda: effect_notes(db), lambda n: n == ["first"])

    await produce(kafka_bootstrap, topic, [envelope_bytes("second")])
    async with running_consumer(db, kafka_bootstrap, topic, group):
        notes = await eventually(lambda: effect_notes(db), lambda n: "second" in n)

    assert notes == ["first", "second"]
    async with db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(inbox)) == 2
