"""rooms: the booking rules of each room (``RoomRulesSet``); bookings: how often each moved

``rooms.rules`` holds the ``RoomRules`` of the newest ``RoomRulesSet`` applied, and
``rooms.rules_version`` its room version; ``rooms.room_type`` comes from the room's snapshots
(quotas per room type count every room of a type). ``book_notice`` and ``horizon`` are
computed from ``rules`` by the database, so the conditional ``UPDATE`` that takes a place
refuses a slot too soon or too far ahead in the same statement. ``bookings.reschedules``
counts a booking's moves (a room may allow only so many); ``bookings.terms`` keeps the rules
a booking was made under (notices to cancel and move, moves allowed, refund tiers), so that a
later change of the room's rules never touches it. ``quota_counts`` holds how many
bookings of a user count against a quota per scope and window, ``booking_quotas`` which
counts each booking added to (given back when it is cancelled or expires). Existing rooms have no rules until
their first ``RoomRulesSet``: nothing is refused, as before.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 17:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_MINUTES = "make_interval(mins => ((rules ->> '{rule}'::text))::integer)"


def upgrade() -> None:
    op.add_column('rooms', sa.Column('room_type', sa.String(length=32), server_default='', nullable=False))
    op.add_column('rooms', sa.Column('rules', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False))
    op.add_column('rooms', sa.Column('rules_version', sa.Integer(), server_default=sa.text('0'), nullable=False))
    op.add_column('rooms', sa.Column('book_notice', sa.Interval(), sa.Computed(f"COALESCE({_MINUTES.format(rule='book_notice_minutes')}, '00:00:00'::interval)", persisted=True), nullable=False))
    op.add_column('rooms', sa.Column('horizon', sa.Interval(), sa.Computed(_MINUTES.format(rule='horizon_minutes'), persisted=True), nullable=True))
    op.add_column('bookings', sa.Column('reschedules', sa.Integer(), server_default=sa.text('0'), nullable=False))
    op.add_column('bookings', sa.Column('terms', postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.create_table(
        'quota_counts',
        sa.Column('user_id', sa.String(length=255), nullable=False),
        sa.Column('scope', sa.String(length=80), nullable=False),
        sa.Column('window_starts_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('used', sa.Integer(), nullable=False),
        sa.CheckConstraint('used >= 0', name=op.f('ck_quota_counts_used_not_negative')),
        sa.PrimaryKeyConstraint('user_id', 'scope', 'window_starts_at', name=op.f('pk_quota_counts')),
    )
    op.create_table(
        'booking_quotas',
        sa.Column('booking_id', sa.Uuid(), nullable=False),
        sa.Column('scope', sa.String(length=80), nullable=False),
        sa.Column('window_starts_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('user_id', sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_booking_quotas_booking_id_bookings')),
        sa.PrimaryKeyConstraint('booking_id', 'scope', 'window_starts_at', name=op.f('pk_booking_quotas')),
    )


def downgrade() -> None:
    op.drop_table('booking_quotas')
    op.drop_table('quota_counts')
    op.drop_column('bookings', 'terms')
    op.drop_column('bookings', 'reschedules')
    op.drop_column('rooms', 'horizon')
    op.drop_column('rooms', 'book_notice')
    op.drop_column('rooms', 'rules_version')
    op.drop_column('rooms', 'rules')
    op.drop_column('rooms', 'room_type')
