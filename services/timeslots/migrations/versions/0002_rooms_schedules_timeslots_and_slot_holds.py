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
    # btree_gist lets the exclusion constraint compare room ids with "=" (trusted since PG 13).
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
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
    postgresql.ExcludeConstraint((sa.column('room_id'), '='), (sa.literal_column("tstzrange(starts_at, ends_at, '[)')"), '&&'), using='gist', name='ex_timeslots_no_overlap'),
    sa.CheckConstraint("status IN ('open', 'blocked')", name=op.f('ck_timeslots_status_known')),
    sa.CheckConstraint('booked_count >= 0', name=op.f('ck_timeslots_booked_count_not_negative')),
    sa.CheckConstraint('ends_at > starts_at', name=op.f('ck_timeslots_ends_after_start')),
    sa.CheckConstraint('max_bookings >= 1', name=op.f('ck_timeslots_max_bookings_positive')),
    sa.CheckConstraint('price >= 0', name=op.f('ck_timeslots_price_not_negative')),
    sa.ForeignKeyConstraint(['room_id'], ['rooms.id'], name=op.f('fk_timeslots_room_id_rooms'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_timeslots'))
    )
    op.create_index('ix_timeslots_room_id_starts_at', 'timeslots', ['room_id', 'starts_at'], unique=True)


def downgrade() -> None:
    op.drop_index('ix_timeslots_room_id_starts_at', table_name='timeslots')
    op.drop_table('timeslots')
    op.drop_table('schedules')
    op.drop_index('ix_slot_holds_slot_id', table_name='slot_holds')
    op.drop_table('slot_holds')
    op.drop_index('ix_rooms_room_type_active', table_name='rooms')
    op.drop_table('rooms')
