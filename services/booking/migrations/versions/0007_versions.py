"""versions instead of clocks: bookings count their changes; the rooms copy keeps the newest

``bookings.version`` is 1 when a booking is made and one more after every update, set by a
trigger whatever the statement says; every booking event carries the version after its
change, so that readers (the reminders service) keep the newest state of a booking by
version, not by the clock of the replica that wrote the event.

``rooms.version`` is the version of the newest room event applied to the copy (the timeslot
service counts it the same way); 0 for rows written from events that had none. A room event
is applied when ``(version, active_as_of)`` is below the event's ``(version, envelope
time)``: versions decide between versioned events, and time only between events written
before versions existed.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 06:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('bookings', sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False))
    op.add_column('rooms', sa.Column('version', sa.Integer(), server_default=sa.text('0'), nullable=False))
    op.execute(
        """
        CREATE FUNCTION bookings_count_versions() RETURNS trigger AS $$
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
        "CREATE TRIGGER bookings_count_versions BEFORE INSERT OR UPDATE ON bookings "
        "FOR EACH ROW EXECUTE FUNCTION bookings_count_versions()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER bookings_count_versions ON bookings")
    op.execute("DROP FUNCTION bookings_count_versions()")
    op.drop_column('rooms', 'version')
    op.drop_column('bookings', 'version')
