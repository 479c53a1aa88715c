"""End-to-end benchmark of the platform (``make bench-e2e``).

The three services run as real processes (one replica each, ``tests/support/platform.py``)
on a Kafka broker and a PostgreSQL server of their own (the ``deploy/local`` scripts on free
ports), with the payment service stand-in (pays every booking, as fast as it reads them) and a
mail sink. Ten rooms with a week of generated slots; every booking is for a slot of its own.

* **Bookings per second, HTTP request to confirmed**: ``BOOKINGS`` users book at once
  (``CONCURRENCY`` requests in flight); a booking counts as confirmed at the time of its
  ``BookingConfirmed`` event (the envelope's ``time``: when the booking service committed the
  confirmation). Rate = bookings / (last confirmation - first request).
  Reference, same run: the same number of bookings by users the stand-in never charges,
  counted at their ``201``: what taking a place costs without the payment round trip.
* **Latency from ``PaymentSucceeded`` to reminder scheduled**: the payment event's time (set
  by the stand-in when it published) to the reminder rows' ``created_at`` (reminders database),
  per booking, for ``PACED`` bookings made one every ``PACE_S`` seconds (no queue in front of
  them); the same for the burst above is reported as ``burst_…`` (mostly queueing). Reference,
  same run: one hop through the broker (produce, then consume, on the same broker), p50 of 200
  messages.

Writes ``bench/results/e2e.json`` and ``bench/results/e2e.png`` and prints a table.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.reminders import environment, percentile
from shared.db import asyncpg_dsn
from shared.events import topics
from tests.e2e.api import Api, auth, connect, unique_user
from tests.support.broker import private_broker, private_postgres
from tests.support.platform import Platform, free_port
from tests.support.standins import MailSink, PaymentStandIn

RESULTS = Path(__file__).resolve().parent / "results"
BOOKINGS = 400
CONCURRENCY = 16
ROOMS = 10
HOP_MESSAGES = 200
PACED = 40
PACE_S = 0.25


async def book_all(api: Api, users: list[str], slots: list[str]) -> dict[str, tuple[float, str]]:
    """user -> (request start, booking id); ``CONCURRENCY`` requests in flight."""
    gate = asyncio.Semaphore(CONCURRENCY)
    done: dict[str, tuple[float, str]] = {}

    async def one(user: str, slot: str) -> None:
        async with gate:
            started = time.time()
            response = await api.booking.post(
                "/bookings", headers=auth(user), json={"slot_id": slot}
            )
            if response.status_code != 201:
                raise RuntimeError(f"booking failed: {response.status_code} {response.text}")
            done[user] = (started, response.json()["id"])

    await asyncio.gather(*(one(u, s) for u, s in zip(users, slots, strict=True)))
    return done


async def events_of(kafka: str, topic: str, wanted: str, ids: set[str]) -> dict[str, datetime]:
    """subject -> time of the first ``wanted`` event about each id (waits for all)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    found: dict[str, datetime] = {}
    deadline = time.monotonic() + 120
    try:
        while set(found) < ids and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    envelope = json.loads(record.value or b"{}")
                    subject = envelope.get("subject")
                    if envelope.get("type") == wanted and subject in ids:
                        found.setdefault(subject, datetime.fromisoformat(envelope["time"]))
    finally:
        await consumer.stop()
    if set(found) < ids:
        raise RuntimeError(f"{len(ids - set(found))} {wanted} events missing")
    return found


async def one_hop_s(kafka: str) -> list[float]:
    """Produce, then consume, one message at a time: the broker's own round trip."""
    topic = f"bench-hop-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=kafka, enable_idempotence=True)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka, fetch_max_wait_ms=20)
    await producer.start()
    await producer.send_and_wait(topic, b"warm-up")
    await consumer.start()
    await consumer.seek_to_end()
    hops = []
    try:
        for _ in range(HOP_MESSAGES):
            sent = time.time()
            await producer.send_and_wait(topic, b"x")
            while not (await consumer.getmany(timeout_ms=1000)):
                pass
            hops.append(time.time() - sent)
    finally:
        await consumer.stop()
        await producer.stop()
    return hops


async def main() -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    broker, database = private_broker(state / "kafka"), private_postgres(state / "postgres")
    await asyncio.to_thread(broker.start)
    await asyncio.to_thread(database.start)
    mail = MailSink(port=free_port())
    mail.start()
    payments = PaymentStandIn(broker.bootstrap)
    platform = Platform(
        postgres_dsn=database.dsn,
        kafka=broker.bootstrap,
        logs=state / "logs",
        settings={
            "reminders": {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(mail.port)},
            "booking": {},
            "timeslots": {},
        },
    )
    try:
        await payments.start()
        await platform.start()
        print(f"platform ready (logs in {platform.logs})")
        async with connect(
            platform.url("timeslots"), platform.url("booking"), platform.url("reminders")
        ) as api:
            return await measure(api, platform, broker.bootstrap)
    finally:
        platform.stop()
        await payments.stop()
        mail.stop()
        await asyncio.to_thread(broker.stop)
        await asyncio.to_thread(database.stop)
        await asyncio.to_thread(database.remove)


async def measure(api: Api, platform: Platform, kafka: str) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    slots: list[str] = []
    for i in range(ROOMS):
        room = await api.create_room(f"Bench {i}", hourly_rate="40.00")
        await api.put_schedule(
            room["id"],
            open_weekdays=[1, 2, 3, 4, 5, 6, 7],
            hours=[{"start": "07:00", "end": "23:00"}],
            slot_minutes=30,
        )
        await api.generate(room["id"], today + timedelta(days=2), today + timedelta(days=8))
        rows = await fetch(
            platform.database_url("timeslots"),
            "SELECT id::text FROM timeslots WHERE room_id = $1 ORDER BY starts_at",
            uuid.UUID(room["id"]),
        )
        slots += [r["id"] for r in rows]
    needed = 2 * BOOKINGS + 20 + PACED
    assert len(slots) >= needed, (len(slots), needed)
    warm = [unique_user() for _ in range(20)]
    for user, slot in zip(warm, slots[:20], strict=True):
        response = await api.book(user, slot, timeout_s=60)  # waits until booking knows slots
        assert response.status_code == 201, response.text
    await wait_known(platform, slots[-1])

    print(f"reference: {BOOKINGS} bookings taken, never paid")
    unpaid = [unique_user("unpaid") for _ in range(BOOKINGS)]
    started = time.time()
    await book_all(api, unpaid, slots[20 : 20 + BOOKINGS])
    create_s = time.time() - started
    create_rate = BOOKINGS / create_s

    print(f"run: {BOOKINGS} bookings, request to confirmed")
    paid = [unique_user() for _ in range(BOOKINGS)]
    requests = await book_all(api, paid, slots[20 + BOOKINGS : 20 + 2 * BOOKINGS])
    ids = {booking_id for _, booking_id in requests.values()}
    confirmed = await events_of(kafka, topics.BOOKING_EVENTS, "BookingConfirmed.v1", ids)
    payment = await events_of(kafka, topics.PAYMENT_EVENTS, "PaymentSucceeded.v1", ids)
    first = min(start for start, _ in requests.values())
    last = max(confirmed.values()).timestamp()
    rate = BOOKINGS / (last - first)
    to_confirmed = [confirmed[b].timestamp() - s for s, b in requests.values()]

    scheduled = await reminders_created(platform, ids)
    to_reminder = [(scheduled[b] - payment[b]).total_seconds() for b in ids]

    print(f"paced: {PACED} bookings, one every {PACE_S}s (latency without a queue)")
    paced_users = [unique_user() for _ in range(PACED)]
    paced_slots = slots[20 + 2 * BOOKINGS : 20 + 2 * BOOKINGS + PACED]
    paced: dict[str, tuple[float, str]] = {}
    for user, slot in zip(paced_users, paced_slots, strict=True):
        paced |= await book_all(api, [user], [slot])
        await asyncio.sleep(PACE_S)
    paced_ids = {booking_id for _, booking_id in paced.values()}
    paced_confirmed = await events_of(
        kafka, topics.BOOKING_EVENTS, "BookingConfirmed.v1", paced_ids
    )
    paced_payment = await events_of(kafka, topics.PAYMENT_EVENTS, "PaymentSucceeded.v1", paced_ids)
    paced_scheduled = await reminders_created(platform, paced_ids)
    paced_to_confirmed = [paced_confirmed[b].timestamp() - s for s, b in paced.values()]
    paced_to_reminder = [(paced_scheduled[b] - paced_payment[b]).total_seconds() for b in paced_ids]
    hops = await one_hop_s(kafka)
    hop_p50 = statistics.median(hops)

    figures = {
        "bookings": BOOKINGS,
        "concurrency": CONCURRENCY,
        "confirmed_per_s": round(rate, 1),
        "reference_created_per_s": round(create_rate, 1),
        "confirmed_ratio_to_created": round(rate / create_rate, 3),
        "request_to_confirmed_p50_s": round(percentile(to_confirmed, 50), 3),
        "request_to_confirmed_p99_s": round(percentile(to_confirmed, 99), 3),
        "burst_payment_to_reminder_p50_s": round(percentile(to_reminder, 50), 3),
        "burst_payment_to_reminder_p99_s": round(percentile(to_reminder, 99), 3),
        "paced_request_to_confirmed_p50_s": round(percentile(paced_to_confirmed, 50), 3),
        "payment_to_reminder_p50_s": round(percentile(paced_to_reminder, 50), 3),
        "payment_to_reminder_p99_s": round(percentile(paced_to_reminder, 99), 3),
        "reference_kafka_hop_p50_s": round(hop_p50, 4),
        "payment_to_reminder_p50_in_kafka_hops": round(
            percentile(paced_to_reminder, 50) / hop_p50, 1
        ),
    }
    document = {
        "benchmark": "end to end",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **figures,
        "setup": {
            "replicas": 1,
            "rooms": ROOMS,
            "payment": "stand-in: pays each BookingCreated as soon as it reads it",
            "infrastructure": "Kafka and PostgreSQL of its own, same machine",
        },
        "environment": environment(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "e2e.json").write_text(json.dumps(document, indent=2) + "\n")
    plot(to_confirmed, to_reminder, figures, RESULTS / "e2e.png")
    for key, value in figures.items():
        print(f"  {key:42s} {value}")
    print("wrote bench/results/e2e.json and bench/results/e2e.png")
    return document


async def fetch(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    db = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return list(await db.fetch(query, *args))
    finally:
        await db.close()


async def wait_known(platform: Platform, slot_id: str) -> None:
    """Until the booking service's copy has the last slot (it learns them from Kafka)."""
    for _ in range(600):
        url = platform.database_url("booking")
        if await fetch(url, "SELECT 1 FROM slots WHERE id = $1", uuid.UUID(slot_id)):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("the booking service never learned the slots")


async def reminders_created(platform: Platform, ids: set[str]) -> dict[str, datetime]:
    deadline = time.monotonic() + 120
    while True:
        rows = await fetch(
            platform.database_url("reminders"),
            "SELECT booking_id::text, min(created_at) AS at FROM reminders"
            " WHERE booking_id = ANY($1::uuid[]) GROUP BY booking_id",
            [uuid.UUID(i) for i in ids],
        )
        if len(rows) == len(ids):
            return {r["booking_id"]: r["at"] for r in rows}
        if time.monotonic() > deadline:
            raise TimeoutError(f"reminders of {len(ids) - len(rows)} bookings missing")
        await asyncio.sleep(0.5)


def plot(
    to_confirmed: list[float], to_reminder: list[float], figures: dict[str, Any], path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    left.hist(to_confirmed, bins=40, color="#3a7dce")
    left.set_xlabel("HTTP request to BookingConfirmed (s)")
    left.set_title(
        f"{figures['bookings']} bookings, {figures['concurrency']} in flight: "
        f"{figures['confirmed_per_s']:.0f} confirmed/s\n"
        f"(reference, taken without payment: {figures['reference_created_per_s']:.0f}/s)"
    )
    right.hist(to_reminder, bins=40, color="#2ca02c", label="burst")
    right.axvline(
        figures["reference_kafka_hop_p50_s"],
        color="#d62728",
        linestyle="--",
        label="one Kafka hop (p50)",
    )
    right.set_xlabel("PaymentSucceeded to reminder scheduled (s)")
    right.set_title(
        f"burst: p50 {figures['burst_payment_to_reminder_p50_s']:.2f}s (queueing); "
        f"paced, no queue: p50 {figures['payment_to_reminder_p50_s']:.3f}s"
    )
    right.legend()
    fig.suptitle("End to end: three services as processes, real Kafka and PostgreSQL")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def cli() -> None:
    asyncio.run(main())


if __name__ == "__main__":
    cli()
