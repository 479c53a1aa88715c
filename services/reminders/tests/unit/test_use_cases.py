"""Every use case of the reminders service, through the in-memory broker and its store twin
held in the process: booking events become reminders (planned as of the event's time),
move, end; waitlist offers get their email; due reminders become jobs; an admin reads them.
The service suites run the same behaviour on PostgreSQL and Kafka."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from booking_contracts import topics
from booking_contracts.catalogue import BookingConfirmed, WaitlistOfferLapsed
from platform_runtime.memorydb import MemoryDatabase
from reminders import consumers, handlers
from reminders.dispatcher import dispatch
from reminders.domain import BookingNotFound, Channel, ImpossibleBooking, Schedule, Status
from reminders.memory import MemoryStore, RemindersState
from tests.support import booking_events
from tests.support.memory_service import MemoryService

from .helpers import OUTBOX, Service, plan, stores

START = datetime(2031, 3, 4, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
PHONE = "+4915112345678"
SCHEDULE = Schedule({**Schedule().offsets, Channel.SMS: 2 * HOUR})


@pytest_asyncio.fixture
async def service() -> AsyncIterator[Service]:
    running = MemoryService(MemoryDatabase(RemindersState()))
    consumers.register(
        running.consumer(consumers.CONSUMER, permanent_errors=(ImpossibleBooking,)),
        MemoryStore,
        SCHEDULE,
        running.metrics.counter("reminders_scheduled_total", "scheduled", ["channel"]),
        clock=lambda: START - 48 * HOUR,
    )
    async with running.running(topics.REMINDER_JOBS):
        yield running


async def confirm(service: Service, booking: BookingConfirmed, *, at: datetime) -> None:
    await service.applied(await service.publish(booking, at=at))


async def test_a_confirmed_booking_gets_the_reminders_still_ahead_of_the_events_time(
    service: Service,
) -> None:
    early = booking_events.confirmed(START, phone=PHONE)
    late = booking_events.confirmed(START)
    await confirm(service, early, at=START - 48 * HOUR)
    await confirm(service, late, at=START - 3 * HOUR)  # the 24 h reminder's time has passed

    assert await plan(service, early.booking_id) == [
        (Channel.EMAIL_24H, Status.PENDING, START - 24 * HOUR),
        (Channel.SMS, Status.PENDING, START - 2 * HOUR),
        (Channel.EMAIL_1H, Status.PENDING, START - HOUR),
    ]
    assert await plan(service, late.booking_id) == [
        (Channel.EMAIL_1H, Status.PENDING, START - HOUR)
    ]
    scheduled = service.metrics.registry.get_sample_value(
        "reminders_scheduled_total", {"channel": "email_1h"}
    )
    assert scheduled == 2


async def test_a_redelivered_or_repeated_confirmation_schedules_nothing_more(
    service: Service,
) -> None:
    booking = booking_events.confirmed(START)
    first = await service.publish(booking, at=START - 48 * HOUR)
    await service.publish_envelope(first, topics.BOOKING_EVENTS, key=str(booking.booking_id))
    await service.applied(first)
    await confirm(service, booking, at=START - 47 * HOUR)  # another event of the same booking

    assert [c for c, _, _ in await plan(service, booking.booking_id)] == [
        Channel.EMAIL_24H,
        Channel.EMAIL_1H,
    ]


async def test_a_reschedule_moves_the_reminders_and_an_older_one_read_late_does_not(
    service: Service,
) -> None:
    booking = booking_events.confirmed(START).model_copy(update={"booking_version": 1})
    await confirm(service, booking, at=START - 48 * HOUR)
    later = booking_events.rescheduled(booking, START + 5 * HOUR).model_copy(
        update={"booking_version": 3}
    )
    stale = booking_events.rescheduled(booking, START + 9 * HOUR).model_copy(
        update={"booking_version": 2}
    )
    await service.applied(await service.publish(later, at=START - 30 * HOUR))
    await service.applied(await service.publish(stale, at=START - 29 * HOUR))

    assert await plan(service, booking.booking_id) == [
        (Channel.EMAIL_24H, Status.PENDING, START - 19 * HOUR),
        (Channel.EMAIL_1H, Status.PENDING, START + 4 * HOUR),
    ]


async def test_a_cancellation_ends_the_reminders_even_when_read_before_the_confirmation(
    service: Service,
) -> None:
    booking, early_end = booking_events.confirmed(START), booking_events.confirmed(START)
    await confirm(service, booking, at=START - 48 * HOUR)
    await service.applied(
        await service.publish(booking_events.cancelled(booking), at=START - 40 * HOUR)
    )
    await service.applied(
        await service.publish(booking_events.cancelled(early_end), at=START - 40 * HOUR)
    )
    await confirm(service, early_end, at=START - 48 * HOUR)

    assert [s for _, s, _ in await plan(service, booking.booking_id)] == [Status.CANCELLED] * 2
    assert await plan(service, early_end.booking_id) == []


async def test_an_impossible_booking_is_dead_lettered_and_the_stream_moves_on(
    service: Service,
) -> None:
    bad = booking_events.confirmed(START, time_zone="Mars/Olympus_Mons")
    good = booking_events.confirmed(START)
    await service.publish(bad, at=START - 48 * HOUR)
    await confirm(service, good, at=START - 48 * HOUR)

    [dead] = await service.dead_letters(topics.BOOKING_EVENTS)
    assert dead.header("dlq_reason") == "ImpossibleBooking: unknown time zone 'Mars/Olympus_Mons'"
    assert await plan(service, bad.booking_id) == []
    assert len(await plan(service, good.booking_id)) == 2


async def test_an_offer_gets_one_email_until_it_ends_and_none_once_it_has(
    service: Service,
) -> None:
    now = START - 48 * HOUR
    live = booking_events.offer(START, expires_at=now + HOUR)
    over = booking_events.offer(START, expires_at=now - HOUR)
    await service.applied(await service.publish(live, at=now))
    await service.applied(await service.publish(live, at=now))
    await service.applied(await service.publish(over, at=now - 2 * HOUR))

    assert await plan(service, live.entry_id) == [(Channel.WAITLIST_OFFER, Status.PENDING, now)]
    assert await plan(service, over.entry_id) == []

    lapsed = WaitlistOfferLapsed(
        entry_id=live.entry_id, slot_id=live.slot_id, room_id=live.room_id, user_id=live.user_id
    )
    await service.applied(await service.publish(lapsed, at=now + HOUR))
    assert await plan(service, live.entry_id) == [(Channel.WAITLIST_OFFER, Status.CANCELLED, now)]


async def test_an_admin_reads_a_bookings_reminders_and_an_unknown_booking_is_not_found(
    service: Service,
) -> None:
    booking = booking_events.confirmed(START)
    await confirm(service, booking, at=START - 48 * HOUR)
    async with stores(service).begin() as store:
        seen = await handlers.booking_reminders(store, booking.booking_id)
        with pytest.raises(BookingNotFound):
            await handlers.booking_reminders(store, booking_events.confirmed(START).booking_id)
    assert [r.channel for r in seen] == [Channel.EMAIL_24H, Channel.EMAIL_1H]


async def test_due_reminders_become_jobs_and_those_past_their_bookings_start_are_dropped(
    service: Service,
) -> None:
    booking, begun = booking_events.confirmed(START), booking_events.confirmed(START - 2 * HOUR)
    await confirm(service, booking, at=START - 48 * HOUR)
    await confirm(service, begun, at=START - 48 * HOUR)

    async with stores(service).begin() as store:
        done = await dispatch(
            store, OUTBOX, now=START - HOUR, limit=100, job_timeout=timedelta(minutes=5)
        )

    assert (done.queued, done.stale) == (2, 2)
    jobs = await service.events(topics.REMINDER_JOBS, at_least=2)
    assert sorted(j["data"]["channel"] for j in jobs) == ["email_1h", "email_24h"]
    assert {j["data"]["booking_id"] for j in jobs} == {str(booking.booking_id)}
    assert [s for _, s, _ in await plan(service, booking.booking_id)] == [Status.QUEUED] * 2
    assert [s for _, s, _ in await plan(service, begun.booking_id)] == [Status.CANCELLED] * 2
