"""rooms, slots and bookings

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 02:58:23.009709
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
    sa.Column('time_zone', sa.String(length=64), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('active_as_of', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rooms'))
    )
    op.create_table('slots',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('room_id', sa.Uuid(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('price', sa.Numeric(precision=19, scale=4), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('max_bookings', sa.Integer(), nullable=False),
    sa.Column('booked_count', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("status IN ('open', 'blocked')", name=op.f('ck_slots_status_known')),
    sa.CheckConstraint('booked_count <= max_bookings', name=op.f('ck_slots_within_capacity')),
    sa.CheckConstraint('booked_count >= 0', name=op.f('ck_slots_booked_count_not_negative')),
    sa.CheckConstraint('ends_at > starts_at', name=op.f('ck_slots_ends_after_start')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_slots'))
    )
    op.create_index('ix_slots_room_id_starts_at', 'slots', ['room_id', 'starts_at'], unique=False)
    op.create_table('bookings',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.String(length=255), nullable=False),
    sa.Column('room_id', sa.Uuid(), nullable=False),
    sa.Column('slot_id', sa.Uuid(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('booking_type', sa.String(length=32), nullable=False),
    sa.Column('price', sa.Numeric(precision=19, scale=4), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('payment_status', sa.String(length=16), nullable=False),
    sa.Column('payment_id', sa.String(length=255), nullable=True),
    sa.Column('refund_amount', sa.Numeric(precision=19, scale=4), nullable=True),
    sa.Column('notes', sa.Text(), server_default='', nullable=False),
    sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('contact_email', sa.String(length=320), nullable=False),
    sa.Column('contact_phone', sa.String(length=16), nullable=True),
    sa.Column('hold_expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancellation_reason', sa.Text(), nullable=True),
    sa.Column('cancelled_by', sa.String(length=16), nullable=True),
    sa.Column('idempotency_key', sa.String(length=255), nullable=True),
    sa.Column('request_fingerprint', sa.String(length=64), nullable=True),
    sa.CheckConstraint("payment_status IN ('pending', 'paid', 'refunded')", name=op.f('ck_bookings_payment_status_known')),
    sa.CheckConstraint("status IN ('pending', 'confirmed', 'cancelled', 'completed', 'no_show', 'expired')", name=op.f('ck_bookings_status_known')),
    sa.CheckConstraint('price >= 0', name=op.f('ck_bookings_price_not_negative')),
    sa.CheckConstraint('refund_amount IS NULL OR refund_amount >= 0', name=op.f('ck_bookings_refund_not_negative')),
    sa.ForeignKeyConstraint(['slot_id'], ['slots.id'], name=op.f('fk_bookings_slot_id_slots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bookings'))
    )
    op.create_index('ix_bookings_pending_hold_expires_at', 'bookings', ['hold_expires_at'], unique=False, postgresql_where=sa.text("status = 'pending'"))
    op.create_index('ix_bookings_room_id_starts_at', 'bookings', ['room_id', 'starts_at'], unique=False)
    op.create_index('ix_bookings_user_id_created_at', 'bookings', ['user_id', 'created_at'], unique=False)
    op.create_index('uq_bookings_live_user_slot', 'bookings', ['user_id', 'slot_id'], unique=True, postgresql_where=sa.text("status IN ('pending', 'confirmed')"))
    op.create_index('uq_bookings_user_id_idempotency_key', 'bookings', ['user_id', 'idempotency_key'], unique=True, postgresql_where=sa.text('idempotency_key IS NOT NULL'))


    # The state machine of booking.domain, enforced for every writer. A snapshot: a later
    # change to the state machine comes with its own migration.
    op.execute(
        """
        CREATE FUNCTION bookings_check_transition() RETURNS trigger AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                IF NEW.status <> 'pending' THEN
                    RAISE EXCEPTION 'a booking starts pending, not %', NEW.status
                        USING ERRCODE = 'check_violation';
                END IF;
            ELSIF NEW.status IS DISTINCT FROM OLD.status
                  AND (OLD.status, NEW.status) NOT IN (
                      ('pending', 'confirmed'), ('pending', 'cancelled'),
                      ('pending', 'expired'), ('confirmed', 'cancelled'),
                      ('confirmed', 'completed'), ('confirmed', 'no_show')) THEN
                RAISE EXCEPTION 'a booking cannot go from % to %', OLD.status, NEW.status
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NEW;
        END
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        "CREATE TRIGGER bookings_check_transition BEFORE INSERT OR UPDATE OF status ON bookings "
        "FOR EACH ROW EXECUTE FUNCTION bookings_check_transition()"
    )

def downgrade() -> None:
    op.execute("DROP TRIGGER bookings_check_transition ON bookings")
    op.execute("DROP FUNCTION bookings_check_transition()")
    op.drop_index('uq_bookings_user_id_idempotency_key', table_name='bookings', postgresql_where=sa.text('idempotency_key IS NOT NULL'))
    op.drop_index('uq_bookings_live_user_slot', table_name='bookings', postgresql_where=sa.text("status IN ('pending', 'confirmed')"))
    op.drop_index('ix_bookings_user_id_created_at', table_name='bookings')
    op.drop_index('ix_bookings_room_id_starts_at', table_name='bookings')
    op.drop_index('ix_bookings_pending_hold_expires_at', table_name='bookings', postgresql_where=sa.text("status = 'pending'"))
    op.drop_table('bookings')
    op.drop_index('ix_slots_room_id_starts_at', table_name='slots')
    op.drop_table('slots')
    op.drop_table('rooms')
