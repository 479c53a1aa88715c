"""reminders: the email of a waitlist offer

A new kind, ``waitlist_offer``: the email telling a waiter that a freed place is held for
them. Its row's ``booking_id`` is the waitlist entry's id; ``slot_id`` and
``offer_expires_at`` (set for this kind alone, a check) give the link and the offer's end.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 18:10:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('reminders', sa.Column('slot_id', sa.Uuid(), nullable=True))
    op.add_column('reminders', sa.Column('offer_expires_at', sa.DateTime(timezone=True), nullable=True))
    op.drop_constraint(op.f('ck_reminders_kind_known'), 'reminders', type_='check')
    op.create_check_constraint(
        op.f('ck_reminders_kind_known'),
        'reminders',
        "kind IN ('email_24h', 'email_1h', 'sms', 'waitlist_offer')",
    )
    op.create_check_constraint(
        op.f('ck_reminders_offer_has_slot_and_end'),
        'reminders',
        "(kind = 'waitlist_offer') = (slot_id IS NOT NULL AND offer_expires_at IS NOT NULL)",
    )


def downgrade() -> None:
    op.execute("DELETE FROM reminders WHERE kind = 'waitlist_offer'")
    op.drop_constraint(op.f('ck_reminders_offer_has_slot_and_end'), 'reminders', type_='check')
    op.drop_constraint(op.f('ck_reminders_kind_known'), 'reminders', type_='check')
    op.create_check_constraint(
        op.f('ck_reminders_kind_known'), 'reminders', "kind IN ('email_24h', 'email_1h', 'sms')"
    )
    op.drop_column('reminders', 'offer_expires_at')
    op.drop_column('reminders', 'slot_id')
