"""Traces across the services: one booking, from ``POST /bookings`` through the payment to
the reminders it schedules, is one OpenTelemetry trace (spans written as JSON lines by every
process, ``<SERVICE>_TRACING_FILE``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from platform_tooling.client import connect, expect, next_minute, unique_user, utc_now
from platform_tooling.polling import until
from platform_tooling.standins import MailSink, PaymentStandIn
from tests.support.broker import PrivateBroker, PrivatePostgres
from tests.support.platform import Platform

from .conftest import platform_on


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("traces"))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def platform(
    database: PrivatePostgres,
    broker: PrivateBroker,
    mail: MailSink,
    payments: PaymentStandIn,
    traces: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Platform]:
    tracing = {
        service: {"TRACING_ENABLED": "true", "TRACING_FILE": str(traces / f"{service}.jsonl")}
        for service in ("timeslots", "booking", "reminders")
    }
    running = platform_on(
        database,
        broker.bootstrap,
        mail,
        Path(tmp_path_factory.mktemp("traced-logs")),
        extra=tracing,
    )
    try:
        await running.start()
        yield running
    finally:
        running.stop()


def _spans(traces: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(traces.glob("*.jsonl"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]


async def test_one_booking_is_one_trace_across_the_three_services(
    platform: Platform, traces: Path
) -> None:
    async with connect(
        platform.url("timeslots"), platform.url("booking"), platform.url("reminders")
    ) as api:
        room = await api.create_room("Traced room")
        slot = await api.custom_slot(room["id"], next_minute(utc_now() + timedelta(days=3)))
        user = unique_user("traced")
        booking = expect(await api.book(user, slot["id"]), 201)
        await api.wait_status(user, booking["id"], "confirmed")
        await api.wait_reminders(booking["id"], {"email_24h": "pending", "email_1h": "pending"})

    def journey() -> list[dict[str, Any]] | None:
        spans = _spans(traces)
        posts = [s for s in spans if s["name"] == "POST /bookings" and s["service"] == "booking"]
        if not posts:
            return None
        trace = [s for s in spans if s["trace_id"] == posts[-1]["trace_id"]]
        done = any(s["name"] == "reminders-bookings process BookingConfirmed.v1" for s in trace)
        return trace if done else None

    async def probe() -> list[dict[str, Any]] | None:
        return journey()

    trace = await until(probe, timeout_s=30, what="the reminders service's span")
    names = {(s["service"], s["name"]) for s in trace}
    ids = {s["span_id"] for s in trace}
    roots = [s for s in trace if s["parent_id"] is None or s["parent_id"] not in ids]

    assert {s["service"] for s in trace} == {"booking", "timeslots", "reminders"}
    assert {
        ("booking", "POST /bookings"),
        ("timeslots", "timeslots-booking-counts process BookingCreated.v1"),
        ("booking", "booking-payments process PaymentSucceeded.v1"),
        ("reminders", "reminders-bookings process BookingConfirmed.v1"),
    } <= names
    # one tree: the payment service (not ours, no spans here) passed the trace context of
    # BookingCreated on to its answer, so every span descends from the request's
    assert [s["name"] for s in roots] == ["POST /bookings"]
    assert any(s["kind"] == "CLIENT" and s["service"] == "booking" for s in trace)  # statements
    published = [s for s in _spans(traces) if s["name"] == "outbox publish"]
    assert any(trace[0]["trace_id"] in s["links"] for s in published)
