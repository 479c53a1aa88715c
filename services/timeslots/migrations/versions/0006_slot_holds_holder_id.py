"""slot_holds: a place is held by a booking or by a waitlist offer (``holder_id``)

The booking service holds a freed place for the first waiter of a full slot while its offer
lasts (``WaitlistOfferMade`` to ``WaitlistOfferTaken`` / ``WaitlistOfferLapsed`` / a
declined offer). The offer's entry id now holds the place here as a booking id does, so the
key column is renamed from ``booking_id`` to ``holder_id``; the rows and counts are unchanged.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 20:00:00.000000
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column('slot_holds', 'booking_id', new_column_name='holder_id')


def downgrade() -> None:
    op.alter_column('slot_holds', 'holder_id', new_column_name='booking_id')
