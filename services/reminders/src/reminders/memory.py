"""The reminders service's store held in the process: the twin of :class:`reminders.store.SqlStore`.

:class:`MemoryStore` works on a transaction of a
:class:`~platform_runtime.memorydb.MemoryDatabase` whose state is a :class:`RemindersState`,
so that the use cases, the dispatcher and the workers run in the fast tests with no
PostgreSQL. It keeps what the SQL store keeps, the same way: the order rule of a booking's
events, at most one live reminder per booking and channel, leases fenced by their attempt
and scheduled time, and the table's checks (a row that breaks one raises
:class:`~platform_runtime.memorydb.ConstraintViolation`, as the database refuses it). The
contract tests (``tests/support/stores/reminders.py``) run the same cases against both
stores.

What it leaves out: locks (the memory database runs one transaction at a time).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from booking_contracts.catalogue import Contact
from platform_runtime.memorydb import ConstraintViolation, TwinStore
from reminders.domain import (
    LIVE,
    BookingFacts,
    Channel,
    Confirmation,
    Delivered,
    Due,
    Failure,
    Job,
    Lease,
    Reminder,
    Sent,
    Status,
    StoredReminder,
    Undelivered,
)

TOO_LATE = "the booking started before the reminder could be sent"
MOVED_PAST = "the booking moved and this reminder's new time had passed"


@dataclass
class BookingState:
    """A row of ``booking_states``: the order key of the event that set the facts."""

    final: bool
    version: int
    as_of: datetime
    facts: BookingFacts | None


@dataclass
class ReminderRow:
    """A row of ``reminders``."""

    id: UUID
    booking_id: UUID
    user_id: str
    channel: Channel
    scheduled_for: datetime
    due_at: datetime
    status: Status
    contact_email: str
    contact_phone: str | None
    starts_at: datetime
    ends_at: datetime
    room_name: str
    room_time_zone: str
    created_at: datetime
    updated_at: datetime
    attempts: int = 0
    last_error: str | None = None
    job_id: UUID | None = None
    lease_expires_at: datetime | None = None
    sent_at: datetime | None = None
    message_id: str | None = None
    slot_id: UUID | None = None
    offer_expires_at: datetime | None = None

    def check(self) -> None:
        """The table's checks."""
        broken = [
            name
            for name, holds in (
                ("attempts_not_negative", self.attempts >= 0),
                ("ends_after_start", self.ends_at > self.starts_at),
                (
                    "sent_has_time_and_message_id",
                    self.status != Status.SENT
                    or (self.sent_at is not None and self.message_id is not None),
                ),
                ("sms_has_phone", self.channel != Channel.SMS or self.contact_phone is not None),
                (
                    "offer_has_slot_and_end",
                    (self.channel == Channel.WAITLIST_OFFER)
                    == (self.slot_id is not None and self.offer_expires_at is not None),
                ),
            )
            if not holds
        ]
        if broken:
            raise ConstraintViolation(f"reminder {self.id} breaks {', '.join(broken)}")

    def reminder(self) -> Reminder:
        return Reminder(
            id=self.id,
            booking_id=self.booking_id,
            channel=self.channel,
            scheduled_for=self.scheduled_for,
            contact_email=self.contact_email,
            contact_phone=self.contact_phone,
            starts_at=self.starts_at,
            ends_at=self.ends_at,
            room_name=self.room_name,
            room_time_zone=self.room_time_zone,
            slot_id=self.slot_id,
            offer_expires_at=self.offer_expires_at,
        )


@dataclass
class RemindersState:
    bookings: dict[UUID, BookingState] = field(default_factory=dict)
    reminders: dict[UUID, ReminderRow] = field(default_factory=dict)


def _newer(key: tuple[int, datetime], *, version: int, as_of: datetime) -> bool:
    """Whether the event ``(version, as_of)`` is newer than the row's ``key`` (the order rule
    of :mod:`reminders.store`)."""
    if version:
        return key[0] < version
    return key < (0, as_of)


class MemoryStore(TwinStore[RemindersState]):
    """The service's state in a :class:`MemoryDatabase` transaction (see the module)."""

    # --- bookings ------------------------------------------------------------------------

    async def remember_bookings(self, confirmations: Sequence[Confirmation]) -> set[UUID]:
        new: set[UUID] = set()
        for c in sorted(confirmations, key=lambda c: c.facts.booking_id):
            if c.facts.booking_id not in self.state.bookings:
                self.state.bookings[c.facts.booking_id] = BookingState(
                    final=False, version=c.version, as_of=c.as_of, facts=c.facts
                )
                new.add(c.facts.booking_id)
        return new

    async def move_booking(
        self,
        booking_id: UUID,
        *,
        starts_at: datetime,
        ends_at: datetime,
        room_time_zone: str,
        version: int,
        as_of: datetime,
    ) -> BookingFacts | None:
        known = self.state.bookings.get(booking_id)
        if (
            known is None
            or known.final
            or known.facts is None
            or not _newer((known.version, known.as_of), version=version, as_of=as_of)
        ):
            return None
        known.facts = dataclasses.replace(
            known.facts, starts_at=starts_at, ends_at=ends_at, room_time_zone=room_time_zone
        )
        known.version, known.as_of = version, as_of
        return known.facts

    async def end_booking(self, booking_id: UUID, *, version: int, as_of: datetime) -> None:
        known = self.state.bookings.get(booking_id)
        if known is None:
            self.state.bookings[booking_id] = BookingState(
                final=True, version=version, as_of=as_of, facts=None
            )
            return
        known.final = True
        if (known.version, known.as_of) < (version, as_of):
            known.version, known.as_of = version, as_of

    async def booking_known(self, booking_id: UUID) -> bool:
        return booking_id in self.state.bookings

    # --- scheduling ----------------------------------------------------------------------

    def _live(self, booking_id: UUID, channel: Channel) -> ReminderRow | None:
        return next(
            (
                r
                for r in self.state.reminders.values()
                if r.booking_id == booking_id and r.channel == channel and r.status in LIVE
            ),
            None,
        )

    def _insert(self, row: ReminderRow) -> bool:
        """Insert ``row`` unless its booking and channel have a live reminder already."""
        row.check()
        if self._live(row.booking_id, row.channel) is not None:
            return False
        self.state.reminders[row.id] = row
        return True

    def _new(self, facts: BookingFacts, channel: Channel, at: datetime) -> ReminderRow:
        return ReminderRow(
            id=uuid.uuid4(),
            booking_id=facts.booking_id,
            user_id=facts.user_id,
            channel=channel,
            scheduled_for=at,
            due_at=at,
            status=Status.PENDING,
            contact_email=facts.contact_email,
            contact_phone=facts.contact_phone,
            starts_at=facts.starts_at,
            ends_at=facts.ends_at,
            room_name=facts.room_name,
            room_time_zone=facts.room_time_zone,
            created_at=self.now,
            updated_at=self.now,
        )

    async def add_reminders(
        self, plans: Sequence[tuple[BookingFacts, Mapping[Channel, datetime]]]
    ) -> int:
        added = 0
        for facts, planned in sorted(plans, key=lambda plan: plan[0].booking_id):
            for channel, at in sorted(planned.items()):
                added += self._insert(self._new(facts, channel, at))
        return added

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
    ) -> None:
        facts = BookingFacts(
            booking_id=entry_id,
            user_id=user_id,
            contact_email=str(contact.email),
            contact_phone=contact.phone,
            starts_at=starts_at,
            ends_at=ends_at,
            room_name=room_name,
            room_time_zone=room_time_zone,
        )
        row = self._new(facts, Channel.WAITLIST_OFFER, due_at)
        row.slot_id, row.offer_expires_at = slot_id, offer_expires_at
        self._insert(row)

    async def replan(self, facts: BookingFacts, planned: Mapping[Channel, datetime]) -> None:
        for channel, at in sorted(planned.items()):
            live = self._live(facts.booking_id, channel)
            if live is None:
                self._insert(self._new(facts, channel, at))
                continue
            live.scheduled_for = live.due_at = at
            live.status, live.attempts, live.last_error = Status.PENDING, 0, None
            live.job_id = live.lease_expires_at = None
            live.starts_at, live.ends_at = facts.starts_at, facts.ends_at
            live.room_time_zone, live.updated_at = facts.room_time_zone, self.now
            live.check()
        await self.cancel_live(
            facts.booking_id, except_kinds=[c.value for c in planned], reason=MOVED_PAST
        )

    async def cancel_live(
        self, booking_id: UUID, *, except_kinds: Sequence[str] = (), reason: str | None = None
    ) -> int:
        cancelled = [
            r
            for r in self.state.reminders.values()
            if r.booking_id == booking_id and r.status in LIVE and r.channel not in except_kinds
        ]
        for r in cancelled:
            self._cancel(r, reason)
        return len(cancelled)

    def _cancel(self, row: ReminderRow, reason: str | None) -> None:
        row.status, row.job_id, row.lease_expires_at = Status.CANCELLED, None, None
        row.last_error, row.updated_at = reason, self.now

    # --- dispatching ---------------------------------------------------------------------

    async def take_due(
        self, *, now: datetime, limit: int, ahead: timedelta = timedelta(0)
    ) -> list[Due]:
        due = sorted(
            (
                r
                for r in self.state.reminders.values()
                if (r.status == Status.PENDING and r.due_at <= now + ahead)
                or (
                    r.status == Status.QUEUED
                    and r.lease_expires_at is not None
                    and r.lease_expires_at <= now
                )
            ),
            key=lambda r: (r.due_at, r.id),
        )
        return [
            Due(
                id=r.id,
                booking_id=r.booking_id,
                channel=r.channel,
                scheduled_for=r.scheduled_for,
                starts_at=r.starts_at,
            )
            for r in due[:limit]
        ]

    async def mark_queued(self, jobs: Mapping[UUID, UUID], *, lease_expires_at: datetime) -> None:
        for reminder_id, job_id in jobs.items():
            row = self.state.reminders.get(reminder_id)
            if row is not None:
                row.status, row.job_id = Status.QUEUED, job_id
                row.lease_expires_at, row.updated_at = lease_expires_at, self.now

    async def cancel_stale(self, ids: Sequence[UUID]) -> None:
        for reminder_id in ids:
            if (row := self.state.reminders.get(reminder_id)) is not None:
                self._cancel(row, TOO_LATE)

    # --- delivering ----------------------------------------------------------------------

    async def take_leases(
        self, jobs: Sequence[Job], *, now: datetime, lease: timedelta
    ) -> list[Lease]:
        leases = []
        for job in sorted(jobs, key=lambda j: j.reminder_id):
            row = self.state.reminders.get(job.reminder_id)
            if (
                row is None
                or row.status != Status.QUEUED
                or row.job_id != job.job_id
                or row.scheduled_for != job.scheduled_for
            ):
                continue
            row.job_id, row.attempts = None, row.attempts + 1
            row.lease_expires_at, row.updated_at = max(now, row.due_at) + lease, self.now
            leases.append(
                Lease(
                    reminder=row.reminder(),
                    attempt=row.attempts,
                    expires_at=row.lease_expires_at,
                    not_before=row.due_at,
                )
            )
        return leases

    def _held(self, leases: Sequence[Lease]) -> Iterator[tuple[Lease, ReminderRow]]:
        """The leases still current, with their rows (see ``_HELD`` in the SQL store)."""
        for lease in sorted(leases, key=lambda lease: lease.reminder.id):
            row = self.state.reminders.get(lease.reminder.id)
            if (
                row is not None
                and row.status == Status.QUEUED
                and row.job_id is None
                and row.attempts == lease.attempt
                and row.scheduled_for == lease.reminder.scheduled_for
            ):
                yield lease, row

    async def still_held(self, leases: Sequence[Lease]) -> set[UUID]:
        return {row.id for _, row in self._held(leases)}

    async def release(self, leases: Sequence[Lease]) -> None:
        for _, row in list(self._held(leases)):
            row.status, row.lease_expires_at = Status.PENDING, None
            row.attempts, row.updated_at = row.attempts - 1, self.now
            row.check()

    async def record_sent(self, sent: Sequence[Sent]) -> list[Delivered]:
        at = {s.lease: s.sent_at for s in sent}
        delivered = []
        for lease, row in list(self._held(list(at))):
            row.status, row.sent_at = Status.SENT, at[lease]
            row.message_id, row.last_error = lease.reminder.message_id, None
            row.lease_expires_at, row.updated_at = None, self.now
            row.check()
            delivered.append(
                Delivered(
                    id=row.id,
                    booking_id=row.booking_id,
                    channel=row.channel,
                    scheduled_for=row.scheduled_for,
                    sent_at=at[lease],
                    message_id=row.message_id,
                )
            )
        return delivered

    async def record_failures(self, failures: Sequence[Failure]) -> list[Undelivered]:
        of = {f.lease: f for f in failures}
        undelivered = []
        for lease, row in list(self._held(list(of))):
            failure = of[lease]
            row.status = Status.PENDING if failure.retry_at else Status.FAILED
            row.due_at = failure.retry_at or row.due_at
            row.last_error, row.lease_expires_at = failure.error[:2000], None
            row.updated_at = self.now
            undelivered.append(
                Undelivered(
                    id=row.id,
                    booking_id=row.booking_id,
                    channel=row.channel,
                    status=row.status,
                    attempts=row.attempts,
                    last_error=row.last_error,
                )
            )
        return undelivered

    # --- reads ---------------------------------------------------------------------------

    async def reminders_of(self, booking_id: UUID) -> list[StoredReminder]:
        rows = sorted(
            (r for r in self.state.reminders.values() if r.booking_id == booking_id),
            key=lambda r: (r.scheduled_for, r.created_at, r.id),
        )
        return [
            StoredReminder(
                id=r.id,
                channel=r.channel,
                status=r.status,
                scheduled_for=r.scheduled_for,
                due_at=r.due_at,
                attempts=r.attempts,
                last_error=r.last_error,
                sent_at=r.sent_at,
                message_id=r.message_id,
                contact_email=r.contact_email,
                contact_phone=r.contact_phone,
                starts_at=r.starts_at,
                room_name=r.room_name,
                room_time_zone=r.room_time_zone,
                created_at=r.created_at,
                updated_at=r.updated_at,
            )
            for r in rows
        ]
