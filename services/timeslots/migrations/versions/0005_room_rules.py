"""rooms: the booking rules a room sets itself, and the rules in force last published

``rules`` holds the room's own rules, only those an admin set (the others are inherited
from the room type's and the platform's defaults, which are settings). ``published_rules``
is the ``RoomRules`` last published for the room in a ``RoomRulesSet`` event: the service
compares the rules in force with it to publish a change once (NULL: never published, so
every room that exists now is published by the first start of the service after this).
Adding the columns updates no row, so no room's version changes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 17:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('rooms', sa.Column('rules', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False))
    op.add_column('rooms', sa.Column('published_rules', postgresql.JSONB(astext_type=sa.Text()), nullable=True))


def downgrade() -> None:
    op.drop_column('rooms', 'published_rules')
    op.drop_column('rooms', 'rules')
