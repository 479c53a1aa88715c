"""booking states: the version of the booking event that set them

Booking events carry the booking's version (1 when made, higher after every change, counted
by the booking service's database). The reminders service orders a booking's events by
``(version, as_of)`` instead of by the envelope time alone, so the clock of the replica that
wrote an event no longer decides which of two events is newer. Rows written before are
"unversioned" (0): any versioned event is newer than them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-09 09:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('booking_states', sa.Column('version', sa.Integer(), server_default=sa.text('0'), nullable=False))


def downgrade() -> None:
    op.drop_column('booking_states', 'version')
