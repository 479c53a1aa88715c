"""Consumer runtime decisions that need no broker: what counts as an outage, retry timing."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from shared.events.catalogue import PaymentFailed, PaymentSucceeded
from shared.messaging import EventConsumer, RetryPolicy, is_outage
from shared.outbox import outbox_table


class Dummy(Exception):
    pass


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(max_attempts=5, initial_backoff_s=0.5, max_backoff_s=3.0)
    assert [policy.backoff(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError("refused"),
        TimeoutError(),
        asyncpg.exceptions.CannotConnectNowError("starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        OperationalError("select 1", {}, ConnectionResetError("reset")),
        DBAPIError("select 1", {}, Dummy("gone"), connection_invalidated=True),
    ],
)
def test_connection_problems_are_outages(exc: BaseException) -> None:
    assert is_outage(exc)


def test_an_outage_is_recognised_through_the_exception_chain() -> None:
    outer = RuntimeError("while handling")
    outer.__cause__ = ConnectionResetError("peer reset")
    assert is_outage(outer)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad data"),
        IntegrityError("insert", {}, Dummy("duplicate key")),
        KeyError("x"),
    ],
)
def test_data_and_logic_errors_are_not_outages(exc: BaseException) -> None:
    assert not is_outage(exc)


def test_a_consumer_subscribes_to_the_topics_of_its_handled_events() -> None:
    from sqlalchemy import MetaData

    consumer = EventConsumer(
        name="c",
        session_factory=None,
        inbox_table=outbox_table(MetaData()),  # type: ignore[arg-type]
        dead_letters=None,  # type: ignore[arg-type]
    )

    @consumer.on(PaymentSucceeded)
    async def paid(event: PaymentSucceeded, ctx: object) -> None: ...

    @consumer.on(PaymentFailed)
    async def failed(event: PaymentFailed, ctx: object) -> None: ...

    assert consumer.topics == ["payments.events"]
    with pytest.raises(ValueError, match=r"already handles PaymentFailed\.v1"):
        consumer.on(PaymentFailed)(failed)


class CollectingSink:
    def __init__(self, failures: int = 0) -> None:
        self.sent: list[tuple[str, bytes | None, dict[str, str]]] = []
        self.failures = failures
        self.on_failure: Callable[[], None] = lambda: None

    async def send(
        self, topic: str, *, key: bytes | None, value: bytes | None, headers: dict[str, str]
    ) -> None:
        if self.failures:
            self.failures -= 1
            self.on_failure()
            raise ConnectionError("broker down")
        self.sent.append((topic, value, headers))


def make_consumer(sink: CollectingSink) -> EventConsumer:
    from sqlalchemy import MetaData

    consumer = EventConsumer(
        name="unit",
        session_factory=None,
        inbox_table=outbox_table(MetaData()),  # type: ignore[arg-type]
        dead_letters=sink,
        retry=RetryPolicy(initial_backoff_s=0.001, max_backoff_s=0.001),
    )

    @consumer.on(PaymentSucceeded)
    async def paid(event: PaymentSucceeded, ctx: object) -> None:
        raise AssertionError("not reached in these tests")

    return consumer


async def test_events_nobody_handles_are_acknowledged_without_touching_the_database() -> None:
    import uuid

    from shared.events import Envelope
    from shared.messaging import IncomingRecord

    sink = CollectingSink()
    failed = PaymentFailed(booking_id=uuid.uuid4(), payment_id="p", reason="card declined")
    envelope = Envelope.wrap(failed, source="/payments")
    decoded = IncomingRecord(
        topic="payments.events", partition=0, offset=7, key=None, value=envelope.to_json_bytes()
    )
    by_header = IncomingRecord(
        topic="payments.events",
        partition=0,
        offset=8,
        key=None,
        value=b"never decoded",
        headers=[("ce_type", b"PaymentFailed.v1")],
    )

    assert await make_consumer(sink).handle([decoded, by_header]) == {("payments.events", 0): 9}
    assert sink.sent == []


async def test_a_dead_letter_waits_for_the_broker_and_is_abandoned_on_stop() -> None:
    from shared.messaging import IncomingRecord

    record = IncomingRecord(
        topic="t", partition=1, offset=3, key=b"k", value=b"garbage", headers=[("h", b"v")]
    )
    sink = CollectingSink(failures=2)
    assert await make_consumer(sink).handle([record]) == {("t", 1): 4}
    [(topic, value, headers)] = sink.sent
    assert (topic, value, headers["h"], headers["dlq_original_offset"]) == (
        "t.dlq",
        b"garbage",
        "v",
        "3",
    )

    down = CollectingSink(failures=1_000_000)
    stopping = make_consumer(down)
    down.on_failure = stopping.stop  # the consumer is stopped while the broker is down
    assert await stopping.handle([record]) == {}, "an abandoned record is not committed"
    assert await stopping.handle([record]) == {}, "a stopped consumer starts no lane"


async def test_both_consumer_kinds_export_their_dead_letters_from_zero() -> None:
    """``increase(events_consumed_total{outcome="dead_lettered"}[..])`` must also see the
    first dead letter: the series exists, at 0, before it."""
    from sqlalchemy import MetaData

    from shared.http.metrics import Metrics
    from shared.messaging import IncomingRecord

    metrics = Metrics()
    options = {
        "session_factory": None,
        "inbox_table": outbox_table(MetaData()),
        "retry": RetryPolicy(initial_backoff_s=0.001, max_backoff_s=0.001),
        "metrics": metrics,
    }
    single = EventConsumer(name="single", dead_letters=CollectingSink(), **options)  # type: ignore[arg-type]
    single.on(PaymentSucceeded)(_never_called)
    batch = EventConsumer(name="batch", dead_letters=CollectingSink(), **options)  # type: ignore[arg-type]
    batch.on_batch(PaymentFailed, lambda session, items: _never_called(None, None), lambda _: None)

    def dead_lettered(consumer: str, event_type: str) -> float | None:
        return metrics.registry.get_sample_value(
            "events_consumed_total",
            {"consumer": consumer, "event_type": event_type, "outcome": "dead_lettered"},
        )

    assert dead_lettered("single", "PaymentSucceeded.v1") == 0
    assert dead_lettered("batch", "PaymentFailed.v1") == 0
    garbage = IncomingRecord(topic="t", partition=0, offset=1, key=None, value=b"garbage")
    assert await single.handle([garbage]) == {("t", 0): 2}
    assert await batch.handle([garbage]) == {("t", 0): 2}
    assert dead_lettered("single", "?") == 1
    assert dead_lettered("batch", "?") == 1


def test_a_consumer_is_either_a_work_queue_or_has_handlers() -> None:
    from sqlalchemy import MetaData

    queue = EventConsumer(
        name="queue",
        session_factory=None,  # type: ignore[arg-type]
        inbox_table=outbox_table(MetaData()),
        dead_letters=CollectingSink(),
    )
    queue.on_batch(PaymentFailed, lambda session, items: _never_called(None, None), lambda _: None)

    with pytest.raises(ValueError, match="applies batches"):
        queue.on(PaymentSucceeded)(_never_called)
    with pytest.raises(ValueError, match=r"already consumes PaymentFailed\.v1"):
        queue.on_batch(PaymentSucceeded, lambda session, items: _never_called(None, None), print)


async def test_offsets_are_committed_only_for_owned_partitions_and_a_failed_commit_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from aiokafka import TopicPartition
    from aiokafka.errors import CommitFailedError

    class Kafka:
        def __init__(self) -> None:
            self.commits: list[dict[TopicPartition, int]] = []

        def assignment(self) -> set[TopicPartition]:
            return {TopicPartition("t", 0)}

        async def commit(self, offsets: dict[TopicPartition, object]) -> None:
            self.commits.append({tp: meta.offset for tp, meta in offsets.items()})  # type: ignore[attr-defined]
            raise CommitFailedError("the group rebalanced")

    consumer, kafka = make_consumer(CollectingSink()), Kafka()
    await consumer._commit(kafka, {("t", 0): 5, ("t", 1): 9})
    await consumer._commit(kafka, {("t", 2): 1})

    assert kafka.commits == [{TopicPartition("t", 0): 5}]
    assert "committing offsets failed" in caplog.text


async def _never_called(event: object, ctx: object) -> None:
    raise AssertionError("not reached in these tests")
