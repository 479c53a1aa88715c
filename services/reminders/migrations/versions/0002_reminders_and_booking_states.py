"""reminders and booking states

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 03:15:40.059965
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('booking_states',
    sa.Column('booking_id', sa.Uuid(), nullable=False),
    sa.Column('final', sa.Boolean(), nullable=False),
    sa.Column('as_of', sa.DateTime(timezone=True), nullable=False),
    sa.Column('user_id', sa.String(length=255), nullable=True),
    sa.Column('contact_email', sa.String(length=320), nullable=True),
    sa.Column('contact_phone', sa.String(length=16), nullable=True),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('room_name', sa.String(length=200), nullable=True),
    sa.Column('room_time_zone', sa.String(length=64), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('final OR (starts_at IS NOT NULL AND contact_email IS NOT NULL)', name=op.f('ck_booking_states_facts_known_unless_final')),
    sa.PrimaryKeyConstraint('booking_id', name=op.f('pk_booking_states'))
    )
    op.create_table('reminders',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('booking_id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('scheduled_for', sa.DateTime(timezone=True), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('job_id', sa.Uuid(), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('message_id', sa.String(length=255), nullable=True),
    sa.Column('contact_email', sa.String(length=320), nullable=False),
    sa.Column('contact_phone', sa.String(length=16), nullable=True),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('room_name', sa.String(length=200), nullable=False),
    sa.Column('room_time_zone', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("kind <> 'sms' OR contact_phone IS NOT NULL", name=op.f('ck_reminders_sms_has_phone')),
    sa.CheckConstraint("kind IN ('email_24h', 'email_1h', 'sms')", name=op.f('ck_reminders_kind_known')),
    sa.CheckConstraint("status <> 'sent' OR (sent_at IS NOT NULL AND message_id IS NOT NULL)", name=op.f('ck_reminders_sent_has_time_and_message_id')),
    sa.CheckConstraint("status IN ('pending', 'queued', 'sent', 'cancelled', 'failed')", name=op.f('ck_reminders_status_known')),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_reminders_attempts_not_negative')),
    sa.CheckConstraint('ends_at > starts_at', name=op.f('ck_reminders_ends_after_start')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reminders'))
    )
    op.create_index('ix_reminders_booking_id', 'reminders', ['booking_id'], unique=False)
    op.create_index('ix_reminders_pending_due_at', 'reminders', ['due_at'], unique=False, postgresql_where=sa.text("status = 'pending'"))
    op.create_index('ix_reminders_queued_lease_expires_at', 'reminders', ['lease_expires_at'], unique=False, postgresql_where=sa.text("status = 'queued'"))
    op.create_index('uq_reminders_live_booking_id_kind', 'reminders', ['booking_id', 'kind'], unique=True, postgresql_where=sa.text("status IN ('pending', 'queued')"))


def downgrade() -> None:
    op.drop_index('uq_reminders_live_booking_id_kind', table_name='reminders', postgresql_where=sa.text("status IN ('pending', 'queued')"))
    op.drop_index('ix_reminders_queued_lease_expires_at', table_name='reminders', postgresql_where=sa.text("status = 'queued'"))
    op.drop_index('ix_reminders_pending_due_at', table_name='reminders', postgresql_where=sa.text("status = 'pending'"))
    op.drop_index('ix_reminders_booking_id', table_name='reminders')
    op.drop_table('reminders')
    op.drop_table('booking_states')
