"""Faults survived with nothing lost and nothing doubled, on two replicas of every service.

One platform for the module (its own broker and PostgreSQL). Every phase books a stream of
users onto one slot whose 1-hour reminders fall due a few minutes after the module starts,
while something breaks: each service killed with ``kill -9`` (all its replicas at once) and
restarted; the Kafka broker stopped and started; PostgreSQL stopped and started. Clients
retry as a real one would, with the same ``Idempotency-Key``, through any replica. Then every
event is delivered again, in reverse order, and poison is published on every topic. After
each phase the effects are counted exactly, in the services' databases and on the topics;
the last test waits until the reminders fall due and counts the emails.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import asyncpg
import httpx
import pytest
import pytest_asyncio
from aiokafka import ConsumerRecord

from booking_contracts import topics
from booking_contracts.catalogue import BookingConfirmed, BookingCreated, Contact, PaymentSucceeded
from booking_contracts.envelope import Envelope
from booking_contracts.money import Money
from platform_runtime.db import asyncpg_dsn
from platform_tooling.client import Api, auth, connect, expect, next_minute, unique_user, utc_now
from platform_tooling.polling import until
from platform_tooling.standins import MailSink, PaymentStandIn
from tests.support.broker import PrivateBroker, PrivatePostgres
from tests.support.kafka import produce, read_all
from tests.support.platform import CONSUMER_GROUPS, Platform, group_lag, quiet
from tests.support.threads import in_thread

REPLICAS = 2
PER_PHASE = 24
HOUR = timedelta(hours=1)

pytestmark = pytest.mark.timeout(600)


# --- the module's world ----------------------------------------------------------------


@dataclass
class World:
    platform: Platform
    api: Api
    kafka: str
    slot: dict[str, Any]
    room: dict[str, Any]
    booked: dict[str, str] = field(default_factory=dict)
    """user -> booking id, over all phases."""

    async def db(self, service: str) -> asyncpg.Connection:
        return await asyncpg.connect(asyncpg_dsn(self.platform.database_url(service)))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(platform: Platform) -> AsyncIterator[World]:
    async with connect(
        platform.url("timeslots"), platform.url("booking"), platform.url("reminders")
    ) as api:
        room = await api.create_room("Faults", time_zone="Europe/Lisbon")
        # the 1-hour reminders of every booking fall due ~3 minutes from now
        start = next_minute(utc_now() + HOUR + timedelta(minutes=3))
        slot = await api.custom_slot(room["id"], start, max_bookings=500)
        yield World(platform, api, platform.kafka, slot, room)


# --- a stream of bookings --------------------------------------------------------------


async def book_through_outages(world: World, user: str, timeout_s: float = 120) -> str:
    """Book as a client would: on no answer or a 5xx, try again (any replica) with the same
    ``Idempotency-Key`` until the booking service answers."""
    key = str(uuid.uuid4())
    urls = itertools.cycle(r.url for r in world.platform.replicas["booking"])
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            try:
                response = await client.post(
                    f"{next(urls)}/bookings",
                    headers=auth(user) | {"Idempotency-Key": key},
                    json={"slot_id": world.slot["id"]},
                )
                if response.status_code < 500 and response.status_code != 404:
                    return str(expect(response, 201)["id"])
            except httpx.TransportError:
                pass
            assert asyncio.get_running_loop().time() < deadline, f"{user} could not book"
            await asyncio.sleep(0.2)


async def stream(
    world: World, count: int, *, during: Callable[[], Awaitable[None]], after: int
) -> list[str]:
    """``count`` users book (4 at a time); once ``after`` have booked, ``during()`` runs
    while the rest keep booking."""
    users = [unique_user() for _ in range(count)]
    done: list[str] = []
    gate = asyncio.Semaphore(4)
    reached = asyncio.Event()

    async def one(user: str) -> None:
        async with gate:
            world.booked[user] = await book_through_outages(world, user)
            done.append(user)
            if len(done) >= after:
                reached.set()

    async def fault() -> None:
        await reached.wait()
        await during()

    await asyncio.gather(*(one(u) for u in users), fault())
    return users


# --- counting effects ------------------------------------------------------------------


async def envelopes(kafka: str, topic: str) -> list[dict[str, Any]]:
    records = await read_all(kafka, topic)
    return [json.loads(r.value) for r in records if r.value and r.key != b"poison"]


async def no_consumer_behind(world: World) -> None:
    await quiet(world.platform)


async def all_confirmed(world: World, users: list[str]) -> None:
    last: Counter[str] = Counter()

    async def probe() -> bool:
        conn = await world.db("booking")
        try:
            rows = await conn.fetch(
                "SELECT status, payment_status FROM bookings WHERE user_id = ANY($1::text[])",
                users,
            )
        finally:
            await conn.close()
        last.clear()
        last.update(f"{r['status']}/{r['payment_status']}" for r in rows)
        last["missing"] = len(users) - len(rows)
        return len(rows) == len(users) and all(r["status"] == "confirmed" for r in rows)

    try:
        await until(probe, timeout_s=120, what="every booking of the stream confirmed")
    except TimeoutError as exc:
        raise AssertionError(
            f"bookings by status: {dict(last)}; {await _diagnosis(world)}"
        ) from exc


async def _diagnosis(world: World) -> str:
    """Where a stream got stuck: unpublished outbox rows, consumer groups behind."""
    found = []
    for service in ("booking", "timeslots", "reminders"):
        conn = await world.db(service)
        try:
            pending = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        finally:
            await conn.close()
        found.append(f"{service} outbox unpublished {pending}")
    payments = await read_all(world.kafka, topics.PAYMENT_EVENTS)
    found.append(f"{len(payments)} records on {topics.PAYMENT_EVENTS}")
    dead = await read_all(world.kafka, topics.dead_letter_topic(topics.PAYMENT_EVENTS))
    reasons = Counter(_header(r, "dlq_reason")[:120] for r in dead)
    found.append(f"dead letters of payments: {dict(reasons)}")
    groups = dict(CONSUMER_GROUPS) | {"payment-standin": [topics.BOOKING_EVENTS]}
    for group, group_topics in groups.items():
        for topic in group_topics:
            found.append(f"{group} behind on {topic}: {await group_lag(world.kafka, group, topic)}")
    return "; ".join(found)


async def assert_exact(world: World) -> None:
    """Every user of every phase: one booking, confirmed and paid once, one place taken in
    both inventories, one reminder; no event announced twice (distinct ids)."""
    users, ids = list(world.booked), set(world.booked.values())
    await all_confirmed(world, users)
    await no_consumer_behind(world)

    booking = await world.db("booking")
    try:
        rows = await booking.fetch(
            "SELECT id::text, user_id, status, payment_status FROM bookings WHERE slot_id = $1",
            uuid.UUID(world.slot["id"]),
        )
        copy = await booking.fetchval(
            "SELECT booked_count FROM slots WHERE id = $1", uuid.UUID(world.slot["id"])
        )
    finally:
        await booking.close()
    assert sorted(r["user_id"] for r in rows) == sorted(users), "one booking per user"
    assert {(r["status"], r["payment_status"]) for r in rows} == {("confirmed", "paid")}
    assert {r["id"] for r in rows} == ids
    assert copy == len(users)

    timeslots = await world.db("timeslots")
    try:
        counted = await timeslots.fetchval(
            "SELECT booked_count FROM timeslots WHERE id = $1", uuid.UUID(world.slot["id"])
        )
    finally:
        await timeslots.close()
    assert counted == len(users)

    events = await envelopes(world.kafka, topics.BOOKING_EVENTS)
    confirmations = Counter(
        e["subject"]
        for e in {e["id"]: e for e in events if e["type"] == "BookingConfirmed.v1"}.values()
    )
    assert {b: confirmations[b] for b in ids} == dict.fromkeys(ids, 1), "confirmed once each"

    reminders = await world.db("reminders")
    try:
        rows = await reminders.fetch(
            "SELECT booking_id::text, kind FROM reminders WHERE booking_id = ANY($1::uuid[])",
            [uuid.UUID(i) for i in ids],
        )
    finally:
        await reminders.close()
    per_booking = Counter((r["booking_id"], r["kind"]) for r in rows)
    assert per_booking == Counter({(b, "email_1h"): 1 for b in ids}), "one reminder each"


# --- the phases ------------------------------------------------------------------------


async def restart(platform: Platform, service: str) -> None:
    for replica in platform.replicas[service]:
        replica.kill()
    for replica in platform.replicas[service]:
        replica.start()
    await asyncio.gather(*(r.wait_ready() for r in platform.replicas[service]))


async def test_each_service_killed_mid_stream_loses_and_doubles_nothing(world: World) -> None:
    async def kill_each() -> None:
        for service in ("booking", "timeslots", "reminders"):
            await restart(world.platform, service)

    await stream(world, PER_PHASE, during=kill_each, after=4)
    await assert_exact(world)


async def cancel_through_outages(world: World, user: str, booking_id: str) -> None:
    """Cancel as a client would: on no answer or a 5xx, try again through any replica; a 409
    is an earlier attempt that took effect but whose answer was lost."""
    urls = itertools.cycle(r.url for r in world.platform.replicas["booking"])
    deadline = asyncio.get_running_loop().time() + 120
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            try:
                response = await client.post(
                    f"{next(urls)}/bookings/{booking_id}/cancel", headers=auth(user), json={}
                )
                if response.status_code in (200, 409):
                    return
            except httpx.TransportError:
                pass
            assert asyncio.get_running_loop().time() < deadline, f"{user} could not cancel"
            await asyncio.sleep(0.2)


async def test_places_freed_while_the_booking_service_is_killed_are_offered_once_in_order(
    world: World,
) -> None:
    """Six full slots with two waiters each; their holders cancel through both replicas while
    every booking replica is killed (-9) and restarted. A place is offered in the transaction
    that frees it, so each slot ends with exactly one offer, to its first waiter, announced
    once; the second still waits and the place stays held."""
    api = world.api
    first = next_minute(utc_now() + 30 * HOUR)
    slots = [
        await api.custom_slot(world.room["id"], first + i * HOUR, max_bookings=1) for i in range(6)
    ]
    holders: list[tuple[str, str]] = []
    lines: dict[str, tuple[str, str]] = {}
    for slot in slots:
        holder = unique_user("holder")
        made = expect(await api.book(holder, slot["id"]), 201)
        await api.wait_status(holder, made["id"], "confirmed")
        holders.append((holder, str(made["id"])))
        lines[slot["id"]] = (unique_user("first"), unique_user("second"))
        for waiter in lines[slot["id"]]:
            await api.join_waitlist(waiter, slot["id"])

    async def cancel(i: int) -> None:
        await asyncio.sleep(0.3 * i)
        await cancel_through_outages(world, *holders[i])

    await asyncio.gather(
        *(cancel(i) for i in range(len(holders))), restart(world.platform, "booking")
    )
    await no_consumer_behind(world)

    booking = await world.db("booking")
    try:
        for slot in slots:
            rows = await booking.fetch(
                "SELECT user_id, status FROM waitlist_entries WHERE slot_id = $1 ORDER BY seq",
                uuid.UUID(slot["id"]),
            )
            held = await booking.fetchval(
                "SELECT booked_count FROM slots WHERE id = $1", uuid.UUID(slot["id"])
            )
            assert [(r["user_id"], r["status"]) for r in rows] == [
                (lines[slot["id"]][0], "offered"),
                (lines[slot["id"]][1], "waiting"),
            ]
            assert held == 1, "the freed place is held for the waiter"
    finally:
        await booking.close()
    events = await envelopes(world.kafka, topics.BOOKING_EVENTS)
    offers = Counter(
        e["subject"]
        for e in {e["id"]: e for e in events if e["type"] == "WaitlistOfferMade.v1"}.values()
    )
    assert {s["id"]: offers[s["id"]] for s in slots} == {s["id"]: 1 for s in slots}


class Server(Protocol):
    def stop(self) -> None: ...
    def start(self) -> None: ...


async def stream_through_an_outage(world: World, server: Server) -> None:
    """A stream of bookings while ``server`` is stopped for a few seconds and started again."""

    async def outage() -> None:
        await in_thread(server.stop)
        await asyncio.sleep(3)
        await in_thread(server.start)

    await stream(world, PER_PHASE, during=outage, after=4)
    await world.platform.wait_ready()
    await assert_exact(world)


async def test_the_broker_stopped_and_started_under_load_loses_and_doubles_nothing(
    world: World, broker: PrivateBroker
) -> None:
    await stream_through_an_outage(world, broker)


async def test_postgres_stopped_and_started_under_load_loses_and_doubles_nothing(
    world: World, database: PrivatePostgres
) -> None:
    await stream_through_an_outage(world, database)


async def test_every_event_delivered_again_in_reverse_order_changes_nothing(
    world: World, payments: PaymentStandIn
) -> None:
    before = await snapshot(world)
    for topic in (topics.TIMESLOTS_EVENTS, topics.BOOKING_EVENTS, topics.PAYMENT_EVENTS):
        records = await read_all(world.kafka, topic)
        for record in reversed(records):
            await produce(
                world.kafka,
                topic,
                [record.value or b""],
                key=record.key,
                headers=list(record.headers or ()),
            )
    await no_consumer_behind(world)
    await asyncio.sleep(2)  # the payment stand-in answers the repeated BookingCreated again
    await no_consumer_behind(world)

    assert await snapshot(world) == before
    await assert_exact(world)


async def snapshot(world: World) -> dict[str, list[tuple[Any, ...]]]:
    queries = {
        "booking": "SELECT id, status, payment_status, payment_id FROM bookings ORDER BY id",
        "timeslots": "SELECT id, booked_count, status FROM timeslots ORDER BY id",
        # not the status: reminders falling due meanwhile are handed out
        "reminders": "SELECT id, booking_id, kind, scheduled_for FROM reminders ORDER BY id",
    }
    found = {}
    for service, query in queries.items():
        conn = await world.db(service)
        try:
            found[service] = [tuple(r) for r in await conn.fetch(query)]
        finally:
            await conn.close()
    return found


async def test_poison_goes_to_the_dead_letter_topics_money_goes_back_and_the_consumers_carry_on(
    world: World,
) -> None:
    unknown_booking = uuid.uuid4()
    start = datetime.fromisoformat(world.slot["starts_at"]).astimezone(UTC)
    impossible = {
        topics.PAYMENT_EVENTS: PaymentSucceeded(
            booking_id=unknown_booking, payment_id="pay-x", amount=Money.of("1.00", "EUR")
        ),
        topics.BOOKING_EVENTS: BookingCreated(
            booking_id=unknown_booking,
            user_id="nobody",
            slot_id=uuid.uuid4(),  # no such slot
            room_id=uuid.UUID(world.room["id"]),
            starts_at=start,
            ends_at=start + HOUR,
            price=Money.of("40.00", "EUR"),
            hold_expires_at=start,
        ),
    }
    bad_zone = BookingConfirmed(
        booking_id=uuid.uuid4(),
        user_id="nobody",
        slot_id=uuid.uuid4(),
        room_id=uuid.uuid4(),
        room_name="Nowhere",
        room_time_zone="Mars/Olympus_Mons",
        starts_at=start + 24 * HOUR,
        ends_at=start + 25 * HOUR,
        contact=Contact(email="nobody@example.com"),
        payment_id="pay-y",
        price=Money.of("40.00", "EUR"),
    )
    poison: dict[str, list[bytes]] = {
        topic: [b"\x00not json", _unknown_type()]
        for topic in (
            topics.TIMESLOTS_EVENTS,
            topics.BOOKING_EVENTS,
            topics.PAYMENT_EVENTS,
            topics.REMINDER_JOBS,
        )
    }
    for topic, event in impossible.items():
        poison[topic].append(Envelope.wrap(event, source="/faults").to_json_bytes())
    poison[topics.BOOKING_EVENTS].append(Envelope.wrap(bad_zone, source="/faults").to_json_bytes())
    for topic, values in poison.items():
        await produce(world.kafka, topic, values, key=b"poison")

    expected = {  # topic -> consumer groups that must dead-letter each poison record there
        topics.TIMESLOTS_EVENTS: {"booking-inventory": 2},
        topics.PAYMENT_EVENTS: {"booking-payments": 2},  # the payment is returned, not kept
        topics.REMINDER_JOBS: {"reminders-delivery": 2},
        topics.BOOKING_EVENTS: {"timeslots-booking-counts": 3, "reminders-bookings": 3},
    }

    async def dead_lettered() -> dict[str, Counter[str]] | None:
        found = {}
        for topic in expected:
            records = await read_all(world.kafka, topics.dead_letter_topic(topic))
            found[topic] = Counter(
                _header(r, "dlq_consumer") for r in records if r.key == b"poison"
            )
        return found if all(found[t] >= Counter(expected[t]) for t in expected) else None

    found = await until(dead_lettered, timeout_s=60, what="poison in the dead-letter topics")
    for topic, groups in expected.items():
        assert {g: found[topic][g] for g in groups} == groups, topic
    for record in await read_all(world.kafka, topics.dead_letter_topic(topics.PAYMENT_EVENTS)):
        if record.key == b"poison":
            assert _header(record, "dlq_reason")

    async def returned() -> list[dict[str, Any]] | None:
        refunds = [
            envelope
            for record in await read_all(world.kafka, topics.BOOKING_EVENTS)
            if record.key == str(unknown_booking).encode()
            and record.value is not None
            and (envelope := json.loads(record.value))["type"] == "RefundRequested.v1"
            and envelope["data"]["payment_id"] == "pay-x"
        ]
        return refunds or None

    # the payment for a booking that does not exist is asked back in full, once (the payment
    # stand-in also charges the poison BookingCreated: that payment is returned the same way)
    await until(returned, timeout_s=30, what="the unknown booking's payment returned")
    await asyncio.sleep(1)  # a second request, were there one, has the time to show up
    refunds = await returned() or []
    [refund] = list({r["id"]: r for r in refunds}.values())  # one event (at least once on Kafka)
    assert refund["data"]["amount"] == {"amount": "1.00", "currency": "EUR"}

    # nobody is stuck: a new user books, pays, is confirmed and gets a reminder
    users = await stream(world, 2, during=_nothing, after=2)
    await all_confirmed(world, users)
    await assert_exact(world)


async def test_every_reminder_of_the_module_arrives_once(world: World, mail: MailSink) -> None:
    due = datetime.fromisoformat(world.slot["starts_at"]) - HOUR
    ids = set(world.booked.values())

    async def all_sent() -> list[asyncpg.Record] | None:
        conn = await world.db("reminders")
        try:
            rows = await conn.fetch(
                "SELECT booking_id::text, message_id, status, sent_at, scheduled_for FROM reminders"
                " WHERE booking_id = ANY($1::uuid[])",
                [uuid.UUID(i) for i in ids],
            )
        finally:
            await conn.close()
        return rows if rows and all(r["status"] == "sent" for r in rows) else None

    wait_s = max(0.0, (due - utc_now()).total_seconds()) + 90
    rows = await until(all_sent, timeout_s=wait_s, what="every reminder sent")
    assert len(rows) == len(ids)
    arrived = Counter(m.message_id for m in mail.received)
    assert {r["message_id"]: arrived[r["message_id"]] for r in rows} == {
        r["message_id"]: 1 for r in rows
    }, "each reminder arrived exactly once"
    assert all(r["sent_at"] >= r["scheduled_for"] for r in rows)


# --- helpers ---------------------------------------------------------------------------


async def _nothing() -> None:
    return None


def _unknown_type() -> bytes:
    envelope = Envelope.wrap(
        BookingConfirmed(
            booking_id=uuid.uuid4(),
            user_id="nobody",
            slot_id=uuid.uuid4(),
            room_id=uuid.uuid4(),
            room_name="x",
            room_time_zone="UTC",
            starts_at=utc_now() + 48 * HOUR,
            ends_at=utc_now() + 49 * HOUR,
            contact=Contact(email="nobody@example.com"),
            payment_id="pay-z",
            price=Money.of("1.00", "EUR"),
        ),
        source="/faults",
    )
    return envelope.model_copy(update={"type": "BookingTeleported.v1"}).to_json_bytes()


def _header(record: ConsumerRecord[bytes, bytes], name: str) -> str:
    for key, value in record.headers or ():
        if key == name:
            return str(value.decode())
    return ""
