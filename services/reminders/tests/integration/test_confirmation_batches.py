"""Confirmations applied a run at a time end exactly as if applied one by one.

The batch handler is called directly, in a transaction of its own (a deterministic batch),
and through the consumer runtime of the service's wiring, fed one partition's records.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry, Counter

from booking_contracts import topics
from booking_contracts.catalogue import BookingConfirmed
from booking_contracts.envelope import Envelope
from platform_runtime.messaging import BatchItemError, EventConsumer
from platform_runtime.service import ServiceRuntime
from platform_runtime.transport import IncomingRecord
from reminders import consumers, handlers
from reminders.domain import ImpossibleBooking
from reminders.main import create_runtime
from reminders.store import SqlStore

from .conftest import Service

HOUR = timedelta(hours=1)

Item = tuple[Envelope, BookingConfirmed]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def wired(service: Service) -> AsyncIterator[ServiceRuntime]:
    """The service's scheduling wiring on the test database, not started: its consumer is
    fed records by hand."""
    settings = service.settings.model_copy(
        update={"dispatcher_enabled": False, "worker_enabled": False}
    )
    runtime = create_runtime(settings, clock=service.clock, transport=service.broker.transport())
    yield runtime
    await runtime.engine.dispose()


@dataclass
class Scheduled:
    """A ``scheduled`` counter of its own, read per channel."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.counter = Counter("scheduled", "test", ["channel"], registry=self.registry)

    def counts(self) -> dict[str, float]:
        counts = {
            channel: self.registry.get_sample_value("scheduled_total", {"channel": channel})
            for channel in ("email_24h", "email_1h", "sms")
        }
        return {channel: count for channel, count in counts.items() if count}


def at(event: BookingConfirmed, time: datetime) -> Item:
    """The confirmation as published by the booking service at ``time``."""
    envelope = Envelope.wrap(event, source="/booking").model_copy(update={"time": time})
    return envelope, event


async def apply(
    runtime: ServiceRuntime, service: Service, scheduled: Scheduled, items: Sequence[Item]
) -> None:
    """One call of the batch handler, in one transaction."""
    async with runtime.sessions.begin() as session:
        await handlers.confirm_bookings(
            SqlStore(session),
            items,
            schedule=service.settings.schedule(),
            scheduled=scheduled.counter,
        )


async def shape(service: Service, booking_id: uuid.UUID) -> list[tuple[Any, ...]]:
    """What one booking's reminders are, relative to its start."""
    rows = await service.reminders(booking_id)
    return [
        (
            r["kind"],
            r["starts_at"] - r["scheduled_for"],
            r["due_at"],
            r["status"],
            r["contact_phone"],
        )
        for r in rows
    ]


async def state(service: Service, booking_id: uuid.UUID) -> dict[str, Any] | None:
    row = await service.db.fetchrow(
        "SELECT final, as_of, starts_at, contact_phone FROM booking_states WHERE booking_id = $1",
        booking_id,
    )
    return dict(row) if row is not None else None


async def test_a_batch_schedules_each_booking_as_one_by_one(
    service: Service, wired: ServiceRuntime
) -> None:
    start = service.day()
    phone = "+4915112345678"
    cases = [  # (ahead of the start when confirmed, phone)
        (72 * HOUR, phone),  # every channel
        (72 * HOUR, None),  # no SMS
        (3 * HOUR, phone),  # the 24 h email is past
        (90 * timedelta(minutes=1), None),  # only the 1 h email
        (-HOUR, phone),  # confirmed after the start: none
    ]
    batch = [at(service.confirmed(start, phone=p), start - ahead) for ahead, p in cases]
    twins = [  # the same facts and times, other bookings: applied one by one
        at(event.model_copy(update={"booking_id": uuid.uuid4()}), envelope.time)
        for envelope, event in batch
    ]
    in_batch, alone = Scheduled(), Scheduled()

    await apply(wired, service, in_batch, batch)
    for twin in twins:
        await apply(wired, service, alone, [twin])

    shapes = [await shape(service, event.booking_id) for _, event in batch]
    assert shapes == [
        [
            ("email_24h", 24 * HOUR, start - 24 * HOUR, "pending", phone),
            ("sms", 2 * HOUR, start - 2 * HOUR, "pending", phone),
            ("email_1h", HOUR, start - HOUR, "pending", phone),
        ],
        [
            ("email_24h", 24 * HOUR, start - 24 * HOUR, "pending", None),
            ("email_1h", HOUR, start - HOUR, "pending", None),
        ],
        [
            ("sms", 2 * HOUR, start - 2 * HOUR, "pending", phone),
            ("email_1h", HOUR, start - HOUR, "pending", phone),
        ],
        [("email_1h", HOUR, start - HOUR, "pending", None)],
        [],
    ]
    assert shapes == [await shape(service, event.booking_id) for _, event in twins]
    for envelope, event in batch:  # every booking is known, as of its own event
        assert await state(service, event.booking_id) == {
            "final": False,
            "as_of": envelope.time,
            "starts_at": start,
            "contact_phone": event.contact.phone,
        }
    assert in_batch.counts() == alone.counts() == {"email_24h": 2, "email_1h": 4, "sms": 2}


async def test_a_booking_confirmed_twice_in_a_batch_gets_the_reminders_of_the_first(
    service: Service, wired: ServiceRuntime
) -> None:
    start = service.day()
    phone = "+4915112345678"
    confirmed_at = start - 72 * HOUR
    booking = service.confirmed(start, phone=phone)
    other = service.confirmed(start)
    known = service.confirmed(start)
    ended = service.confirmed(start)
    moved = booking.model_copy(  # other facts: a day later, no phone
        update={
            "starts_at": start + 24 * HOUR,
            "ends_at": start + 25 * HOUR,
            "contact": other.contact,
        }
    )
    scheduled = Scheduled()
    await apply(wired, service, scheduled, [at(known, confirmed_at)])
    await service.db.execute(
        "INSERT INTO booking_states (booking_id, final, as_of) VALUES ($1, true, $2)",
        ended.booking_id,
        confirmed_at,
    )
    before = scheduled.counts()

    await apply(
        wired,
        service,
        scheduled,
        [
            at(booking, confirmed_at),
            at(known, confirmed_at + HOUR),  # confirmed before this batch
            at(other, confirmed_at),
            at(booking, confirmed_at),  # the same confirmation again (a new event id)
            at(moved, confirmed_at + HOUR),  # a later one with other facts
            at(known, confirmed_at + 2 * HOUR),
            at(ended, confirmed_at),  # a booking that ended
        ],
    )

    assert await shape(service, booking.booking_id) == [
        ("email_24h", 24 * HOUR, start - 24 * HOUR, "pending", phone),
        ("sms", 2 * HOUR, start - 2 * HOUR, "pending", phone),
        ("email_1h", HOUR, start - HOUR, "pending", phone),
    ]
    assert await state(service, booking.booking_id) == {
        "final": False,
        "as_of": confirmed_at,
        "starts_at": start,
        "contact_phone": phone,
    }
    assert [r[0] for r in await shape(service, other.booking_id)] == ["email_24h", "email_1h"]
    assert [r[0] for r in await shape(service, known.booking_id)] == ["email_24h", "email_1h"]
    assert await state(service, known.booking_id) == {
        "final": False,
        "as_of": confirmed_at,
        "starts_at": start,
        "contact_phone": None,
    }
    assert await shape(service, ended.booking_id) == []
    assert (await state(service, ended.booking_id) or {})["final"] is True
    added = {k: v - before.get(k, 0) for k, v in scheduled.counts().items()}
    assert added == {"email_24h": 2, "email_1h": 2, "sms": 1}


async def test_the_first_impossible_confirmation_of_a_batch_is_named_by_its_index(
    service: Service, wired: ServiceRuntime
) -> None:
    start = service.day()
    confirmed_at = start - 72 * HOUR
    fine = service.confirmed(start)
    backwards = service.confirmed(start, minutes=-30)
    nowhere = service.confirmed(start, time_zone="Mars/Olympus_Mons")
    scheduled = Scheduled()

    with pytest.raises(BatchItemError) as raised:
        await apply(
            wired,
            service,
            scheduled,
            [at(fine, confirmed_at), at(backwards, confirmed_at), at(nowhere, confirmed_at)],
        )
    with pytest.raises(BatchItemError) as second:
        await apply(wired, service, scheduled, [at(fine, confirmed_at), at(nowhere, confirmed_at)])

    assert raised.value.index == 1
    assert isinstance(raised.value.error, ImpossibleBooking)
    assert "before it starts" in str(raised.value.error)
    assert second.value.index == 1
    assert "unknown time zone 'Mars/Olympus_Mons'" in str(second.value.error)
    assert scheduled.counts() == {}


@dataclass
class DeadLetters:
    sent: list[tuple[str, bytes | None, dict[str, str]]] = field(default_factory=list)

    async def send(
        self, topic: str, *, key: bytes | None, value: bytes | None, headers: dict[str, str]
    ) -> None:
        self.sent.append((topic, key, headers))


def bookings_consumer(runtime: ServiceRuntime) -> EventConsumer:
    (consumer,) = [c for c in runtime.consumers if c.name == consumers.CONSUMER]
    return consumer


def records(items: Sequence[Item], *, first: int) -> list[IncomingRecord]:
    return [
        IncomingRecord(
            topic=topics.BOOKING_EVENTS,
            partition=0,
            offset=first + i,
            key=str(event.booking_id).encode(),
            value=envelope.to_json_bytes(),
            headers=tuple((k, v.encode()) for k, v in envelope.headers().items()),
        )
        for i, (envelope, event) in enumerate(items)
    ]


def scheduled_total(runtime: ServiceRuntime) -> float:
    registry = runtime.metrics.registry
    return sum(
        registry.get_sample_value("reminders_scheduled_total", {"channel": channel}) or 0
        for channel in ("email_24h", "email_1h", "sms")
    )


async def test_through_the_consumer_an_impossible_confirmation_is_dead_lettered_alone(
    service: Service, wired: ServiceRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = service.day()
    confirmed_at = start - 72 * HOUR
    phone = "+4915112345678"
    consumer = bookings_consumer(wired)
    dead = DeadLetters()
    monkeypatch.setattr(consumer, "dead_letters", dead)
    calls: list[list[uuid.UUID]] = []
    confirm = handlers.confirm_bookings

    def counting(store: Any, items: Sequence[Item], **kwargs: Any) -> Awaitable[None]:
        calls.append([envelope.id for envelope, _ in items])
        return confirm(store, items, **kwargs)

    spy: Callable[..., Awaitable[None]] = counting
    monkeypatch.setattr(handlers, "confirm_bookings", spy)
    before, after = service.confirmed(start, phone=phone), service.confirmed(start)
    backwards = service.confirmed(start, minutes=-30)
    later = [service.confirmed(start, phone=phone) for _ in range(3)]
    items = [
        at(before, confirmed_at),
        at(backwards, confirmed_at),
        at(after, confirmed_at),
        at(after, confirmed_at + HOUR),  # a duplicate
        *(at(event, confirmed_at) for event in later),
    ]
    counted = scheduled_total(wired)

    positions = await consumer.handle(records(items, first=1_000))

    assert positions == {(topics.BOOKING_EVENTS, 0): 1_000 + len(items)}
    # the service's own consumer runs too (on other records): only the calls with ours count
    ours = [envelope.id for envelope, _ in items]
    with_ours = [call for call in calls if set(call) & set(ours)]
    assert with_ours[0] == ours, "the run is given to the batch handler at once"
    assert [(topic, key) for topic, key, _ in dead.sent] == [
        (topics.dead_letter_topic(topics.BOOKING_EVENTS), str(backwards.booking_id).encode())
    ]
    headers = dead.sent[0][2]
    assert headers["dlq_kind"] == "rejected"
    assert headers["dlq_consumer"] == consumers.CONSUMER
    assert "before it starts" in headers["dlq_reason"]
    assert await state(service, backwards.booking_id) is None
    assert [r[0] for r in await shape(service, before.booking_id)] == [
        "email_24h",
        "sms",
        "email_1h",
    ]
    assert [r[0] for r in await shape(service, after.booking_id)] == ["email_24h", "email_1h"]
    for event in later:
        assert [r[0] for r in await shape(service, event.booking_id)] == [
            "email_24h",
            "sms",
            "email_1h",
        ]
    assert scheduled_total(wired) - counted == 3 + 2 + 3 * 3

    fine = [item for item in items if item[1] is not backwards]
    again = await consumer.handle(records(fine, first=2_000))  # redelivered: no second effect

    assert again == {(topics.BOOKING_EVENTS, 0): 2_000 + len(fine)}
    assert len(dead.sent) == 1
    assert scheduled_total(wired) - counted == 3 + 2 + 3 * 3
