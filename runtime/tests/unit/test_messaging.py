"""Consumer runtime decisions that need no broker: what counts as an outage, retry timing."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, ClassVar, TypeAlias

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from booking_contracts import Envelope, Event
from booking_contracts.catalogue import PaymentFailed, PaymentSucceeded
from booking_contracts.topics import MAX_DEAD_LETTER_VALUE_BYTES
from platform_runtime.memorydb import MemoryDatabase, MemoryTransaction
from platform_runtime.messaging import (
    EventConsumer,
    bounded_dead_letter,
    is_bad_data,
    is_outage,
)
from platform_runtime.timing import RetryPolicy
from platform_runtime.transport import IncomingRecord


class Dummy(Exception):
    pass


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

    consumer = EventConsumer(
        name="c",
        transactions=MemoryDatabase(None),
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


def make_consumer(sink: CollectingSink) -> EventConsumer[Any]:

    consumer = EventConsumer(
        name="unit",
        transactions=MemoryDatabase(None),
        dead_letters=sink,
        retry=RetryPolicy(initial=timedelta(seconds=0.001), maximum=timedelta(seconds=0.001)),
    )

    @consumer.on(PaymentSucceeded)
    async def paid(event: PaymentSucceeded, ctx: object) -> None:
        raise AssertionError("not reached in these tests")

    return consumer


async def test_events_nobody_handles_are_acknowledged_without_touching_the_database() -> None:
    import uuid

    from booking_contracts import Envelope
    from platform_runtime.transport import IncomingRecord

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
    from platform_runtime.transport import IncomingRecord

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

    from platform_runtime.http.metrics import Metrics
    from platform_runtime.transport import IncomingRecord

    metrics = Metrics()
    options = {
        "transactions": MemoryDatabase(None),
        "retry": RetryPolicy(initial=timedelta(seconds=0.001), maximum=timedelta(seconds=0.001)),
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

    queue = EventConsumer(
        name="queue",
        transactions=MemoryDatabase(None),
        dead_letters=CollectingSink(),
    )
    queue.on_batch(PaymentFailed, lambda session, items: _never_called(None, None), lambda _: None)

    with pytest.raises(ValueError, match="applies batches"):
        queue.on(PaymentSucceeded)(_never_called)
    with pytest.raises(ValueError, match=r"already consumes PaymentFailed\.v1"):
        queue.on_batch(PaymentSucceeded, lambda session, items: _never_called(None, None), print)


async def _never_called(event: object, ctx: object) -> None:
    raise AssertionError("not reached in these tests")


# --- batch handlers (on_many) -------------------------------------------------------------


def _payment_consumer(
    sink: CollectingSink | None = None, db: MemoryDatabase[list[str]] | None = None
) -> EventConsumer[Written]:
    return EventConsumer(
        name="batches",
        transactions=db or MemoryDatabase[list[str]]([]),
        dead_letters=sink or CollectingSink(),
        retry=RetryPolicy(
            max_attempts=2, initial=timedelta(seconds=0.001), maximum=timedelta(seconds=0.001)
        ),
    )


async def _many_never_called(session: object, batch: object) -> None:
    raise AssertionError("not reached in these tests")


def test_a_type_has_one_handler_whether_it_takes_events_one_by_one_or_in_batches() -> None:

    consumer = _payment_consumer()
    consumer.on(PaymentSucceeded)(_never_called)
    with pytest.raises(ValueError, match=r"already handles PaymentSucceeded\.v1"):
        consumer.on_many(PaymentSucceeded)(_many_never_called)

    consumer.on_many(PaymentFailed)(_many_never_called)
    with pytest.raises(ValueError, match=r"already handles PaymentFailed\.v1"):
        consumer.on_many(PaymentFailed)(_many_never_called)
    with pytest.raises(ValueError, match=r"already handles PaymentFailed\.v1"):
        consumer.on(PaymentFailed)(_never_called)
    assert consumer.topics == ["payments.events"]

    queue = EventConsumer(
        name="queue",
        transactions=MemoryDatabase(None),
        dead_letters=CollectingSink(),
    )
    queue.on_batch(PaymentFailed, lambda session, items: _never_called(None, None), print)
    with pytest.raises(ValueError, match="applies batches"):
        queue.on_many(PaymentSucceeded)(_many_never_called)


def _failed(payment_id: str) -> PaymentFailed:
    import uuid

    return PaymentFailed(booking_id=uuid.uuid4(), payment_id=payment_id, reason="declined")


def _succeeded(payment_id: str) -> PaymentSucceeded:
    import uuid
    from decimal import Decimal

    from booking_contracts import Money

    amount = Money(amount=Decimal("10.00"), currency="EUR")
    return PaymentSucceeded(booking_id=uuid.uuid4(), payment_id=payment_id, amount=amount)


class _Refund(Event):
    """Not in the catalogue: only its type matters where it is used."""

    name: ClassVar[str] = "UnitRefund"
    topic: ClassVar[str] = "payments.events"
    payment_id: str

    def aggregate_id(self) -> str:
        return self.payment_id


class _Chargeback(_Refund):
    name: ClassVar[str] = "UnitChargeback"


def test_new_events_are_cut_into_runs_of_one_batch_handler_and_single_events() -> None:
    from booking_contracts import Envelope
    from platform_runtime.messaging import _Item
    from platform_runtime.transport import IncomingRecord

    consumer = _payment_consumer()
    consumer.on_many(PaymentFailed, _Refund)(_many_never_called)  # one handler, two types

    async def other_many(session: object, batch: object) -> None: ...

    consumer.on_many(_Chargeback)(other_many)  # another batch handler: another run
    consumer.on(PaymentSucceeded)(_never_called)
    events: list[Event] = [
        _failed("0"),
        _Refund(payment_id="1"),
        _failed("2"),
        _succeeded("3"),
        _succeeded("4"),
        _failed("5"),
        _Chargeback(payment_id="6"),
        _Chargeback(payment_id="7"),
        _Refund(payment_id="8"),
        _succeeded("9"),  # a duplicate (not new): applied by nobody, it cuts nothing
        _failed("10"),
        _failed("11"),  # a duplicate at the end
    ]
    run = []
    for index, event in enumerate(events):
        envelope = Envelope.wrap(event, source="/payments")
        record = IncomingRecord("payments.events", 0, index, None, envelope.to_json_bytes())
        run.append(_Item(index, record, envelope, event))
    new = [0, 1, 2, 3, 4, 5, 6, 7, 8, 10]

    assert list(consumer._groups(run, new)) == [[0, 1, 2], [3], [4], [5], [6, 7], [8, 10]]
    assert list(consumer._groups(run, [])) == []


Written: TypeAlias = MemoryTransaction[list[str]]
"""A transaction of a database whose state is the payment ids written (kept if it commits)."""


async def _run_batches(
    payment_ids: list[str],
    many: Callable[[Written, list[tuple[Envelope, PaymentFailed]]], Awaitable[None]],
) -> tuple[dict[tuple[str, int], int], list[str], CollectingSink]:
    """``handle`` one partition of ``PaymentFailed`` events (payment ids ``payment_ids``)
    with the batch handler ``many``, on a database that keeps what committed. Returns the
    offsets to commit, what committed and the dead letters."""
    from platform_runtime.transport import IncomingRecord

    db = MemoryDatabase[list[str]]([])
    sink = CollectingSink()
    consumer = _payment_consumer(sink, db)
    consumer.on_many(PaymentFailed)(many)
    records = [
        IncomingRecord(
            "payments.events",
            0,
            offset,
            None,
            Envelope.wrap(_failed(p), source="/p").to_json_bytes(),
        )
        for offset, p in enumerate(payment_ids)
    ]
    return await consumer.handle(records), (await db.read()), sink


async def test_a_blamed_event_is_dead_lettered_alone_and_the_others_applied_once() -> None:
    from platform_runtime.messaging import BatchItemError, PermanentEventError

    calls: list[list[str]] = []

    async def many(session: Written, batch: list[tuple[Envelope, PaymentFailed]]) -> None:
        calls.append([event.payment_id for _, event in batch])
        for index, (_, event) in enumerate(batch):
            if event.payment_id == "bad":
                raise BatchItemError(index, PermanentEventError("no such payment"))
            session.state.append(event.payment_id)

    ids = ["a", "b", "bad", "c", "d", "e"]
    positions, committed, sink = await _run_batches(ids, many)

    assert positions == {("payments.events", 0): 6}
    assert committed == ["a", "b", "c", "d", "e"]
    # The events before it as one batch again; it never again; the ones after it one,
    # then two... at a time (a stretch of poison costs a transaction each).
    assert calls == [ids, ["a", "b"], ["c"], ["d", "e"]]
    [(topic, value, headers)] = sink.sent
    assert (topic, headers["dlq_kind"], headers["dlq_original_offset"]) == (
        "payments.events.dlq",
        "rejected",
        "2",
    )
    assert headers["dlq_reason"] == "PermanentEventError: no such payment"
    assert value is not None
    assert json.loads(value)["data"]["payment_id"] == "bad"


async def test_a_batch_failing_without_blame_is_halved_until_it_commits() -> None:
    calls: list[list[str]] = []

    async def many(session: Written, batch: list[tuple[Envelope, PaymentFailed]]) -> None:
        calls.append([event.payment_id for _, event in batch])
        session.state.extend(event.payment_id for _, event in batch)
        if len(calls) == 1:
            raise RuntimeError("could not serialize access")

    ids = ["a", "b", "c", "d", "e"]
    positions, committed, sink = await _run_batches(ids, many)

    assert positions == {("payments.events", 0): 5}
    assert committed == ids
    assert calls == [ids, ["a", "b"], ["c", "d", "e"]]
    assert sink.sent == []


async def test_an_event_that_always_fails_a_batch_is_found_and_dead_lettered_in_the_end() -> None:
    calls: list[list[str]] = []

    async def many(session: Written, batch: list[tuple[Envelope, PaymentFailed]]) -> None:
        calls.append([event.payment_id for _, event in batch])
        session.state.extend(event.payment_id for _, event in batch)
        if any(event.payment_id == "bug" for _, event in batch):
            raise KeyError("a bug that does not go away")

    positions, committed, sink = await _run_batches(["a", "b", "bug", "c"], many)

    assert positions == {("payments.events", 0): 4}
    assert committed == ["a", "b", "c"]
    # Halved until it is alone, then tried as often as the retry policy allows.
    assert calls == [["a", "b", "bug", "c"], ["a", "b"], ["bug", "c"], ["bug"], ["bug"], ["c"]]
    [(_, _, headers)] = sink.sent
    assert (headers["dlq_kind"], headers["dlq_original_offset"]) == ("retries_exhausted", "2")


async def test_a_permanent_error_that_blames_no_event_dead_letters_only_the_culprit() -> None:
    from platform_runtime.messaging import PermanentEventError

    async def many(session: Written, batch: list[tuple[Envelope, PaymentFailed]]) -> None:
        session.state.extend(event.payment_id for _, event in batch)
        if any(event.payment_id == "bad" for _, event in batch):
            raise PermanentEventError("one of these can never be applied")

    ids = ["a", "b", "c", "bad", "d"]
    positions, committed, sink = await _run_batches(ids, many)

    assert positions == {("payments.events", 0): 5}
    assert committed == ["a", "b", "c", "d"]
    [(_, value, headers)] = sink.sent
    assert value is not None
    assert json.loads(value)["data"]["payment_id"] == "bad"
    assert (headers["dlq_kind"], headers["dlq_original_offset"]) == ("rejected", "3")


async def test_a_blamed_event_failing_because_the_database_is_down_is_not_dead_lettered() -> None:
    """As for a one-event handler: an error caused by a connection problem is an outage
    (retried without counting), also when a batch handler blames it on one event."""
    from platform_runtime.messaging import BatchItemError

    attempts = {"p": 0}

    async def many(session: Written, batch: list[tuple[Envelope, PaymentFailed]]) -> None:
        for index, (_, event) in enumerate(batch):
            if event.payment_id == "p" and attempts["p"] < 3:  # more than max_attempts
                attempts["p"] += 1
                try:
                    try:
                        raise ConnectionResetError("the database went away")
                    except ConnectionResetError as reset:
                        raise RuntimeError("could not apply the payment") from reset
                except RuntimeError as exc:
                    raise BatchItemError(index, exc) from exc
            session.state.append(event.payment_id)

    positions, committed, sink = await _run_batches(["a", "p", "b"], many)

    assert positions == {("payments.events", 0): 3}
    assert sink.sent == [], "nothing dead-lettered while the database was down"
    assert committed == ["a", "p", "b"]


def test_batch_item_error_names_the_event_and_keeps_its_error() -> None:
    from platform_runtime.messaging import BatchItemError

    cause = ValueError("room 7 is closed")
    error = BatchItemError(3, cause)
    assert (error.index, error.error) == (3, cause)
    assert str(error) == "event 3 of the batch: ValueError: room 7 is closed"
    assert str(BatchItemError(0, KeyError())) == "event 0 of the batch: KeyError"


def test_replies_and_handlers_name_their_cause_and_keep_its_correlation() -> None:
    from booking_contracts import Envelope
    from platform_runtime.messaging import caused_by
    from platform_runtime.observability import correlation_id
    from platform_runtime.outbox import causation_id_var, reply_ids

    started = Envelope.wrap(_failed("p"), source="/p")
    continued = Envelope.wrap(_failed("q"), source="/p", correlation_id="conversation")

    assert reply_ids(started) == (str(started.id), str(started.id))
    assert reply_ids(continued) == ("conversation", str(continued.id))

    outer = correlation_id.set("outer")
    try:
        with caused_by(continued):
            assert (correlation_id.get(), causation_id_var.get()) == reply_ids(continued)
            with caused_by(started):
                assert (correlation_id.get(), causation_id_var.get()) == reply_ids(started)
            assert causation_id_var.get() == str(continued.id)
        assert (correlation_id.get(), causation_id_var.get()) == ("outer", None)
    finally:
        correlation_id.reset(outer)


def _postgres_error(sqlstate: str) -> asyncpg.exceptions.PostgresError:
    # as asyncpg builds it from the server's message: the class for the SQLSTATE, which it holds
    return asyncpg.exceptions.PostgresError.new({"C": sqlstate, "M": f"raised with {sqlstate}"})


def _as_sqlalchemy_raises_it(error: BaseException) -> DBAPIError:
    wrapped = DBAPIError("update bookings", {}, Dummy("wrapped"))
    wrapped.orig.__cause__ = error  # type: ignore[union-attr]
    return wrapped


@pytest.mark.parametrize(
    ("sqlstate", "what"),
    [
        ("53300", "too many connections"),
        ("53100", "disk full"),
        ("40001", "serialization failure"),
        ("40P01", "deadlock"),
        ("25006", "read-only transaction during a failover"),
        ("57P01", "administrator shutdown"),
        ("57P03", "cannot connect now"),
        ("08006", "connection failure"),
    ],
)
def test_trouble_that_passes_is_an_outage_by_its_sqlstate(sqlstate: str, what: str) -> None:
    error = _postgres_error(sqlstate)

    assert is_outage(error), what
    assert is_outage(_as_sqlalchemy_raises_it(error)), what
    assert not is_bad_data(error)


@pytest.mark.parametrize("sqlstate", ["22003", "22P02", "22001"])
def test_data_exceptions_are_bad_data_not_outages(sqlstate: str) -> None:
    error = _as_sqlalchemy_raises_it(_postgres_error(sqlstate))

    assert is_bad_data(error)
    assert not is_outage(error)


def test_a_value_the_client_cannot_encode_is_bad_data_though_asyncpg_calls_it_interface_error() -> (
    None
):
    encoding = asyncpg.exceptions._base.DataError(
        "invalid input for query argument $1: 3000000000 (value out of int32 range)"
    )

    assert isinstance(encoding, asyncpg.exceptions.InterfaceError)
    assert not is_outage(_as_sqlalchemy_raises_it(encoding))
    assert is_bad_data(_as_sqlalchemy_raises_it(encoding))
    assert not is_bad_data(IntegrityError("insert", {}, Dummy("duplicate key")))


def test_a_dead_letter_is_bounded_to_fit_the_broker() -> None:
    record_headers: list[tuple[str, bytes | None]] = [
        ("ce_type", b"PaymentSucceeded.v1"),
        ("note", b"n" * 5000),
        ("null", None),  # Kafka allows a header without a value; IncomingRecord's type does not
    ] + [(f"h{i}", b"v") for i in range(100)]
    big = IncomingRecord(
        topic="payments.events",
        partition=0,
        offset=7,
        key=b"k",
        value=b"x" * (2 * 1024 * 1024),
        headers=record_headers,  # type: ignore[arg-type]
    )

    value, headers = bounded_dead_letter(big)

    assert value is not None
    assert len(value) == MAX_DEAD_LETTER_VALUE_BYTES
    assert headers["dlq_value_truncated"] == str(2 * 1024 * 1024)
    assert headers["ce_type"] == "PaymentSucceeded.v1"
    assert headers["null"] == ""
    assert len(headers["note"]) == 1024
    assert len(headers) <= 33
    small = IncomingRecord(topic="t", partition=0, offset=0, key=None, value=b"{}")
    assert bounded_dead_letter(small) == (b"{}", {})


def test_a_header_with_a_null_value_counts_as_absent() -> None:
    record = IncomingRecord(
        topic="t",
        partition=0,
        offset=0,
        key=None,
        value=b"",
        headers=[("ce_type", None)],  # type: ignore[list-item]
    )

    assert record.header("ce_type") is None
