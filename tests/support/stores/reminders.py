"""The contract of the reminders service's store: the same cases against the SQL store on
PostgreSQL (``services/reminders/tests/integration/test_sql_store.py``) and its twin held in
the process (``services/reminders/tests/unit/test_memory_store.py``), so the fast tests of
the use cases, which run on the twin, hold for the service as it runs.

A test module subclasses :class:`StoreContract` and gives the fixture ``stores``: a
:class:`~platform_runtime.transactions.Stores` on an empty database of the service.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from platform_runtime.transactions import Stores
from reminders.domain import (
    BookingFacts,
    Channel,
    Confirmation,
    Delivered,
    Due,
    Failure,
    Job,
    Lease,
    Sent,
    Status,
)
from reminders.handlers import Store

START = datetime(2031, 5, 6, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
NOW = START - 48 * HOUR

AnyStores = Stores[Any, Store]


def facts(*, phone: str | None = "+4915112345678", **changes: Any) -> BookingFacts:
    values: dict[str, Any] = {
        "booking_id": uuid.uuid4(),
        "user_id": "user-1",
        "contact_email": "ada@example.com",
        "contact_phone": phone,
        "starts_at": START,
        "ends_at": START + HOUR,
        "room_name": "Room A",
        "room_time_zone": "Europe/Berlin",
    }
    return BookingFacts(**(values | changes))


PLAN = {Channel.EMAIL_24H: START - 24 * HOUR, Channel.EMAIL_1H: START - HOUR}


async def scheduled(stores: AnyStores, booking: BookingFacts, plan: dict[Channel, datetime]) -> int:
    async with stores.begin() as store:
        await store.remember_bookings([Confirmation(booking, version=1, as_of=NOW)])
        return await store.add_reminders([(booking, plan)])


async def shape(stores: AnyStores, booking_id: uuid.UUID) -> list[tuple[Any, ...]]:
    async with stores.begin() as store:
        return [
            (r.channel, r.status, r.scheduled_for, r.attempts, r.last_error)
            for r in await store.reminders_of(booking_id)
        ]


def mine(booking: BookingFacts, due: list[Due]) -> list[Due]:
    """Of reminders handed out, those of ``booking`` (the SQL store's database is shared by
    the cases of a module)."""
    return [d for d in due if d.booking_id == booking.booking_id]


async def queued(stores: AnyStores, booking: BookingFacts) -> list[Job]:
    """Hand out the booking's due reminders as the dispatcher does: jobs for them."""
    async with stores.begin() as store:
        due = mine(booking, await store.take_due(now=START, limit=100))
        jobs = {d.id: uuid.uuid4() for d in due}
        await store.mark_queued(jobs, lease_expires_at=START + HOUR)
    return [Job(jobs[d.id], d.id, d.scheduled_for) for d in due]


async def leased(stores: AnyStores, jobs: list[Job], *, now: datetime = START) -> list[Lease]:
    async with stores.begin() as store:
        return await store.take_leases(jobs, now=now, lease=timedelta(minutes=1))


class StoreContract:
    """The cases (the test module gives the fixture ``stores``)."""

    # --- bookings and the order of their events ------------------------------------------

    async def test_a_confirmation_is_new_once_and_never_after_the_booking_ended(
        self, stores: AnyStores
    ) -> None:
        first, ended = facts(), facts()
        async with stores.begin() as store:
            await store.end_booking(ended.booking_id, version=3, as_of=NOW)
            new = await store.remember_bookings(
                [Confirmation(first, version=1, as_of=NOW), Confirmation(ended, 1, NOW)]
            )
            again = await store.remember_bookings([Confirmation(first, version=1, as_of=NOW)])
            known = [await store.booking_known(b.booking_id) for b in (first, ended, facts())]

        assert (new, again, known) == ({first.booking_id}, set(), [True, True, False])

    async def test_a_reschedule_applies_only_when_newer_than_what_is_known(
        self, stores: AnyStores
    ) -> None:
        booking = facts()
        later = START + 2 * HOUR

        async def move(version: int, as_of: datetime, starts_at: datetime) -> datetime | None:
            async with stores.begin() as store:
                moved = await store.move_booking(
                    booking.booking_id,
                    starts_at=starts_at,
                    ends_at=starts_at + HOUR,
                    room_time_zone="Europe/Berlin",
                    version=version,
                    as_of=as_of,
                )
            return moved.starts_at if moved is not None else None

        assert await move(2, NOW, later) is None, "unknown booking"
        await scheduled(stores, booking, PLAN)
        assert await move(3, NOW - HOUR, later) == later, "a higher version, whatever its time"
        assert await move(3, NOW + HOUR, START) is None, "the same version is the same change"
        assert await move(2, NOW + HOUR, START) is None, "an older version"
        assert await move(0, NOW + 5 * HOUR, START) is None, "unversioned, below every version"
        async with stores.begin() as store:
            await store.end_booking(booking.booking_id, version=4, as_of=NOW)
        assert await move(9, NOW, START) is None, "an ended booking never moves"

    async def test_unversioned_events_are_ordered_by_their_times(self, stores: AnyStores) -> None:
        booking = facts()
        async with stores.begin() as store:
            await store.remember_bookings([Confirmation(booking, version=0, as_of=NOW)])
            older = await store.move_booking(
                booking.booking_id,
                starts_at=START + HOUR,
                ends_at=START + 2 * HOUR,
                room_time_zone="UTC",
                version=0,
                as_of=NOW - HOUR,
            )
            newer = await store.move_booking(
                booking.booking_id,
                starts_at=START + HOUR,
                ends_at=START + 2 * HOUR,
                room_time_zone="UTC",
                version=0,
                as_of=NOW + HOUR,
            )
        assert older is None
        assert newer is not None
        assert (newer.starts_at, newer.room_time_zone) == (START + HOUR, "UTC")

    # --- scheduling ----------------------------------------------------------------------

    async def test_a_channel_keeps_its_one_live_reminder(self, stores: AnyStores) -> None:
        booking = facts()
        assert await scheduled(stores, booking, PLAN) == 2
        async with stores.begin() as store:
            again = await store.add_reminders([(booking, PLAN | {Channel.SMS: START - 2 * HOUR})])
        assert again == 1
        assert await shape(stores, booking.booking_id) == [
            (Channel.EMAIL_24H, Status.PENDING, START - 24 * HOUR, 0, None),
            (Channel.SMS, Status.PENDING, START - 2 * HOUR, 0, None),
            (Channel.EMAIL_1H, Status.PENDING, START - HOUR, 0, None),
        ]

    async def test_a_replan_moves_live_reminders_adds_planned_ones_and_cancels_the_rest(
        self, stores: AnyStores
    ) -> None:
        booking = facts()
        await scheduled(stores, booking, PLAN)
        moved = facts(
            booking_id=booking.booking_id, starts_at=START + HOUR, ends_at=START + 2 * HOUR
        )
        async with stores.begin() as store:
            await store.replan(moved, {Channel.EMAIL_1H: START, Channel.SMS: START - HOUR})
        assert await shape(stores, booking.booking_id) == [
            (
                Channel.EMAIL_24H,
                Status.CANCELLED,
                START - 24 * HOUR,
                0,
                "the booking moved and this reminder's new time had passed",
            ),
            (Channel.SMS, Status.PENDING, START - HOUR, 0, None),
            (Channel.EMAIL_1H, Status.PENDING, START, 0, None),
        ]

    async def test_cancelling_touches_only_live_reminders_of_other_channels(
        self, stores: AnyStores
    ) -> None:
        booking = facts()
        await scheduled(stores, booking, PLAN)
        async with stores.begin() as store:
            kept = await store.cancel_live(
                booking.booking_id, except_kinds=["email_1h"], reason="x"
            )
            rest = await store.cancel_live(booking.booking_id)
            none = await store.cancel_live(booking.booking_id)
        assert (kept, rest, none) == (1, 1, 0)
        statuses = [(c, s, e) for c, s, _, _, e in await shape(stores, booking.booking_id)]
        assert statuses == [
            (Channel.EMAIL_24H, Status.CANCELLED, "x"),
            (Channel.EMAIL_1H, Status.CANCELLED, None),
        ]

    async def test_an_offer_has_one_email_while_it_is_live(self, stores: AnyStores) -> None:
        from booking_contracts.catalogue import Contact

        entry, slot = uuid.uuid4(), uuid.uuid4()
        for _ in range(2):
            async with stores.begin() as store:
                await store.add_offer_email(
                    entry_id=entry,
                    user_id="user-1",
                    slot_id=slot,
                    contact=Contact(email="ada@example.com"),
                    starts_at=START,
                    ends_at=START + HOUR,
                    room_name="Room A",
                    room_time_zone="Europe/Berlin",
                    offer_expires_at=NOW + HOUR,
                    due_at=NOW,
                )
        assert await shape(stores, entry) == [
            (Channel.WAITLIST_OFFER, Status.PENDING, NOW, 0, None)
        ]
        async with stores.begin() as store:
            assert await store.booking_known(entry) is False

    async def test_a_text_message_without_a_phone_is_refused(self, stores: AnyStores) -> None:
        booking = facts(phone=None)
        with pytest.raises(Exception, match="sms_has_phone"):
            await scheduled(stores, booking, {Channel.SMS: START - HOUR})
        assert await shape(stores, booking.booking_id) == []

    # --- dispatching and delivering ------------------------------------------------------

    async def test_due_reminders_and_lost_jobs_are_handed_out_in_order_of_time(
        self, stores: AnyStores
    ) -> None:
        booking = facts()
        await scheduled(stores, booking, PLAN | {Channel.SMS: START - 2 * HOUR})
        async with stores.begin() as store:
            early = mine(booking, await store.take_due(now=START - 24 * HOUR, limit=100))
            ahead = mine(
                booking, await store.take_due(now=START - 24 * HOUR, limit=100, ahead=22 * HOUR)
            )
            assert [d.channel for d in early] == [Channel.EMAIL_24H]
            assert [d.channel for d in ahead] == [Channel.EMAIL_24H, Channel.SMS]
            await store.mark_queued({early[0].id: uuid.uuid4()}, lease_expires_at=START - 3 * HOUR)
            lost = mine(booking, await store.take_due(now=START - 3 * HOUR, limit=100))
        assert [(d.channel, d.scheduled_for) for d in lost] == [
            (Channel.EMAIL_24H, START - 24 * HOUR)
        ]

    async def test_a_job_leases_its_reminder_only_while_it_is_the_current_one(
        self, stores: AnyStores
    ) -> None:
        booking = facts()
        await scheduled(stores, booking, {Channel.EMAIL_1H: START - HOUR})
        [job] = await queued(stores, booking)
        stranger = Job(uuid.uuid4(), job.reminder_id, job.scheduled_for)
        assert await leased(stores, [stranger]) == []
        [lease] = await leased(stores, [job])
        assert (lease.attempt, lease.not_before, lease.expires_at) == (
            1,
            START - HOUR,
            START + timedelta(minutes=1),
        )
        assert await leased(stores, [job]) == [], "the job was taken"
        async with stores.begin() as store:
            assert await store.still_held([lease]) == {job.reminder_id}

    async def test_a_sent_reminder_is_recorded_only_by_the_lease_holder(
        self, stores: AnyStores
    ) -> None:
        booking = facts()
        await scheduled(stores, booking, {Channel.EMAIL_1H: START - HOUR})
        [lease] = await leased(stores, await queued(stores, booking))
        stale = Lease(lease.reminder, lease.attempt + 1, lease.expires_at, lease.not_before)
        async with stores.begin() as store:
            assert await store.record_sent([Sent(stale, START)]) == []
            [done] = await store.record_sent([Sent(lease, START)])
            assert await store.record_sent([Sent(lease, START)]) == []
        assert done == Delivered(
            id=lease.reminder.id,
            booking_id=booking.booking_id,
            channel=Channel.EMAIL_1H,
            scheduled_for=START - HOUR,
            sent_at=START,
            message_id=lease.reminder.message_id,
        )
        assert [s for _, s, *_ in await shape(stores, booking.booking_id)] == [Status.SENT]

    async def test_a_failure_retries_later_or_fails_for_good(self, stores: AnyStores) -> None:
        booking = facts()
        await scheduled(stores, booking, PLAN)
        leases = await leased(stores, await queued(stores, booking))
        by_channel = {lease.reminder.channel: lease for lease in leases}
        async with stores.begin() as store:
            changed = await store.record_failures(
                [
                    Failure(by_channel[Channel.EMAIL_24H], "421 busy", retry_at=START + HOUR),
                    Failure(by_channel[Channel.EMAIL_1H], "550 no such user " * 200, None),
                ]
            )
        assert sorted((u.channel, u.status, u.attempts) for u in changed) == [
            (Channel.EMAIL_1H, Status.FAILED, 1),
            (Channel.EMAIL_24H, Status.PENDING, 1),
        ]
        assert max(len(u.last_error) for u in changed) == 2000
        async with stores.begin() as store:
            [again] = mine(booking, await store.take_due(now=START + HOUR, limit=100))
        assert again.channel == Channel.EMAIL_24H

    async def test_a_released_lease_is_pending_again_without_counting_the_attempt(
        self, stores: AnyStores
    ) -> None:
        booking = facts()
        await scheduled(stores, booking, {Channel.EMAIL_1H: START - HOUR})
        [lease] = await leased(stores, await queued(stores, booking))
        async with stores.begin() as store:
            await store.release([lease])
            assert await store.still_held([lease]) == set()
        assert await shape(stores, booking.booking_id) == [
            (Channel.EMAIL_1H, Status.PENDING, START - HOUR, 0, None)
        ]

    async def test_a_reminder_due_after_its_booking_started_is_cancelled(
        self, stores: AnyStores
    ) -> None:
        booking = facts()
        await scheduled(stores, booking, {Channel.EMAIL_1H: START - HOUR})
        async with stores.begin() as store:
            [due] = mine(booking, await store.take_due(now=START, limit=100))
            await store.cancel_stale([due.id])
        assert await shape(stores, booking.booking_id) == [
            (
                Channel.EMAIL_1H,
                Status.CANCELLED,
                START - HOUR,
                0,
                "the booking started before the reminder could be sent",
            )
        ]
