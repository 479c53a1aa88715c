"""Tables of the timeslots service: its own ``MetaData``, so Alembic sees nothing else.

Core tables rather than ORM classes: slot generation, search and the availability counts
are set-based statements, and the rows never need an identity map.

The database enforces what must never be wrong, whoever writes:

* no two slots of a room overlap, and every slot belongs to a room: a statement-level trigger
  (migration 0002, ``timeslots_check``) serialises the writers of each room with an advisory
  lock and checks each written slot against its predecessor by start through the unique
  ``(room_id, starts_at)`` index. It costs a fraction of a GiST exclusion constraint (the
  benchmark in ``bench/`` measured both) and refuses writers outside READ COMMITTED, under
  which its check could miss a concurrent writer's rows;
* a slot ends after it starts, holds at least one booking, never counts below zero bookings;
* a slot is ``open`` or ``blocked``; a room has one of the four types and at least one seat;
* a room's ``version`` grows with every change of its row (a trigger, migration 0004), so the
  ``RoomRulesSet`` written when ``published_rules`` changes carries a version of its own;
* a booking, or a waitlist offer, holds at most one place (``slot_holds`` keyed by holder id).
"""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from booking_contracts.catalogue import RoomType, SlotStatus
from platform_runtime.db import MONEY, one_of, service_metadata, timestamp_column
from platform_runtime.inbox import inbox_table
from platform_runtime.outbox import outbox_table

metadata = service_metadata()
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)


rooms = Table(
    "rooms",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("capacity", Integer, nullable=False),
    Column("room_type", String(32), nullable=False),
    Column("hourly_rate", MONEY, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("time_zone", String(64), nullable=False),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column("attributes", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("rules", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("published_rules", JSONB, nullable=True),
    Column("version", Integer, nullable=False, server_default=text("1")),
    timestamp_column("created_at"),
    timestamp_column("updated_at"),
    CheckConstraint("capacity >= 1", name="capacity_positive"),
    CheckConstraint("hourly_rate >= 0", name="hourly_rate_not_negative"),
    CheckConstraint(one_of("room_type", tuple(RoomType)), name="room_type_known"),
    Index("ix_rooms_room_type_active", "room_type", "active"),
)

schedules = Table(
    "schedules",
    metadata,
    Column("room_id", Uuid, ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True),
    Column("slot_minutes", Integer, nullable=False),
    Column("buffer_minutes", Integer, nullable=False, server_default=text("0")),
    Column("max_bookings", Integer, nullable=False, server_default=text("1")),
    Column("open_weekdays", ARRAY(SmallInteger), nullable=False),
    Column("working_hours", JSONB, nullable=False),
    Column("excluded_dates", ARRAY(Date), nullable=False, server_default=text("'{}'")),
    Column("blackouts", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    timestamp_column("updated_at"),
    CheckConstraint("slot_minutes BETWEEN 1 AND 1440", name="slot_minutes_range"),
    CheckConstraint("buffer_minutes >= 0", name="buffer_not_negative"),
    CheckConstraint("max_bookings >= 1", name="max_bookings_positive"),
)

timeslots = Table(
    "timeslots",
    metadata,
    Column("id", Uuid, primary_key=True, server_default=func.gen_random_uuid()),
    Column("room_id", Uuid, nullable=False),  # a room of ``rooms``: checked by the trigger
    Column("starts_at", DateTime(timezone=True), nullable=False),
    Column("ends_at", DateTime(timezone=True), nullable=False),
    Column("price", MONEY, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("max_bookings", Integer, nullable=False, server_default=text("1")),
    Column("booked_count", Integer, nullable=False, server_default=text("0")),
    Column("status", String(16), nullable=False, server_default="open"),
    Column("revision", Integer, nullable=False, server_default=text("1")),
    timestamp_column("created_at"),
    timestamp_column("updated_at"),
    CheckConstraint("ends_at > starts_at", name="ends_after_start"),
    CheckConstraint("price >= 0", name="price_not_negative"),
    CheckConstraint("max_bookings >= 1", name="max_bookings_positive"),
    CheckConstraint("booked_count >= 0", name="booked_count_not_negative"),
    CheckConstraint(one_of("status", tuple(SlotStatus)), name="status_known"),
    Index("ix_timeslots_room_id_starts_at", "room_id", "starts_at", unique=True),
)

slot_holds = Table(
    "slot_holds",
    metadata,
    Column("holder_id", Uuid, primary_key=True),
    Column("slot_id", Uuid, nullable=False),
    Column("released", Boolean, nullable=False),
    timestamp_column("updated_at"),
    Index("ix_slot_holds_slot_id", "slot_id"),
)
"""Which holder holds a place in which slot, as learnt from booking events: a booking (its
id), or a waitlist offer (its entry's id) while the booking service holds a freed place for
the waiter, so the search does not show that place as free.

``timeslots.booked_count`` is the number of unreleased holds of the slot. Keeping the holds
(not just a counter) makes the count exact whatever the order and number of deliveries: a
release seen before its creation leaves a released row, so the late creation counts nothing.
"""
