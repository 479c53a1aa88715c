"""rooms, schedules, timeslots and slot holds

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 02:43:47.025954
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('rooms',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), server_default='', nullable=False),
    sa.Column('capacity', sa.Integer(), nullable=False),
    sa.Column('room_type', sa.String(length=32), nullable=False),
    sa.Column('hourly_rate', sa.Numeric(precision=19, scale=4), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('time_zone', sa.String(length=64), nullable=False),
    sa.Column('active', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("room_type IN ('office', 'consultation', 'meeting', 'treatment')", name=op.f('ck_rooms_room_type_known')),
    sa.CheckConstraint('capacity >= 1', name=op.f('ck_rooms_capacity_positive')),
    sa.CheckConstraint('hourly_rate >= 0', name=op.f('ck_rooms_hourly_rate_not_negative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rooms'))
    )
    op.create_index('ix_rooms_room_type_active', 'rooms', ['room_type', 'active'], unique=False)
    op.create_table('slot_holds',
    sa.Column('booking_id', sa.Uuid(), nullable=False),
    sa.Column('slot_id', sa.Uuid(), nullable=False),
    sa.Column('released', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('booking_id', name=op.f('pk_slot_holds'))
    )
    op.create_index('ix_slot_holds_slot_id', 'slot_holds', ['slot_id'], unique=False)
    op.create_table('schedules',
    sa.Column('room_id', sa.Uuid(), nullable=False),
    sa.Column('slot_minutes', sa.Integer(), nullable=False),
    sa.Column('buffer_minutes', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('max_bookings', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('open_weekdays', sa.ARRAY(sa.SmallInteger()), nullable=False),
    sa.Column('working_hours', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('excluded_dates', sa.ARRAY(sa.Date()), server_default=sa.text("'{}'"), nullable=False),
    sa.Column('blackouts', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('buffer_minutes >= 0', name=op.f('ck_schedules_buffer_not_negative')),
    sa.CheckConstraint('max_bookings >= 1', name=op.f('ck_schedules_max_bookings_positive')),
    sa.CheckConstraint('slot_minutes BETWEEN 1 AND 1440', name=op.f('ck_schedules_slot_minutes_range')),
    sa.ForeignKeyConstraint(['room_id'], ['rooms.id'], name=op.f('fk_schedules_room_id_rooms'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('room_id', name=op.f('pk_schedules'))
    )
    op.create_table('timeslots',
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('room_id', sa.Uuid(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('price', sa.Numeric(precision=19, scale=4), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('max_bookings', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('booked_count', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='open', nullable=False),
    sa.Column('revision', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("status IN ('open', 'blocked')", name=op.f('ck_timeslots_status_known')),
    sa.CheckConstraint('booked_count >= 0', name=op.f('ck_timeslots_booked_count_not_negative')),
    sa.CheckConstraint('ends_at > starts_at', name=op.f('ck_timeslots_ends_after_start')),
    sa.CheckConstraint('max_bookings >= 1', name=op.f('ck_timeslots_max_bookings_positive')),
    sa.CheckConstraint('price >= 0', name=op.f('ck_timeslots_price_not_negative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_timeslots'))
    )
    op.create_index('ix_timeslots_room_id_starts_at', 'timeslots', ['room_id', 'starts_at'], unique=True)

    # No two slots of a room overlap and every slot belongs to a room, whoever writes.
    #
    # After each statement that writes slots, the writers of each room it touched are
    # serialised (an advisory lock held to commit), and each written slot is compared with
    # its predecessor: the slot of the same room with the latest start before the written
    # slot ends. Given that the slots already there do not overlap, some written slot
    # overlaps its predecessor whenever any overlap exists; each comparison is one probe of
    # the (room_id, starts_at) index. Under READ COMMITTED every query of the function sees
    # all that committed before the lock was granted; under a snapshot taken earlier
    # (REPEATABLE READ, SERIALIZABLE) it might not, so such writers are refused.
    op.execute(
        """
        CREATE FUNCTION timeslots_check() RETURNS trigger AS $$
        DECLARE
            clash record;
        BEGIN
            IF current_setting('transaction_isolation') <> 'read committed' THEN
                RAISE EXCEPTION 'timeslots are written in READ COMMITTED transactions only, '
                    'not %', current_setting('transaction_isolation')
                    USING ERRCODE = 'object_not_in_prerequisite_state';
            END IF;
            PERFORM pg_advisory_xact_lock(lock_key)
            FROM (
                SELECT DISTINCT hashtextextended('timeslots:' || room_id::text, 0) AS lock_key
                FROM written
            ) AS rooms_written
            ORDER BY lock_key;
            SELECT w.room_id INTO clash
            FROM written w
            WHERE NOT EXISTS (SELECT 1 FROM rooms r WHERE r.id = w.room_id)
            LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION 'room % does not exist', clash.room_id
                    USING ERRCODE = 'foreign_key_violation',
                          CONSTRAINT = 'timeslots_room_exists';
            END IF;
            SELECT w.starts_at, w.ends_at, p.starts_at AS other_starts_at,
                   p.ends_at AS other_ends_at
            INTO clash
            FROM written w
            CROSS JOIN LATERAL (
                SELECT t.starts_at, t.ends_at
                FROM timeslots t
                WHERE t.room_id = w.room_id AND t.starts_at < w.ends_at AND t.id <> w.id
                ORDER BY t.starts_at DESC
                LIMIT 1
            ) AS p
            WHERE p.ends_at > w.starts_at
            LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION 'slot %..% overlaps slot %..% of the same room',
                    clash.starts_at, clash.ends_at, clash.other_starts_at, clash.other_ends_at
                    USING ERRCODE = 'exclusion_violation', CONSTRAINT = 'timeslots_no_overlap';
            END IF;
            RETURN NULL;
        END
        $$ LANGUAGE plpgsql
        """
    )
    for event in ("INSERT", "UPDATE"):
        op.execute(
            f"CREATE TRIGGER timeslots_check_{event.lower()} AFTER {event} ON timeslots "
            "REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION timeslots_check()"
        )
    # Rooms are deactivated, never deleted; a room that has slots cannot disappear under them.
    op.execute(
        """
        CREATE FUNCTION rooms_keep_their_slots() RETURNS trigger AS $$
        BEGIN
            IF EXISTS (SELECT 1 FROM timeslots WHERE room_id = OLD.id) THEN
                RAISE EXCEPTION 'room % has slots; deactivate it instead', OLD.id
                    USING ERRCODE = 'foreign_key_violation',
                          CONSTRAINT = 'timeslots_room_exists';
            END IF;
            RETURN OLD;
        END
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        "CREATE TRIGGER rooms_keep_their_slots BEFORE DELETE OR UPDATE OF id ON rooms "
        "FOR EACH ROW EXECUTE FUNCTION rooms_keep_their_slots()"
    )


def downgrade() -> None:
    for event in ("insert", "update"):
        op.execute(f"DROP TRIGGER timeslots_check_{event} ON timeslots")
    op.execute("DROP FUNCTION timeslots_check()")
    op.execute("DROP TRIGGER rooms_keep_their_slots ON rooms")
    op.execute("DROP FUNCTION rooms_keep_their_slots()")
    op.drop_index('ix_timeslots_room_id_starts_at', table_name='timeslots')
    op.drop_table('timeslots')
    op.drop_table('schedules')
    op.drop_index('ix_slot_holds_slot_id', table_name='slot_holds')
    op.drop_table('slot_holds')
    op.drop_index('ix_rooms_room_type_active', table_name='rooms')
    op.drop_table('rooms')
