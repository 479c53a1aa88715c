"""The reminders service's use cases: what booking events do to reminders, and an admin's view.

Each runs in the caller's transaction: the consumer's, after the event id was claimed in the
inbox (so a redelivered event has no second effect), or the request's. Confirmations, the bulk
of the traffic, are applied a run at a time (:func:`confirm_bookings`): the bookings of a run
of consecutive confirmations are remembered in one statement and the reminders of those new to
this service are inserted in another, with the same result as applying them one by one. What a
booking's reminders are follows from the *time of the event* (its envelope's ``time``), not
from when it is read, so an event read late has the same result as one read at once;
``booking_states`` makes duplicates and events out of order harmless. Which of two events of a
booking is the newer is decided by the booking's version in each (``booking_version``, counted
by the booking service's database; not the class's schema ``version``), not by their envelope
times, which the clocks of different booking replicas wrote: only events written before
versions existed (no ``booking_version``, taken as 0) are ordered by their times, below every
versioned one (the order rule: :mod:`reminders.store`). Events with impossible facts (an
unknown time zone, an end before the start) raise :class:`~reminders.domain.ImpossibleBooking`
(in a run of confirmations: as the :class:`~platform_runtime.messaging.BatchItemError` of that
event).
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol
from uuid import UUID

from booking_contracts.catalogue import (
    BookingConfirmed,
    BookingRescheduled,
    Contact,
    WaitlistOfferMade,
)
from booking_contracts.envelope import Envelope
from platform_runtime.messaging import BatchItemError
from platform_runtime.transactions import TransactionalStore
from reminders import domain
from reminders.domain import (
    BookingNotFound,
    Channel,
    Confirmation,
    Due,
    Failure,
    ImpossibleBooking,
    Job,
    Lease,
    Schedule,
    Sent,
    check_booking,
)

if TYPE_CHECKING:
    from prometheus_client import Counter

log = logging.getLogger(__name__)


class Store(TransactionalStore, Protocol):
    """What the use cases read and change, in one transaction: the service's database
    (:class:`reminders.store.SqlStore`), or its twin held in the process
    (:class:`reminders.memory.MemoryStore`), which the same contract tests hold to the same
    behaviour. The methods are documented on the SQL store."""

    async def remember_bookings(self, confirmations: Sequence[Confirmation]) -> set[UUID]: ...

    async def move_booking(
        self,
        booking_id: UUID,
        *,
        starts_at: datetime,
        ends_at: datetime,
        room_time_zone: str,
        version: int,
        as_of: datetime,
    ) -> domain.BookingFacts | None: ...

    async def end_booking(self, booking_id: UUID, *, version: int, as_of: datetime) -> None: ...

    async def booking_known(self, booking_id: UUID) -> bool: ...

    async def add_reminders(
        self, plans: Sequence[tuple[domain.BookingFacts, Mapping[Channel, datetime]]]
    ) -> int: ...

    async def add_offer_email(
        self,
        *,
        entry_id: UUID,
        user_id: str,
        slot_id: UUID,
        contact: Contact,
        starts_at: datetime,
        ends_at: datetime,
        room_name: str,
        room_time_zone: str,
        offer_expires_at: datetime,
        due_at: datetime,
    ) -> None: ...

    async def replan(
        self, facts: domain.BookingFacts, planned: Mapping[Channel, datetime]
    ) -> None: ...

    async def cancel_live(
        self, booking_id: UUID, *, except_kinds: Sequence[str] = (), reason: str | None = None
    ) -> int: ...

    async def take_due(
        self, *, now: datetime, limit: int, ahead: timedelta = timedelta(0)
    ) -> list[Due]: ...

    async def mark_queued(
        self, jobs: Mapping[UUID, UUID], *, lease_expires_at: datetime
    ) -> None: ...

    async def cancel_stale(self, ids: Sequence[UUID]) -> None: ...

    async def take_leases(
        self, jobs: Sequence[Job], *, now: datetime, lease: timedelta
    ) -> list[Lease]: ...

    async def still_held(self, leases: Sequence[Lease]) -> set[UUID]: ...

    async def release(self, leases: Sequence[Lease]) -> None: ...

    async def record_sent(self, sent: Sequence[Sent]) -> list[domain.Delivered]: ...

    async def record_failures(self, failures: Sequence[Failure]) -> list[domain.Undelivered]: ...

    async def reminders_of(self, booking_id: UUID) -> list[domain.StoredReminder]: ...


async def confirm_bookings(
    store: Store,
    confirmations: Sequence[tuple[Envelope, BookingConfirmed]],
    *,
    schedule: Schedule,
    scheduled: Counter,
) -> None:
    """Apply a run of confirmations (in offset order) set-based, as if one by one: each
    booking not known yet is remembered and gets the reminders planned as of its event's
    time; a booking known already (confirmed before, also earlier in the run, or ended)
    gets nothing. At most two statements for the whole run.

    The first confirmation with impossible facts raises :class:`BatchItemError` with its
    index and the :class:`ImpossibleBooking` error, before anything is written.
    """
    firsts: dict[UUID, int] = {}  # booking id -> index of its first confirmation
    for index, (_, event) in enumerate(confirmations):
        try:
            check_booking(
                starts_at=event.starts_at, ends_at=event.ends_at, time_zone=event.room_time_zone
            )
        except ImpossibleBooking as exc:
            raise BatchItemError(index, exc) from exc
        firsts.setdefault(event.booking_id, index)  # a later one is a duplicate
    facts = {booking_id: _facts(confirmations[i][1]) for booking_id, i in firsts.items()}
    new = await store.remember_bookings(
        [
            Confirmation(
                facts[booking_id],
                version=confirmations[i][1].booking_version or 0,
                as_of=confirmations[i][0].time,
            )
            for booking_id, i in firsts.items()
        ],
    )
    plans: list[tuple[domain.BookingFacts, dict[Channel, datetime]]] = []
    for index, (envelope, event) in enumerate(confirmations):
        if event.booking_id not in new or firsts[event.booking_id] != index:
            log.info("booking %s is known already: nothing to schedule", event.booking_id)
            continue
        planned = schedule.plan(
            starts_at=event.starts_at,
            has_phone=event.contact.phone is not None,
            as_of=envelope.time,
        )
        plans.append((facts[event.booking_id], planned))
    await store.add_reminders(plans)
    counts = Tally(channel for _, planned in plans for channel in planned)
    for channel, count in counts.items():
        scheduled.labels(channel.value).inc(count)


def _facts(event: BookingConfirmed) -> domain.BookingFacts:
    return domain.BookingFacts(
        booking_id=event.booking_id,
        user_id=event.user_id,
        contact_email=str(event.contact.email),
        contact_phone=event.contact.phone,
        starts_at=event.starts_at,
        ends_at=event.ends_at,
        room_name=event.room_name,
        room_time_zone=event.room_time_zone,
    )


async def reschedule(
    store: Store, event: BookingRescheduled, *, as_of: datetime, schedule: Schedule
) -> None:
    """Move a live booking's reminders to its new time (those now past are dropped); a stale
    event, or one for no live booking, changes nothing."""
    check_booking(
        starts_at=event.new_starts_at,
        ends_at=event.new_ends_at,
        time_zone=event.room_time_zone,
    )
    facts = await store.move_booking(
        event.booking_id,
        starts_at=event.new_starts_at,
        ends_at=event.new_ends_at,
        room_time_zone=event.room_time_zone,
        version=event.booking_version or 0,
        as_of=as_of,
    )
    if facts is None:
        log.info("reschedule of booking %s is stale or for no live booking", event.booking_id)
        return
    planned = schedule.plan(
        starts_at=facts.starts_at, has_phone=facts.contact_phone is not None, as_of=as_of
    )
    await store.replan(facts, planned)


async def end(store: Store, booking_id: UUID, *, version: int, as_of: datetime) -> None:
    """A booking ended (cancelled, completed, no-show, expired): its live reminders go."""
    await store.end_booking(booking_id, version=version, as_of=as_of)
    await store.cancel_live(booking_id)


async def booking_reminders(store: Store, booking_id: UUID) -> list[domain.StoredReminder]:
    """Every reminder of a booking, live or not, by scheduled time; ``BookingNotFound`` when
    neither a reminder nor an event of it is known here."""
    rows = await store.reminders_of(booking_id)
    if not rows and not await store.booking_known(booking_id):
        raise BookingNotFound(f"no reminders of booking {booking_id} are known")
    return rows


# --- waitlist offers ---------------------------------------------------------------------


async def offer_made(
    store: Store, event: WaitlistOfferMade, *, as_of: datetime, now: datetime
) -> None:
    """Tell the waiter at once (due when the offer was made, ``as_of``) that a place is held
    for them; an offer read after it ended is not told."""
    if event.offer_expires_at <= now:
        return
    domain.check_booking(
        starts_at=event.starts_at, ends_at=event.ends_at, time_zone=event.room_time_zone
    )
    await store.add_offer_email(
        entry_id=event.entry_id,
        user_id=event.user_id,
        slot_id=event.slot_id,
        contact=event.contact,
        starts_at=event.starts_at,
        ends_at=event.ends_at,
        room_name=event.room_name,
        room_time_zone=event.room_time_zone,
        offer_expires_at=event.offer_expires_at,
        due_at=as_of,
    )


async def offer_over(store: Store, entry_id: UUID) -> None:
    """The offer was taken, declined, lapsed or closed: an email not sent yet is not sent."""
    await store.cancel_live(entry_id, reason="the offer is over")
