"""rooms: a version the database counts, carried in the room's events

``RoomUpserted`` and ``RoomDeactivated`` carry the room's version after the change, so that
the booking service keeps the newest state of a room by version, not by the clock of the
replica that wrote the event. The trigger sets 1 on insert and adds one on every update,
whatever the statement says: no writer can skip or repeat a version. Rooms that exist
already start at 1.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 06:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('rooms', sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False))
    op.execute(
        """
        CREATE FUNCTION rooms_count_versions() RETURNS trigger AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                NEW.version := 1;
            ELSE
                NEW.version := OLD.version + 1;
            END IF;
            RETURN NEW;
        END
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        "CREATE TRIGGER rooms_count_versions BEFORE INSERT OR UPDATE ON rooms "
        "FOR EACH ROW EXECUTE FUNCTION rooms_count_versions()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER rooms_count_versions ON rooms")
    op.execute("DROP FUNCTION rooms_count_versions()")
    op.drop_column('rooms', 'version')
