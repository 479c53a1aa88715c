"""cap on unpaid holds

One user holds at most as many unpaid (pending) bookings as the writing transaction allows:
before a pending booking is inserted, the trigger ``bookings_cap_unpaid_holds`` locks the
user's holds (``lock_unpaid_holds``: a transaction-level advisory lock per user, held to
commit), counts the user's pending bookings and refuses one more than the cap the
transaction states with ``SET LOCAL booking.max_unpaid_holds`` (check_violation, constraint
``unpaid_holds_within_cap``, the count as DETAIL). A transaction that states no cap (an
admin's own booking, an operator) is not capped. Paid, cancelled and expired bookings are
not pending, so they stop counting by themselves: no counter to keep in step.

Under READ COMMITTED the count, a statement of its own, sees every hold committed before
the lock was granted; under a snapshot taken earlier (REPEATABLE READ, SERIALIZABLE) it
might not, so such writers of capped holds are refused.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 09:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_bookings_pending_user_id', 'bookings', ['user_id'], unique=False, postgresql_where=sa.text("status = 'pending'"))

    op.execute(
        """
        CREATE FUNCTION lock_unpaid_holds(user_ids text[]) RETURNS void AS $$
        BEGIN
            PERFORM pg_advisory_xact_lock(lock_key)
            FROM (
                SELECT DISTINCT hashtextextended('booking unpaid holds:' || user_id, 0)
                    AS lock_key
                FROM unnest(user_ids) AS user_id
            ) AS holders
            ORDER BY lock_key;
        END
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        """
        CREATE FUNCTION bookings_cap_unpaid_holds() RETURNS trigger AS $$
        DECLARE
            most integer := nullif(current_setting('booking.max_unpaid_holds', true), '')::integer;
            held integer;
        BEGIN
            IF most IS NULL THEN
                RETURN NEW;
            END IF;
            IF current_setting('transaction_isolation') <> 'read committed' THEN
                RAISE EXCEPTION 'unpaid holds are capped in READ COMMITTED transactions only, '
                    'not %', current_setting('transaction_isolation')
                    USING ERRCODE = 'object_not_in_prerequisite_state';
            END IF;
            PERFORM lock_unpaid_holds(ARRAY[NEW.user_id]);
            SELECT count(*) INTO held
            FROM bookings
            WHERE user_id = NEW.user_id AND status = 'pending';
            IF held >= most THEN
                RAISE EXCEPTION 'user % holds % unpaid bookings, the most allowed is %',
                    NEW.user_id, held, most
                    USING ERRCODE = 'check_violation', CONSTRAINT = 'unpaid_holds_within_cap',
                          DETAIL = held::text;
            END IF;
            RETURN NEW;
        END
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        "CREATE TRIGGER bookings_cap_unpaid_holds BEFORE INSERT ON bookings "
        "FOR EACH ROW WHEN (NEW.status = 'pending') EXECUTE FUNCTION bookings_cap_unpaid_holds()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER bookings_cap_unpaid_holds ON bookings")
    op.execute("DROP FUNCTION bookings_cap_unpaid_holds()")
    op.execute("DROP FUNCTION lock_unpaid_holds(text[])")
    op.drop_index('ix_bookings_pending_user_id', table_name='bookings', postgresql_where=sa.text("status = 'pending'"))
