"""Tables of the reminders service: its own ``MetaData``, so Alembic sees nothing else.

The database enforces what must never be wrong, whoever writes:

* at most one *live* (``pending`` or ``queued``) reminder per booking and channel (a partial
  unique index): scheduling the same booking twice adds nothing;
* statuses and channels are within their domains, attempts never negative, a sent reminder
  has its send time and Message-ID.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    Uuid,
    text,
)
from sqlalchemy.orm import DeclarativeBase

from platform_runtime.db import one_of, service_metadata, sql_literal, timestamp_column
from platform_runtime.inbox import inbox_table
from platform_runtime.outbox import outbox_table
from reminders.domain import LIVE, Channel, Status

metadata = service_metadata()
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)


class Base(DeclarativeBase):
    metadata = metadata


LIVE_CONDITION = one_of("status", LIVE)


reminders = Table(
    "reminders",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("booking_id", Uuid, nullable=False),
    Column("user_id", String(255), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("scheduled_for", DateTime(timezone=True), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text, nullable=True),
    Column("job_id", Uuid, nullable=True),
    Column("lease_expires_at", DateTime(timezone=True), nullable=True),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    Column("message_id", String(255), nullable=True),
    Column("contact_email", String(320), nullable=False),
    Column("contact_phone", String(16), nullable=True),
    Column("starts_at", DateTime(timezone=True), nullable=False),
    Column("ends_at", DateTime(timezone=True), nullable=False),
    Column("room_name", String(200), nullable=False),
    Column("room_time_zone", String(64), nullable=False),
    Column("slot_id", Uuid, nullable=True),
    Column("offer_expires_at", DateTime(timezone=True), nullable=True),
    timestamp_column("created_at"),
    timestamp_column("updated_at"),
    CheckConstraint(one_of("kind", tuple(Channel)), name="kind_known"),
    CheckConstraint(one_of("status", tuple(Status)), name="status_known"),
    CheckConstraint("attempts >= 0", name="attempts_not_negative"),
    CheckConstraint("ends_at > starts_at", name="ends_after_start"),
    CheckConstraint(
        f"status <> {sql_literal(Status.SENT)} OR (sent_at IS NOT NULL AND message_id IS NOT NULL)",
        name="sent_has_time_and_message_id",
    ),
    CheckConstraint(
        f"kind <> {sql_literal(Channel.SMS)} OR contact_phone IS NOT NULL", name="sms_has_phone"
    ),
    CheckConstraint(
        f"(kind = {sql_literal(Channel.WAITLIST_OFFER)}) "
        "= (slot_id IS NOT NULL AND offer_expires_at IS NOT NULL)",
        name="offer_has_slot_and_end",
    ),
    Index(
        "uq_reminders_live_booking_id_kind",
        "booking_id",
        "kind",
        unique=True,
        postgresql_where=text(LIVE_CONDITION),
    ),
    Index("ix_reminders_booking_id", "booking_id"),
    Index(
        "ix_reminders_pending_due_at",
        "due_at",
        postgresql_where=text(f"status = {sql_literal(Status.PENDING)}"),
    ),
    Index(
        "ix_reminders_queued_lease_expires_at",
        "lease_expires_at",
        postgresql_where=text(f"status = {sql_literal(Status.QUEUED)}"),
    ),
)
"""One reminder of one booking on one channel, or the email of one waitlist offer
(``waitlist_offer``: ``booking_id`` is then the waitlist entry's id, with the offer's slot and
end; migration 0005).

``scheduled_for`` is the nominal time (start minus the channel's offset); ``due_at`` the
time of the next attempt (``scheduled_for`` at first, later after a backoff). A ``queued``
reminder has a job on ``reminders.jobs`` (``job_id``: its event id) and
``lease_expires_at``: when the job, or the worker sending it, counts as lost and the
dispatcher hands it out again.
"""

booking_states = Table(
    "booking_states",
    metadata,
    Column("booking_id", Uuid, primary_key=True),
    Column("final", Boolean, nullable=False),
    Column("as_of", DateTime(timezone=True), nullable=False),
    Column("version", Integer, nullable=False, server_default=text("0")),
    Column("user_id", String(255), nullable=True),
    Column("contact_email", String(320), nullable=True),
    Column("contact_phone", String(16), nullable=True),
    Column("starts_at", DateTime(timezone=True), nullable=True),
    Column("ends_at", DateTime(timezone=True), nullable=True),
    Column("room_name", String(200), nullable=True),
    Column("room_time_zone", String(64), nullable=True),
    timestamp_column("updated_at"),
    CheckConstraint(
        "final OR (starts_at IS NOT NULL AND contact_email IS NOT NULL)",
        name="facts_known_unless_final",
    ),
)
"""What this service knows of each booking: its latest facts and whether it is over.

``final`` (cancelled, completed, no-show, expired) is never undone, so a cancellation seen
before the confirmation, or a late duplicate confirmation, schedules nothing. ``version``
(the booking's version in that event; 0: an event written before versions existed) and
``as_of`` (its envelope time) are the order key of the event that set the facts, compared as
the pair ``(version, as_of)`` (see :mod:`reminders.store`): an older reschedule arriving late
changes nothing.
"""
