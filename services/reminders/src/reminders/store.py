"""SQL of the reminders service: the statements, by section, and :class:`SqlStore`, which
runs them in the caller's transaction (the store the use cases take; its twin held in the
process is :class:`reminders.memory.MemoryStore`)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    DateTime,
    Integer,
    Interval,
    Row,
    String,
    Text,
    Uuid,
    and_,
    bindparam,
    case,
    func,
    literal,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert

from booking_contracts.catalogue import Contact
from platform_runtime.db import sql_literal, status_in, status_is
from platform_runtime.transactions import SessionStore
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
from reminders.models import LIVE_CONDITION, booking_states, reminders

# --- bookings --------------------------------------------------------------------------
#
# The order of a booking's events. Each event has an order key ``(version, as_of)``: the
# booking's version after the change it reports (1 when made, higher after every change,
# counted by the booking service's database; 0 for an event written before versions
# existed) and its envelope time (written by the clock of the booking replica that wrote
# it), compared as a pair, the time counting only between unversioned events:
#
# * a versioned event is newer than any unversioned one, whatever their times;
# * between versioned events only the version counts: a replica whose clock is behind, or a
#   reschedule replayed late, cannot make an older change win; two events of the same version
#   report the same change, so the second is not newer and changes nothing;
# * two unversioned events fall back to their times (the behaviour before versions existed,
#   only for events written then).
#
# ``booking_states`` keeps the key of the event that set a booking's facts (``version`` 0:
# an unversioned event, or a row written before versions existed).


def booking_facts_of(row: Row[Any]) -> BookingFacts:
    v = row._mapping
    return BookingFacts(
        booking_id=v["booking_id"],
        user_id=v["user_id"],
        contact_email=v["contact_email"],
        contact_phone=v["contact_phone"],
        starts_at=v["starts_at"],
        ends_at=v["ends_at"],
        room_name=v["room_name"],
        room_time_zone=v["room_time_zone"],
    )


_REMEMBER = text(
    """
    INSERT INTO booking_states AS b
        (booking_id, final, version, as_of, user_id, contact_email, contact_phone, starts_at,
         ends_at, room_name, room_time_zone)
    SELECT v.booking_id, false, v.version, v.as_of, v.user_id, v.contact_email,
        v.contact_phone, v.starts_at, v.ends_at, v.room_name, v.room_time_zone
    FROM unnest(:booking_ids, :versions, :as_ofs, :user_ids, :emails, :phones, :starts, :ends,
        :rooms, :zones)
        AS v(booking_id, version, as_of, user_id, contact_email, contact_phone, starts_at,
             ends_at, room_name, room_time_zone)
    ON CONFLICT (booking_id) DO NOTHING
    RETURNING b.booking_id
    """
).bindparams(
    bindparam("booking_ids", type_=ARRAY(Uuid)),
    bindparam("versions", type_=ARRAY(Integer)),
    bindparam("as_ofs", type_=ARRAY(DateTime(timezone=True))),
    bindparam("user_ids", type_=ARRAY(String)),
    bindparam("emails", type_=ARRAY(String)),
    bindparam("phones", type_=ARRAY(String)),
    bindparam("starts", type_=ARRAY(DateTime(timezone=True))),
    bindparam("ends", type_=ARRAY(DateTime(timezone=True))),
    bindparam("rooms", type_=ARRAY(String)),
    bindparam("zones", type_=ARRAY(String)),
)


def _older_than(*, version: int, as_of: datetime) -> ColumnElement[bool]:
    """The rows of ``booking_states`` whose order key is below the event's
    ``(version, as_of)``: for a versioned event, a lower version (an unversioned row's is 0);
    for an unversioned one, an unversioned row of an earlier time."""
    b = booking_states
    if version:
        return b.c.version < version
    return tuple_(b.c.version, b.c.as_of) < tuple_(
        literal(0, Integer), literal(as_of, DateTime(timezone=True))
    )


# --- scheduling ------------------------------------------------------------------------


def _rows(facts: BookingFacts, planned: Mapping[Channel, datetime]) -> list[dict[str, Any]]:
    return [
        {
            "id": uuid.uuid4(),
            "booking_id": facts.booking_id,
            "user_id": facts.user_id,
            "kind": channel.value,
            "scheduled_for": at,
            "due_at": at,
            "status": Status.PENDING.value,
            "contact_email": facts.contact_email,
            "contact_phone": facts.contact_phone,
            "starts_at": facts.starts_at,
            "ends_at": facts.ends_at,
            "room_name": facts.room_name,
            "room_time_zone": facts.room_time_zone,
        }
        for channel, at in sorted(planned.items())
    ]


_ADD_REMINDERS = text(
    f"""
    INSERT INTO reminders
        (id, booking_id, user_id, kind, scheduled_for, due_at, status, contact_email,
         contact_phone, starts_at, ends_at, room_name, room_time_zone)
    SELECT v.id, v.booking_id, v.user_id, v.kind, v.scheduled_for, v.scheduled_for,
        '{Status.PENDING.value}', v.contact_email, v.contact_phone, v.starts_at, v.ends_at,
        v.room_name, v.room_time_zone
    FROM unnest(:ids, :booking_ids, :user_ids, :kinds, :scheduled, :emails, :phones, :starts,
        :ends, :rooms, :zones)
        AS v(id, booking_id, user_id, kind, scheduled_for, contact_email, contact_phone,
             starts_at, ends_at, room_name, room_time_zone)
    ON CONFLICT (booking_id, kind) WHERE {LIVE_CONDITION} DO NOTHING
    """  # noqa: S608 (constants)
).bindparams(
    bindparam("ids", type_=ARRAY(Uuid)),
    bindparam("booking_ids", type_=ARRAY(Uuid)),
    bindparam("user_ids", type_=ARRAY(String)),
    bindparam("kinds", type_=ARRAY(String)),
    bindparam("scheduled", type_=ARRAY(DateTime(timezone=True))),
    bindparam("emails", type_=ARRAY(String)),
    bindparam("phones", type_=ARRAY(String)),
    bindparam("starts", type_=ARRAY(DateTime(timezone=True))),
    bindparam("ends", type_=ARRAY(DateTime(timezone=True))),
    bindparam("rooms", type_=ARRAY(String)),
    bindparam("zones", type_=ARRAY(String)),
)


# --- dispatching -----------------------------------------------------------------------


_MARK_QUEUED = text(
    f"""
    UPDATE reminders AS r
    SET status = {sql_literal(Status.QUEUED)}, job_id = v.job_id,
        lease_expires_at = :lease_expires_at, updated_at = now()
    FROM unnest(:ids, :job_ids) AS v(id, job_id)
    WHERE r.id = v.id
    """  # noqa: S608 (constants)
).bindparams(
    bindparam("ids", type_=ARRAY(Uuid)),
    bindparam("job_ids", type_=ARRAY(Uuid)),
    bindparam("lease_expires_at", type_=DateTime(timezone=True)),
)


# --- delivering ------------------------------------------------------------------------


_TAKE_LEASES = text(
    f"""
    UPDATE reminders AS r
    SET job_id = NULL, lease_expires_at = greatest(:now, r.due_at) + :lease,
        attempts = r.attempts + 1, updated_at = now()
    FROM unnest(:ids, :job_ids, :scheduled) AS v(id, job_id, scheduled_for)
    WHERE r.id = v.id AND r.status = {sql_literal(Status.QUEUED)} AND r.job_id = v.job_id
      AND r.scheduled_for = v.scheduled_for
    RETURNING r.*
    """  # noqa: S608 (constants)
).bindparams(
    bindparam("ids", type_=ARRAY(Uuid)),
    bindparam("job_ids", type_=ARRAY(Uuid)),
    bindparam("scheduled", type_=ARRAY(DateTime(timezone=True))),
    bindparam("now", type_=DateTime(timezone=True)),
    bindparam("lease", type_=Interval),
)


_HELD_ROWS = "unnest(:ids, :attempts, :scheduled) AS v(id, attempt, scheduled_for)"
_HELD = (
    f"r.id = v.id AND r.status = {sql_literal(Status.QUEUED)} AND r.job_id IS NULL"
    " AND r.attempts = v.attempt AND r.scheduled_for = v.scheduled_for"
)
"""Rows ``r`` whose current lease is ``v`` (reminder id, attempt and scheduled time): a
reminder cancelled or moved since, or whose lease ran out and was handed out again, is not."""

_HELD_PARAMS = (
    bindparam("ids", type_=ARRAY(Uuid)),
    bindparam("attempts", type_=ARRAY(Integer)),
    bindparam("scheduled", type_=ARRAY(DateTime(timezone=True))),
)


def _lease_params(leases: Sequence[Lease]) -> dict[str, Any]:
    return {
        "ids": [lease.reminder.id for lease in leases],
        "attempts": [lease.attempt for lease in leases],
        "scheduled": [lease.reminder.scheduled_for for lease in leases],
    }


_STILL_HELD = text(
    f"SELECT r.id FROM reminders AS r, {_HELD_ROWS} WHERE {_HELD}"  # noqa: S608 (constants)
).bindparams(*_HELD_PARAMS)


_RELEASE = text(
    f"""
    UPDATE reminders AS r
    SET status = {sql_literal(Status.PENDING)}, lease_expires_at = NULL,
        attempts = r.attempts - 1, updated_at = now()
    FROM {_HELD_ROWS}
    WHERE {_HELD}
    """  # noqa: S608 (constants)
).bindparams(*_HELD_PARAMS)


def reminder_of(row: Row[Any]) -> Reminder:
    v = row._mapping
    return Reminder(
        id=v["id"],
        booking_id=v["booking_id"],
        channel=Channel(v["kind"]),
        scheduled_for=v["scheduled_for"],
        contact_email=v["contact_email"],
        contact_phone=v["contact_phone"],
        starts_at=v["starts_at"],
        ends_at=v["ends_at"],
        room_name=v["room_name"],
        room_time_zone=v["room_time_zone"],
        slot_id=v["slot_id"],
        offer_expires_at=v["offer_expires_at"],
    )


_RECORD_SENT = text(
    f"""
    UPDATE reminders AS r
    SET status = {sql_literal(Status.SENT)}, sent_at = v.sent_at, message_id = v.message_id,
        last_error = NULL, lease_expires_at = NULL, updated_at = now()
    FROM unnest(:ids, :attempts, :scheduled, :sent_ats, :message_ids)
        AS v(id, attempt, scheduled_for, sent_at, message_id)
    WHERE {_HELD}
    RETURNING r.id, r.booking_id, r.kind, r.sent_at, r.message_id, r.scheduled_for
    """  # noqa: S608 (constants)
).bindparams(
    *_HELD_PARAMS,
    bindparam("sent_ats", type_=ARRAY(DateTime(timezone=True))),
    bindparam("message_ids", type_=ARRAY(String)),
)


_RECORD_FAILED = text(
    f"""
    UPDATE reminders AS r
    SET status = v.status, due_at = coalesce(v.due_at, r.due_at), last_error = v.error,
        lease_expires_at = NULL, updated_at = now()
    FROM unnest(:ids, :attempts, :scheduled, :statuses, :due_ats, :errors)
        AS v(id, attempt, scheduled_for, status, due_at, error)
    WHERE {_HELD}
    RETURNING r.id, r.booking_id, r.kind, r.status, r.attempts, r.last_error
    """  # noqa: S608 (constants)
).bindparams(
    *_HELD_PARAMS,
    bindparam("statuses", type_=ARRAY(String)),
    bindparam("due_ats", type_=ARRAY(DateTime(timezone=True))),
    bindparam("errors", type_=ARRAY(Text)),
)


# --- reads -----------------------------------------------------------------------------


class SqlStore(SessionStore):
    """The reminders service's state in its PostgreSQL database (:class:`reminders.handlers.Store`):
    every method runs in the session's transaction."""

    async def remember_bookings(self, confirmations: Sequence[Confirmation]) -> set[UUID]:
        """Record newly confirmed bookings in one statement, each with its confirmation's order
        key ``(version, as_of)``; returns the ids of those that were not known yet (a booking
        known already, by a duplicate confirmation or because it ended, is left as it is,
        whatever the order: a confirmation is a booking's first event). The booking ids must be
        distinct.

        Order rule: an event's key is ``(version or 0, envelope time)``, compared as a pair, the
        time counting only between unversioned events: a versioned event is newer than any
        unversioned one; between versioned events only the version counts; two unversioned
        events (written before versions existed) fall back to their times."""
        ordered = sorted(confirmations, key=lambda c: c.facts.booking_id)  # a stable lock order
        result = await self.session.execute(
            _REMEMBER,
            {
                "booking_ids": [c.facts.booking_id for c in ordered],
                "versions": [c.version for c in ordered],
                "as_ofs": [c.as_of for c in ordered],
                "user_ids": [c.facts.user_id for c in ordered],
                "emails": [c.facts.contact_email for c in ordered],
                "phones": [c.facts.contact_phone for c in ordered],
                "starts": [c.facts.starts_at for c in ordered],
                "ends": [c.facts.ends_at for c in ordered],
                "rooms": [c.facts.room_name for c in ordered],
                "zones": [c.facts.room_time_zone for c in ordered],
            },
        )
        return {row.booking_id for row in result}

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
        """Apply a reschedule newer than what is known and store its order key; None for an
        unknown or ended booking and for a reschedule older than (or the same as) the facts
        already known.

        Order rule: an event's key is ``(version or 0, envelope time)``, compared as a pair, the
        time counting only between unversioned events: a versioned event is newer than any
        unversioned one; between versioned events only the version counts (a replica's clock
        decides nothing; the same version is the same change, not a newer one); two unversioned
        events (written before versions existed) fall back to their times."""
        b = booking_states
        statement = (
            update(b)
            .where(
                b.c.booking_id == booking_id,
                b.c.final.is_(False),
                _older_than(version=version, as_of=as_of),
            )
            .values(
                starts_at=starts_at,
                ends_at=ends_at,
                room_time_zone=room_time_zone,
                version=version,
                as_of=as_of,
                updated_at=func.now(),
            )
            .returning(*b.c)
        )
        row = (await self.session.execute(statement)).first()
        return booking_facts_of(row) if row is not None else None

    async def end_booking(self, booking_id: UUID, *, version: int, as_of: datetime) -> None:
        """Mark the booking over for good (known or not yet), whatever the order: an ended
        booking never comes back, so a confirmation or reschedule read after the end changes
        nothing, even one with a higher order key. The row keeps the greatest order key
        ``(version, as_of)`` it has seen, compared as a pair (an event written before versions
        existed has version 0, below every versioned one)."""
        b = booking_states
        statement = pg_insert(b).values(
            booking_id=booking_id, final=True, version=version, as_of=as_of
        )
        excluded = statement.excluded
        newer = tuple_(b.c.version, b.c.as_of) < tuple_(excluded.version, excluded.as_of)
        statement = statement.on_conflict_do_update(
            index_elements=[b.c.booking_id],
            set_={
                "final": True,
                "version": case((newer, excluded.version), else_=b.c.version),
                "as_of": case((newer, excluded.as_of), else_=b.c.as_of),
                "updated_at": func.now(),
            },
        )
        await self.session.execute(statement)

    async def booking_known(self, booking_id: UUID) -> bool:
        statement = select(booking_states.c.booking_id).where(
            booking_states.c.booking_id == booking_id
        )
        return (await self.session.execute(statement)).first() is not None

    async def add_reminders(
        self, plans: Sequence[tuple[BookingFacts, Mapping[Channel, datetime]]]
    ) -> int:
        """Insert the planned reminders of many bookings in one statement; a channel of a
        booking with a live reminder already keeps it. Returns how many were inserted."""
        rows = [
            (facts, channel, at)
            for facts, planned in sorted(plans, key=lambda plan: plan[0].booking_id)
            for channel, at in sorted(planned.items())
        ]
        if not rows:
            return 0
        result = await self.session.execute(
            _ADD_REMINDERS,
            {
                "ids": [uuid.uuid4() for _ in rows],
                "booking_ids": [facts.booking_id for facts, _, _ in rows],
                "user_ids": [facts.user_id for facts, _, _ in rows],
                "kinds": [channel.value for _, channel, _ in rows],
                "scheduled": [at for _, _, at in rows],
                "emails": [facts.contact_email for facts, _, _ in rows],
                "phones": [facts.contact_phone for facts, _, _ in rows],
                "starts": [facts.starts_at for facts, _, _ in rows],
                "ends": [facts.ends_at for facts, _, _ in rows],
                "rooms": [facts.room_name for facts, _, _ in rows],
                "zones": [facts.room_time_zone for facts, _, _ in rows],
            },
        )
        return int(getattr(result, "rowcount", 0) or 0)

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
        """The email of one waitlist offer, due at ``due_at``; an offer has one (a redelivered
        event finds it live and adds nothing)."""
        statement = (
            pg_insert(reminders)
            .values(
                id=uuid.uuid4(),
                booking_id=entry_id,
                user_id=user_id,
                kind=Channel.WAITLIST_OFFER.value,
                scheduled_for=due_at,
                due_at=due_at,
                status=Status.PENDING.value,
                contact_email=contact.email,
                contact_phone=contact.phone,
                starts_at=starts_at,
                ends_at=ends_at,
                room_name=room_name,
                room_time_zone=room_time_zone,
                slot_id=slot_id,
                offer_expires_at=offer_expires_at,
            )
            .on_conflict_do_nothing(
                index_elements=[reminders.c.booking_id, reminders.c.kind],
                index_where=text(LIVE_CONDITION),
            )
        )
        await self.session.execute(statement)

    async def replan(self, facts: BookingFacts, planned: Mapping[Channel, datetime]) -> None:
        """After a reschedule: every planned channel has one live reminder at its new time (a
        live one moves, back to ``pending``, whatever it was doing); live reminders of channels
        no longer planned (their new time has passed) are cancelled."""
        r = reminders
        if planned:
            statement = pg_insert(r).values(_rows(facts, planned))
            statement = statement.on_conflict_do_update(
                index_elements=[r.c.booking_id, r.c.kind],
                index_where=text(LIVE_CONDITION),
                set_={
                    "scheduled_for": statement.excluded.scheduled_for,
                    "due_at": statement.excluded.due_at,
                    "status": Status.PENDING.value,
                    "attempts": 0,
                    "last_error": None,
                    "job_id": None,
                    "lease_expires_at": None,
                    "starts_at": statement.excluded.starts_at,
                    "ends_at": statement.excluded.ends_at,
                    "room_time_zone": statement.excluded.room_time_zone,
                    "updated_at": func.now(),
                },
            )
            await self.session.execute(statement)
        keep = [channel.value for channel in planned]
        await self.cancel_live(
            facts.booking_id,
            except_kinds=keep,
            reason="the booking moved and this reminder's new time had passed",
        )

    async def cancel_live(
        self,
        booking_id: UUID,
        *,
        except_kinds: Sequence[str] = (),
        reason: str | None = None,
    ) -> int:
        r = reminders
        statement = (
            update(r)
            .where(
                r.c.booking_id == booking_id,
                status_in(r.c.status, LIVE),
                r.c.kind.not_in(except_kinds),
            )
            .values(
                status=Status.CANCELLED.value,
                job_id=None,
                lease_expires_at=None,
                last_error=reason,
                updated_at=func.now(),
            )
        )
        result = await self.session.execute(statement)
        return int(getattr(result, "rowcount", 0) or 0)

    async def take_due(
        self, *, now: datetime, limit: int, ahead: timedelta = timedelta(0)
    ) -> list[Due]:
        """Lock up to ``limit`` reminders to hand out: pending ones due by ``now + ahead`` and
        queued ones whose job or worker was lost (lease ran out). Rows another dispatcher holds
        are skipped, so any number of dispatchers share the work."""
        r = reminders
        statement = (
            select(r.c.id, r.c.booking_id, r.c.kind, r.c.scheduled_for, r.c.starts_at)
            .where(
                or_(
                    and_(status_is(r.c.status, Status.PENDING), r.c.due_at <= now + ahead),
                    and_(status_is(r.c.status, Status.QUEUED), r.c.lease_expires_at <= now),
                )
            )
            .order_by(r.c.due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [
            Due(
                id=row.id,
                booking_id=row.booking_id,
                channel=Channel(row.kind),
                scheduled_for=row.scheduled_for,
                starts_at=row.starts_at,
            )
            for row in await self.session.execute(statement)
        ]

    async def mark_queued(self, jobs: Mapping[UUID, UUID], *, lease_expires_at: datetime) -> None:
        """``jobs``: reminder id -> id of the job (event) that now carries it."""
        ids = sorted(jobs)
        await self.session.execute(
            _MARK_QUEUED,
            {"ids": ids, "job_ids": [jobs[i] for i in ids], "lease_expires_at": lease_expires_at},
        )

    async def cancel_stale(self, ids: Sequence[UUID]) -> None:
        """Reminders whose booking started before they could go out: too late to remind."""
        await self.session.execute(
            update(reminders)
            .where(reminders.c.id.in_(ids))
            .values(
                status=Status.CANCELLED.value,
                job_id=None,
                lease_expires_at=None,
                last_error="the booking started before the reminder could be sent",
                updated_at=func.now(),
            )
        )

    async def take_leases(
        self, jobs: Sequence[Job], *, now: datetime, lease: timedelta
    ) -> list[Lease]:
        """``take_lease`` for many jobs in one statement."""
        ordered = sorted(jobs, key=lambda j: j.reminder_id)
        result = await self.session.execute(
            _TAKE_LEASES,
            {
                "ids": [j.reminder_id for j in ordered],
                "job_ids": [j.job_id for j in ordered],
                "scheduled": [j.scheduled_for for j in ordered],
                "now": now,
                "lease": lease,
            },
        )
        return [
            Lease(
                reminder=reminder_of(row),
                attempt=row.attempts,
                expires_at=row.lease_expires_at,
                not_before=row.due_at,
            )
            for row in result
        ]

    async def still_held(self, leases: Sequence[Lease]) -> set[UUID]:
        """Of these leases, the ones still current (a reminder cancelled or moved since, or
        whose lease ran out and was handed out again, is not)."""
        result = await self.session.execute(_STILL_HELD, _lease_params(leases))
        return {row.id for row in result}

    async def release(self, leases: Sequence[Lease]) -> None:
        """Give back leases not used (a worker stopping before their time): the reminders are
        pending again, their attempt not counted, and the next dispatch hands them out."""
        ordered = sorted(leases, key=lambda lease: lease.reminder.id)
        await self.session.execute(_RELEASE, _lease_params(ordered))

    async def record_sent(self, sent: Sequence[Sent]) -> list[Delivered]:
        """Mark sent what this worker still holds (a reminder cancelled or moved meanwhile, or
        whose lease was lost, is left alone); returns the reminders marked."""
        ordered = sorted(sent, key=lambda s: s.lease.reminder.id)
        result = await self.session.execute(
            _RECORD_SENT,
            _lease_params([s.lease for s in ordered])
            | {
                "sent_ats": [s.sent_at for s in ordered],
                "message_ids": [s.lease.reminder.message_id for s in ordered],
            },
        )
        return [
            Delivered(
                id=row.id,
                booking_id=row.booking_id,
                channel=Channel(row.kind),
                scheduled_for=row.scheduled_for,
                sent_at=row.sent_at,
                message_id=row.message_id,
            )
            for row in result
        ]

    async def record_failures(self, failures: Sequence[Failure]) -> list[Undelivered]:
        """Back to ``pending`` until ``retry_at``, or ``failed``; returns the reminders changed."""
        ordered = sorted(failures, key=lambda f: f.lease.reminder.id)
        result = await self.session.execute(
            _RECORD_FAILED,
            _lease_params([f.lease for f in ordered])
            | {
                "statuses": [
                    Status.PENDING.value if f.retry_at else Status.FAILED.value for f in ordered
                ],
                "due_ats": [f.retry_at for f in ordered],
                "errors": [f.error[:2000] for f in ordered],
            },
        )
        return [
            Undelivered(
                id=row.id,
                booking_id=row.booking_id,
                channel=Channel(row.kind),
                status=Status(row.status),
                attempts=row.attempts,
                last_error=row.last_error,
            )
            for row in result
        ]

    async def reminders_of(self, booking_id: UUID) -> list[StoredReminder]:
        statement = (
            select(reminders)
            .where(reminders.c.booking_id == booking_id)
            .order_by(reminders.c.scheduled_for, reminders.c.created_at, reminders.c.id)
        )
        return [
            StoredReminder(
                id=row.id,
                channel=Channel(row.kind),
                status=Status(row.status),
                scheduled_for=row.scheduled_for,
                due_at=row.due_at,
                attempts=row.attempts,
                last_error=row.last_error,
                sent_at=row.sent_at,
                message_id=row.message_id,
                contact_email=row.contact_email,
                contact_phone=row.contact_phone,
                starts_at=row.starts_at,
                room_name=row.room_name,
                room_time_zone=row.room_time_zone,
                created_at=row.created_at,
                updated_at=row.updated_at,
            )
            for row in await self.session.execute(statement)
        ]
