"""the waitlist: who waits for which full slot, in order, and the offers of freed places

``waitlist_entries`` holds one row per user in a slot's line, ordered by ``seq`` (an identity
the database counts). One live entry (waiting or offered) per user and slot (a partial unique
index); an offered entry has its offer's end, a booked one its booking (checks); an entry
changes only forward (the trigger ``waitlist_entries_check_transition``, the changes of
``domain.WAITLIST_TRANSITIONS``: an entry starts waiting).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 17:49:54.037238
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('waitlist_entries',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('seq', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('slot_id', sa.Uuid(), nullable=False),
    sa.Column('room_id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.String(length=255), nullable=False),
    sa.Column('contact_email', sa.String(length=320), nullable=False),
    sa.Column('contact_phone', sa.String(length=16), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('offer_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('booking_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("(status = 'booked') = (booking_id IS NOT NULL)", name=op.f('ck_waitlist_entries_booked_with_booking')),
    sa.CheckConstraint("(status = 'offered') = (offer_expires_at IS NOT NULL)", name=op.f('ck_waitlist_entries_offered_until')),
    sa.CheckConstraint("status IN ('waiting', 'offered', 'booked', 'left', 'lapsed', 'skipped', 'expired')", name=op.f('ck_waitlist_entries_status_known')),
    sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_waitlist_entries_booking_id_bookings')),
    sa.ForeignKeyConstraint(['slot_id'], ['slots.id'], name=op.f('fk_waitlist_entries_slot_id_slots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_waitlist_entries')),
    sa.UniqueConstraint('seq', name=op.f('uq_waitlist_entries_seq'))
    )
    op.create_index('ix_waitlist_entries_live_user_id', 'waitlist_entries', ['user_id'], unique=False, postgresql_where=sa.text("status IN ('waiting', 'offered')"))
    op.create_index('ix_waitlist_entries_offered_offer_expires_at', 'waitlist_entries', ['offer_expires_at'], unique=False, postgresql_where=sa.text("status = 'offered'"))
    op.create_index('ix_waitlist_entries_waiting_slot_id_seq', 'waitlist_entries', ['slot_id', 'seq'], unique=False, postgresql_where=sa.text("status = 'waiting'"))
    op.create_index('uq_waitlist_entries_live_user_slot', 'waitlist_entries', ['user_id', 'slot_id'], unique=True, postgresql_where=sa.text("status IN ('waiting', 'offered')"))
    op.execute(
        """
        CREATE FUNCTION waitlist_entries_check_transition() RETURNS trigger AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                IF NEW.status <> 'waiting' THEN
                    RAISE EXCEPTION 'a waitlist entry starts waiting, not %', NEW.status
                        USING ERRCODE = 'check_violation';
                END IF;
            ELSIF NEW.status IS DISTINCT FROM OLD.status
                  AND (OLD.status, NEW.status) NOT IN (
                      ('waiting', 'offered'), ('waiting', 'left'), ('waiting', 'skipped'),
                      ('waiting', 'expired'), ('offered', 'booked'), ('offered', 'left'),
                      ('offered', 'lapsed'), ('offered', 'expired')) THEN
                RAISE EXCEPTION 'a waitlist entry cannot go from % to %', OLD.status, NEW.status
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NEW;
        END
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        "CREATE TRIGGER waitlist_entries_check_transition "
        "BEFORE INSERT OR UPDATE OF status ON waitlist_entries "
        "FOR EACH ROW EXECUTE FUNCTION waitlist_entries_check_transition()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER waitlist_entries_check_transition ON waitlist_entries")
    op.execute("DROP FUNCTION waitlist_entries_check_transition()")
    op.drop_index('uq_waitlist_entries_live_user_slot', table_name='waitlist_entries', postgresql_where=sa.text("status IN ('waiting', 'offered')"))
    op.drop_index('ix_waitlist_entries_waiting_slot_id_seq', table_name='waitlist_entries', postgresql_where=sa.text("status = 'waiting'"))
    op.drop_index('ix_waitlist_entries_offered_offer_expires_at', table_name='waitlist_entries', postgresql_where=sa.text("status = 'offered'"))
    op.drop_index('ix_waitlist_entries_live_user_id', table_name='waitlist_entries', postgresql_where=sa.text("status IN ('waiting', 'offered')"))
    op.drop_table('waitlist_entries')
