"""The in-memory transport keeps what the runtime relies on of Kafka, and the consumer runtime
runs on it with no broker."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import pytest
from aiokafka.errors import MessageSizeTooLargeError

from booking_contracts.catalogue import PaymentFailed, PaymentSucceeded
from booking_contracts.envelope import Envelope
from platform_runtime.memory import InMemoryTransport, UnknownTopic
from platform_runtime.memorydb import MemoryDatabase
from platform_runtime.messaging import EventConsumer
from platform_runtime.outbox import OutboundRecord
from platform_runtime.transport import CommitFailed, KafkaRecord, RecordPublisher, Transport
from platform_tooling.polling import until


async def nothing_to_hand_over() -> None:
    return None


def record(topic: str, key: str, value: bytes = b"v") -> KafkaRecord:
    return KafkaRecord(topic, key.encode(), value, [("h", b"1")])


async def test_records_of_one_key_share_a_partition_in_the_order_they_were_sent() -> None:
    transport = InMemoryTransport()
    assert await transport.ensure_topics(["t"]) == ["t", "t.dlq"]
    assert await transport.ensure_topics(["t"]) == []
    publisher: RecordPublisher = transport.publisher(client_id="p")

    await publisher.send_records([record("t", f"k{i % 4}", str(i).encode()) for i in range(40)])

    by_key: dict[bytes | None, set[int]] = {}
    for r in transport.records("t"):
        by_key.setdefault(r.key, set()).add(r.partition)
    assert all(len(partitions) == 1 for partitions in by_key.values())
    assert len(by_key) == 4
    k0 = [int(r.value or b"") for r in transport.records("t") if r.key == b"k0"]
    assert k0 == list(range(0, 40, 4))
    offsets = [r.offset for r in transport.records("t") if r.partition == 0]
    assert offsets == list(range(len(offsets)))


async def test_outbox_rows_and_single_records_arrive_as_the_bytes_kafka_would_carry() -> None:
    transport = InMemoryTransport()
    await transport.ensure_topics(["t"], with_dead_letters=False)
    publisher = transport.publisher(client_id="p")

    await publisher.send_batch([OutboundRecord("t", "key", b"row", {"ce_type": "X.v1"})])
    await publisher.send("t", key=None, value=None, headers={"dlq_reason": "why"})
    await publisher.stop()

    first, second = sorted(transport.records("t"), key=lambda r: r.value is None)
    assert (first.key, first.value, first.header("ce_type")) == (b"key", b"row", "X.v1")
    assert (second.key, second.value, second.header("dlq_reason")) == (None, None, "why")
    assert transport.topics() == ["t"]


async def test_a_topic_never_made_and_a_record_over_the_limit_are_refused() -> None:
    transport = InMemoryTransport(max_record_bytes=10)
    await transport.ensure_topics(["t"])
    publisher = transport.publisher(client_id="p")

    with pytest.raises(UnknownTopic, match="nowhere"):
        await publisher.send_records([record("nowhere", "k")])
    with pytest.raises(MessageSizeTooLargeError):
        await publisher.send_records([record("t", "k", b"x" * 11)])
    with pytest.raises(UnknownTopic):
        await transport.group_consumer(
            ["nowhere"], group="g", hand_over=nothing_to_hand_over
        ).start()
    assert transport.records("t") == []


async def test_a_work_queue_is_made_with_and_grown_to_its_own_partition_count() -> None:
    transport = InMemoryTransport()
    await transport.ensure_topics(["q"], partitions=2, with_dead_letters=False)
    await transport.ensure_topics(["q"], work_queues={"q": 6})
    await transport.ensure_topics(["r"], work_queues={"r": 5}, with_dead_letters=False)
    publisher = transport.publisher(client_id="p")

    await publisher.send_records([record("q", f"k{i}") for i in range(200)])
    await publisher.send_records([record("r", f"k{i}") for i in range(200)])

    assert {r.partition for r in transport.records("q")} == set(range(6))
    assert {r.partition for r in transport.records("r")} == set(range(5))


async def test_a_group_reads_from_the_earliest_record_and_resumes_after_its_commit() -> None:
    transport = InMemoryTransport()
    await transport.ensure_topics(["t"])
    await transport.publisher(client_id="p").send_records(
        [record("t", "one", str(i).encode()) for i in range(5)]
    )
    member = transport.group_consumer(["t"], group="g", hand_over=nothing_to_hand_over)
    await member.start()

    first = await member.poll(timeout_ms=0, max_records=3)
    rest = await member.poll(timeout_ms=0, max_records=10)
    assert [r.value for r in first + rest] == [b"0", b"1", b"2", b"3", b"4"]
    (tp,) = {(r.topic, r.partition) for r in first}
    await member.commit({tp: first[-1].offset + 1})  # only the first three were done
    await member.stop()
    assert member.assignment() == set()

    again = transport.group_consumer(["t"], group="g", hand_over=nothing_to_hand_over)
    await again.start()
    assert [r.value for r in await again.poll(timeout_ms=0, max_records=10)] == [b"3", b"4"]
    assert transport.committed("g") == {tp: 3}
    other = transport.group_consumer(["t"], group="other", hand_over=nothing_to_hand_over)
    await other.start()
    assert len(await other.poll(timeout_ms=0, max_records=10)) == 5


async def test_a_poll_waits_for_a_record_and_comes_back_empty_when_none_comes() -> None:
    transport = InMemoryTransport()
    await transport.ensure_topics(["t"])
    member = transport.group_consumer(["t"], group="g", hand_over=nothing_to_hand_over)
    await member.start()

    assert await member.poll(timeout_ms=20, max_records=10) == []
    waiting = asyncio.create_task(member.poll(timeout_ms=5_000, max_records=10))
    await asyncio.sleep(0)
    await transport.publisher(client_id="p").send_records([record("t", "k", b"late")])
    assert [r.value for r in await asyncio.wait_for(waiting, 1)] == [b"late"]


async def test_partitions_move_to_a_new_member_only_after_the_owner_handed_over() -> None:
    transport = InMemoryTransport()
    await transport.ensure_topics(["t"], partitions=4, with_dead_letters=False)
    handed_over: list[str] = []

    async def first_hands_over() -> None:
        handed_over.append("first")

    first = transport.group_consumer(["t"], group="g", hand_over=first_hands_over)
    await first.start()
    assert len(first.assignment()) == 4
    assert handed_over == []  # nothing is revoked when the first member joins

    second = transport.group_consumer(["t"], group="g", hand_over=nothing_to_hand_over)
    await second.start()

    assert handed_over == ["first"]
    assert first.assignment().isdisjoint(second.assignment())
    assert first.assignment() | second.assignment() == {("t", p) for p in range(4)}
    lost = sorted({("t", p) for p in range(4)} - first.assignment())
    with pytest.raises(CommitFailed, match="no longer owns"):
        await first.commit({lost[0]: 1})

    await second.stop()
    assert len(first.assignment()) == 4


def consumer_on(transport: Transport) -> EventConsumer[Any]:
    """A consumer of ``PaymentSucceeded`` whose handler is never reached: the records below
    are skipped or dead-lettered before any database work."""
    consumer = EventConsumer(
        name="memory",
        transactions=MemoryDatabase(None),
        dead_letters=transport.publisher(client_id="dead-letters"),
        transport=transport,
    )

    @consumer.on(PaymentSucceeded)
    async def never(event: PaymentSucceeded, ctx: object) -> None:
        raise AssertionError("no record here is applied")

    return consumer


async def test_the_runtime_dead_letters_poison_skips_foreign_types_and_commits_past_both() -> None:
    transport = InMemoryTransport()
    failed = PaymentFailed(booking_id=uuid4(), payment_id="pay-1", reason="card declined")
    (topic,) = {PaymentSucceeded.topic, PaymentFailed.topic}
    await transport.ensure_topics([topic])
    envelope = Envelope.wrap(failed, source="/payments")
    await transport.publisher(client_id="payments").send_records(
        [
            KafkaRecord(topic, b"b1", b"{not json", []),
            KafkaRecord(
                topic,
                b"b1",
                envelope.to_json_bytes(),
                [(k, v.encode()) for k, v in envelope.headers().items()],
            ),
        ]
    )
    consumer = consumer_on(transport)
    stop = asyncio.Event()
    running = asyncio.create_task(consumer.run(stop))

    async def both_committed() -> bool:
        return sum(transport.committed("memory").values()) == 2

    await until(both_committed, timeout_s=5, interval_s=0.005, what="both offsets committed")
    stop.set()
    await asyncio.wait_for(running, 5)

    (dead,) = transport.records(f"{topic}.dlq")
    assert dead.value == b"{not json"
    assert dead.header("dlq_reason") is not None
    assert len(transport.records(topic)) == 2  # the PaymentFailed was skipped, not moved


async def test_a_consumer_without_a_transport_cannot_run() -> None:
    consumer = consumer_on(InMemoryTransport())
    consumer.transport = None
    with pytest.raises(ValueError, match="no transport"):
        await consumer.run(asyncio.Event())
