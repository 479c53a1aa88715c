"""A worker process killed (``kill -9``) in the middle of a batch: nothing is lost, and only
messages whose sending had started can arrive twice, with the same Message-ID."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from reminders.cli import run_worker
from tests.support.brokers import KafkaBroker
from tests.support.drivers import ShiftedClock
from tests.support.fixtures import CreateDatabase
from tests.support.ports import free_port
from tests.support.senders import SmsProvider, SmtpSink
from tests.support.threads import in_thread

from .conftest import Service, serve

BOOKINGS = 24
CONCURRENCY = 4
STALL_AFTER = 8


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink(stall_after=STALL_AFTER)
    sink.start()
    yield sink
    sink.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(
    create_database: CreateDatabase, kafka_bootstrap: str, smtp: SmtpSink, sms: SmsProvider
) -> AsyncIterator[Service]:
    """Scheduler and dispatcher in this process on the real clock (the workers in the other
    processes have it); workers elsewhere, on the real broker."""
    async with serve(
        create_database,
        KafkaBroker(kafka_bootstrap),
        smtp,
        sms,
        clock=ShiftedClock(timedelta(0)),
        worker_enabled=False,
        # room to send and record on a loaded machine (a lease that runs out is taken again:
        # a third attempt, which the test rightly counts as one too many)
        lease_s=6,
        smtp_timeout_s=2.5,
        sms_timeout_s=2.5,
        delivery_concurrency=CONCURRENCY,
    ) as running_service:
        yield running_service


def _worker_process(service: Service, log: Path, port: int) -> subprocess.Popen[bytes]:
    s = service.settings
    env = os.environ | {
        "REMINDERS_DATABASE_URL": s.database_url,
        "REMINDERS_KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers,
        "REMINDERS_SMTP_HOST": "127.0.0.1",
        "REMINDERS_SMTP_PORT": str(s.smtp_port),
        "REMINDERS_SMTP_TIMEOUT_S": str(s.smtp_timeout_s),
        "REMINDERS_SMS_TIMEOUT_S": str(s.sms_timeout_s),
        "REMINDERS_LEASE_S": str(s.lease_s),
        "REMINDERS_DELIVERY_CONCURRENCY": str(CONCURRENCY),
        "REMINDERS_KAFKA_FETCH_MAX_WAIT_MS": "50",
    }
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "reminders", "worker", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


async def test_a_worker_killed_mid_batch_leaves_nothing_undelivered(
    service: Service, smtp: SmtpSink, tmp_path: Path
) -> None:
    port = free_port()
    worker = _worker_process(service, tmp_path / "worker.log", port)
    try:
        # 1 h 6 s ahead: only the 1 h reminder, falling due for all bookings in 6 seconds
        start = datetime.now(UTC) + timedelta(hours=1, seconds=6)
        bookings = [service.confirmed(start) for _ in range(BOOKINGS)]
        for booking in bookings:
            await service.publish(booking)
        for booking in bookings:
            await service.until(partial(service.known, booking.booking_id))

        # the sink takes STALL_AFTER messages, then receives but never answers: every
        # sender of the worker is stuck in the middle of a send
        await service.until(lambda: _at_least(smtp, STALL_AFTER + CONCURRENCY), timeout_s=60)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as worker_http:
            ready = await worker_http.get("/health/ready")

            async def sent_counted() -> bool:  # outcomes are recorded a moment after sending
                metrics = await worker_http.get("/metrics")
                return 'reminders_delivered_total{channel="email_1h",outcome="sent"}' in (
                    metrics.text
                )

            await service.until(sent_counted)
        assert ready.status_code == 200  # a worker process answers probes and is scraped
        worker.send_signal(signal.SIGKILL)
        await in_thread(worker.wait, 10)
    finally:
        if worker.poll() is None:  # pragma: no cover - only when the test failed early
            worker.kill()
            worker.wait(10)
    started_before_the_crash = {r.message_id for r in smtp.received}
    smtp.stall_after = None
    smtp.release()

    stop = asyncio.Event()
    replacement = asyncio.create_task(run_worker(service.settings, stop))
    try:
        for booking in bookings:
            await service.statuses(booking.booking_id, {"email_1h": "sent"}, timeout_s=60)
    finally:
        stop.set()
        await replacement

    rows = [(await service.by_kind(b.booking_id))["email_1h"] for b in bookings]
    arrived = Counter(r.message_id for r in smtp.received)
    assert {r["message_id"] for r in rows} == set(arrived)
    repeated = {message_id for message_id, count in arrived.items() if count > 1}
    assert repeated <= started_before_the_crash
    assert len(repeated) >= CONCURRENCY  # those stuck mid-send went out again, same Message-ID
    assert max(arrived.values()) <= 2
    assert all(r["attempts"] in (1, 2) for r in rows)
    assert len(started_before_the_crash) >= STALL_AFTER + CONCURRENCY


async def _at_least(smtp: SmtpSink, count: int) -> bool:
    return len(smtp.received) >= count


async def test_a_worker_stopping_gives_back_what_it_holds_for_later_and_it_goes_out_on_time(
    service: Service, smtp: SmtpSink
) -> None:
    smtp.stall_after = None
    # due in 8 s: handed out at once (10 s ahead) and held by the first worker
    start = datetime.now(UTC) + timedelta(hours=1, seconds=8)
    bookings = [service.confirmed(start) for _ in range(3)]
    first_stop = asyncio.Event()
    first = asyncio.create_task(run_worker(service.settings, first_stop))
    try:
        for booking in bookings:
            await service.publish(booking)
        for booking in bookings:
            await service.until(partial(_held, service, booking.booking_id), timeout_s=30)
    finally:
        first_stop.set()
        await first
    assert datetime.now(UTC) < start - timedelta(hours=1), "too slow: the reminders fell due"
    for booking in bookings:
        row = (await service.by_kind(booking.booking_id))["email_1h"]
        # given back: pending again, or already handed out anew by the dispatcher (which
        # runs every 0.1 s here), never attempted
        given_back = (row["status"], row["lease_expires_at"]) == ("pending", None)
        handed_out_again = row["status"] == "queued" and row["job_id"] is not None
        assert row["attempts"] == 0
        assert given_back or handed_out_again, row

    second_stop = asyncio.Event()
    second = asyncio.create_task(run_worker(service.settings, second_stop))
    try:
        rows = [
            (await service.statuses(b.booking_id, {"email_1h": "sent"}, timeout_s=40))["email_1h"]
            for b in bookings
        ]
    finally:
        second_stop.set()
        await second
    for booking, row in zip(bookings, rows, strict=True):
        (received,) = smtp.to(f"{booking.booking_id}@example.com")
        assert received.message["Message-ID"] == row["message_id"]
        assert row["attempts"] == 1
        assert row["sent_at"] >= row["scheduled_for"]


async def _held(service: Service, booking_id: uuid.UUID) -> bool:
    rows = await service.by_kind(booking_id)
    row = rows.get("email_1h")
    return row is not None and row["status"] == "queued" and row["job_id"] is None
