"""Tables of the booking service: its own ``MetaData``, so Alembic sees nothing else.

The database enforces what must never be wrong, whoever writes:

* a slot never holds more bookings than its capacity (``booked_count <= max_bookings``; a
  booking takes its place with one conditional ``UPDATE`` of the slot row);
* a user holds at most one live booking per slot, and reuses an ``Idempotency-Key`` once;
* a user holds at most as many unpaid (pending) bookings as the writing transaction allows
  (``booking.max_unpaid_holds``, stated by ``store.insert_booking(s)``): a trigger locks the
  user's holds, counts them and refuses one more (migration 0004);
* a booking moves only along the state machine of ``domain.py`` (a trigger refuses any
  other status change, whoever issues it);
* the start a booking was paid for (``refund_basis_starts_at``, what the refund policy counts
  notice to) never changes once set (a trigger);
* a refund id is asked for once (the primary key of ``refunds``), and a refund settles only
  as ``domain.REFUND_SETTLEMENTS`` allows (a trigger);
* a payment no booking took is recorded, and its refund asked for, once (the primary key of
  ``stray_payments`` is the payment id; its refund id is unique); that refund settles only as
  ``domain.REFUND_SETTLEMENTS`` allows (a trigger, migration 0005);
* a user holds at most as many bookings counting against a room's quota in one window as it
  allows (``quota_counts``: a conditional upsert, migration 0008);
* statuses, payment statuses and amounts are within their domains.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Interval,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from booking.domain import (
    LIVE_WAITLIST,
    REFUND_SETTLEMENTS,
    TRANSITIONS,
    WAITLIST_TRANSITIONS,
    BookingStatus,
    PaymentStatus,
    RefundStatus,
    WaitlistStatus,
)
from booking_contracts.catalogue import SlotStatus
from platform_runtime.db import MONEY, one_of, service_metadata, sql_literal, timestamp_column
from platform_runtime.inbox import inbox_table
from platform_runtime.outbox import outbox_table

_RULE_MINUTES = "make_interval(mins => ((rules ->> '{rule}'::text))::integer)"
"""A rule's duration in minutes as an interval (NULL when unset), from the rules' JSON; written
as PostgreSQL prints it back, so the model and the database compare equal."""

metadata = service_metadata()
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)

rooms = Table(
    "rooms",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("time_zone", String(64), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("active_as_of", DateTime(timezone=True), nullable=False),
    Column("version", Integer, nullable=False, server_default=text("0")),
    timestamp_column("updated_at"),
    Column("room_type", String(32), nullable=False, server_default=""),
    Column("rules", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("rules_version", Integer, nullable=False, server_default=text("0")),
    Column(
        "book_notice",
        Interval,
        Computed(
            f"COALESCE({_RULE_MINUTES.format(rule='book_notice_minutes')}, '00:00:00'::interval)",
            persisted=True,
        ),
        nullable=False,
    ),
    Column(
        "horizon",
        Interval,
        Computed(_RULE_MINUTES.format(rule="horizon_minutes"), persisted=True),
        nullable=True,
    ),
)
"""The booking service's copy of the rooms, fed by ``RoomUpserted`` / ``RoomDeactivated``, and
their rules, fed by ``RoomRulesSet``.

``version`` is the room's version in the newest event applied (0: an event that had none)
and ``active_as_of`` that event's envelope time. An event is applied only when its
``(version, time)`` is above the row's: an older event arriving late (a replayed dead letter)
never undoes a newer one, and the clocks of the timeslot replicas decide nothing between
versioned events (migration 0007).
"""

slots = Table(
    "slots",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("room_id", Uuid, nullable=False),
    Column("starts_at", DateTime(timezone=True), nullable=False),
    Column("ends_at", DateTime(timezone=True), nullable=False),
    Column("price", MONEY, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("max_bookings", Integer, nullable=False),
    Column("booked_count", Integer, nullable=False, server_default=text("0")),
    Column("status", String(16), nullable=False),
    Column("revision", Integer, nullable=False),
    timestamp_column("updated_at"),
    CheckConstraint("booked_count >= 0", name="booked_count_not_negative"),
    CheckConstraint("booked_count <= max_bookings", name="within_capacity"),
    CheckConstraint("ends_at > starts_at", name="ends_after_start"),
    CheckConstraint(one_of("status", tuple(SlotStatus)), name="status_known"),
    Index("ix_slots_room_id_starts_at", "room_id", "starts_at"),
)
"""The booking service's copy of the slot inventory, fed by timeslot events.

``booked_count`` is this service's own: the places its live bookings hold.
"""

bookings = Table(
    "bookings",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", String(255), nullable=False),
    Column("room_id", Uuid, nullable=False),
    Column("slot_id", Uuid, ForeignKey("slots.id"), nullable=False),
    Column("starts_at", DateTime(timezone=True), nullable=False),
    Column("ends_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),
    Column("booking_type", String(32), nullable=False),
    Column("price", MONEY, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("payment_status", String(16), nullable=False),
    Column("payment_id", String(255), nullable=True),
    Column("refund_amount", MONEY, nullable=True),
    Column("refund_basis_starts_at", DateTime(timezone=True), nullable=True),
    Column("refund_failure_reason", Text, nullable=True),
    Column("notes", Text, nullable=False, server_default=""),
    Column("attributes", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("contact_email", String(320), nullable=False),
    Column("contact_phone", String(16), nullable=True),
    Column("hold_expires_at", DateTime(timezone=True), nullable=False),
    Column("version", Integer, nullable=False, server_default=text("1")),
    Column("reschedules", Integer, nullable=False, server_default=text("0")),
    Column("terms", JSONB, nullable=True),
    timestamp_column("created_at"),
    timestamp_column("updated_at"),
    timestamp_column("cancelled_at", nullable=True),
    Column("cancellation_reason", Text, nullable=True),
    Column("cancelled_by", String(16), nullable=True),
    Column("idempotency_key", String(255), nullable=True),
    Column("request_fingerprint", String(64), nullable=True),
    CheckConstraint(one_of("status", tuple(BookingStatus)), name="status_known"),
    CheckConstraint(one_of("payment_status", tuple(PaymentStatus)), name="payment_status_known"),
    CheckConstraint("price >= 0", name="price_not_negative"),
    CheckConstraint("refund_amount IS NULL OR refund_amount >= 0", name="refund_not_negative"),
    CheckConstraint(
        "(payment_status = 'refund_failed') = (refund_failure_reason IS NOT NULL)",
        name="refund_failure_has_reason",
    ),
    Index(
        "uq_bookings_user_id_idempotency_key",
        "user_id",
        "idempotency_key",
        unique=True,
        postgresql_where=text("idempotency_key IS NOT NULL"),
    ),
    Index(
        "uq_bookings_live_user_slot",
        "user_id",
        "slot_id",
        unique=True,
        postgresql_where=text(one_of("status", (BookingStatus.PENDING, BookingStatus.CONFIRMED))),
    ),
    Index("ix_bookings_user_id_created_at", "user_id", "created_at"),
    Index("ix_bookings_room_id_starts_at", "room_id", "starts_at"),
    Index(
        "ix_bookings_pending_hold_expires_at",
        "hold_expires_at",
        postgresql_where=text(f"status = {sql_literal(BookingStatus.PENDING)}"),
    ),
    Index(
        "ix_bookings_pending_user_id",
        "user_id",
        postgresql_where=text(f"status = {sql_literal(BookingStatus.PENDING)}"),
    ),
    Index(
        "ix_bookings_refund_failed_starts_at",
        "starts_at",
        postgresql_where=text("payment_status = 'refund_failed'"),
    ),
)
"""``refund_amount`` is what was returned or is being returned in all (the sum of the
booking's refunds); ``payment_status`` from ``refund_pending`` on and
``refund_failure_reason`` sum up its refunds too (``store.request_refund``,
``store.settle_refund``). ``refund_basis_starts_at`` is the start the booking had when it was
paid: set at confirmation, kept through reschedules."""

refunds = Table(
    "refunds",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("booking_id", Uuid, ForeignKey("bookings.id"), nullable=False),
    Column("payment_id", String(255), nullable=False),
    Column("amount", MONEY, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("reason", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("failure_reason", Text, nullable=True),
    timestamp_column("requested_at"),
    timestamp_column("settled_at", nullable=True),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint(one_of("status", tuple(RefundStatus)), name="status_known"),
    CheckConstraint(
        f"(status = {sql_literal(RefundStatus.FAILED)}) = (failure_reason IS NOT NULL)",
        name="failure_has_reason",
    ),
    Index("ix_refunds_booking_id", "booking_id"),
)
"""Every refund asked of the payment service (``RefundRequested``) and what became of it
(``RefundSucceeded`` / ``RefundFailed``). The id is the refund id of the events, derived
from what is refunded, so the same refund is never asked for twice."""

stray_payments = Table(
    "stray_payments",
    metadata,
    Column("payment_id", String(255), primary_key=True),
    Column("booking_id", Uuid, nullable=False),
    Column("amount", MONEY, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("reason", Text, nullable=False),
    Column("refund_id", Uuid, nullable=False),
    Column("refund_status", String(16), nullable=False),
    Column("failure_reason", Text, nullable=True),
    timestamp_column("received_at"),
    timestamp_column("settled_at", nullable=True),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint(one_of("refund_status", tuple(RefundStatus)), name="refund_status_known"),
    CheckConstraint(
        f"(refund_status = {sql_literal(RefundStatus.FAILED)}) = (failure_reason IS NOT NULL)",
        name="failure_has_reason",
    ),
    UniqueConstraint("refund_id"),
    Index("ix_stray_payments_booking_id", "booking_id"),
)
"""Payments no booking took (a booking that does not exist, or an amount or currency other
than the booking's price), each returned in full: one ``RefundRequested`` per payment id,
whatever redelivers it. ``booking_id`` is the one the payment named (no foreign key: it may
name no booking); the refund's outcome settles ``refund_status`` as for ``refunds``."""

quota_counts = Table(
    "quota_counts",
    metadata,
    Column("user_id", String(255), primary_key=True),
    Column("scope", String(80), primary_key=True),
    Column("window_starts_at", DateTime(timezone=True), primary_key=True),
    Column("used", Integer, nullable=False),
    CheckConstraint("used >= 0", name="used_not_negative"),
)
"""How many bookings a user holds that count against a quota: per ``scope`` (``room:<id>``
or ``room_type:<type>``) and window of the room's calendar (its first instant, UTC). A
booking counts with one conditional upsert that refuses to go past the quota's limit
(``store.count_against_quotas``): concurrent requests of one user queue on the row, so a
quota of 3 gives exactly 3 bookings however many arrive at once (migration 0008)."""

booking_quotas = Table(
    "booking_quotas",
    metadata,
    Column("booking_id", Uuid, ForeignKey("bookings.id"), primary_key=True),
    Column("scope", String(80), primary_key=True),
    Column("window_starts_at", DateTime(timezone=True), primary_key=True),
    Column("user_id", String(255), nullable=False),
)
"""Which counts each booking added to: a cancelled or expired booking gives back exactly
those, whatever the room's rules say by then (a rule change never touches bookings made
before it); a row is deleted as its count is given back, so it is given back once."""

waitlist_entries = Table(
    "waitlist_entries",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("seq", BigInteger, Identity(always=True), nullable=False, unique=True),
    Column("slot_id", Uuid, ForeignKey("slots.id"), nullable=False),
    Column("room_id", Uuid, nullable=False),
    Column("user_id", String(255), nullable=False),
    Column("contact_email", String(320), nullable=False),
    Column("contact_phone", String(16), nullable=True),
    Column("status", String(16), nullable=False),
    Column("offer_expires_at", DateTime(timezone=True), nullable=True),
    Column("booking_id", Uuid, ForeignKey("bookings.id"), nullable=True),
    timestamp_column("created_at"),
    timestamp_column("updated_at"),
    CheckConstraint(one_of("status", tuple(WaitlistStatus)), name="status_known"),
    CheckConstraint(
        f"(status = {sql_literal(WaitlistStatus.OFFERED)}) = (offer_expires_at IS NOT NULL)",
        name="offered_until",
    ),
    CheckConstraint(
        f"(status = {sql_literal(WaitlistStatus.BOOKED)}) = (booking_id IS NOT NULL)",
        name="booked_with_booking",
    ),
    Index(
        "uq_waitlist_entries_live_user_slot",
        "user_id",
        "slot_id",
        unique=True,
        postgresql_where=text(one_of("status", LIVE_WAITLIST)),
    ),
    Index(
        "ix_waitlist_entries_waiting_slot_id_seq",
        "slot_id",
        "seq",
        postgresql_where=text(f"status = {sql_literal(WaitlistStatus.WAITING)}"),
    ),
    Index(
        "ix_waitlist_entries_offered_offer_expires_at",
        "offer_expires_at",
        postgresql_where=text(f"status = {sql_literal(WaitlistStatus.OFFERED)}"),
    ),
    Index(
        "ix_waitlist_entries_live_user_id",
        "user_id",
        postgresql_where=text(one_of("status", LIVE_WAITLIST)),
    ),
)
"""Who waits for which full slot, in the order of ``seq`` (the database counts it). One live
entry (waiting or offered) per user and slot; an entry changes only as
``domain.WAITLIST_TRANSITIONS`` allows (a trigger, migration 0009). An offered entry holds a
place of its slot: the slot's ``booked_count`` counts it until the offer is taken (the
booking holds the place then), passed on, or ends."""


def allowed_status_pairs() -> list[tuple[str, str]]:
    """Every change of status the state machine allows (what the database trigger allows)."""
    return sorted(
        {
            (old.value, new.value)
            for moves in TRANSITIONS.values()
            for old, new in moves.items()
            if old is not new
        }
    )


def allowed_refund_settlements() -> list[tuple[str, str]]:
    """Every change of a refund's status ``domain.REFUND_SETTLEMENTS`` allows (what the
    database trigger on ``refunds`` allows)."""
    return sorted(
        (old.value, new.value) for old, outcomes in REFUND_SETTLEMENTS.items() for new in outcomes
    )


def allowed_waitlist_changes() -> list[tuple[str, str]]:
    """Every change of a waitlist entry's status the domain allows (what the trigger on
    ``waitlist_entries`` allows)."""
    return sorted(
        (old.value, new.value) for old, news in WAITLIST_TRANSITIONS.items() for new in news
    )
