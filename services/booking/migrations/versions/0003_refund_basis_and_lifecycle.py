"""refund basis and refund lifecycle

The refund policy counts notice to the start a booking had when it was paid
(``refund_basis_starts_at``: set at confirmation, kept through reschedules; existing paid
bookings get their current start). Every refund asked of the payment service is a row of
``refunds`` that its outcome settles; the booking's payment status sums them up
(``refund_pending``, ``refunded``, ``refund_failed`` with the reason).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 10:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PAYMENT_STATUSES_0002 = "payment_status IN ('pending', 'paid', 'refunded')"
_PAYMENT_STATUSES_0003 = (
    "payment_status IN ('pending', 'paid', 'refund_pending', 'refunded', 'refund_failed')"
)


def upgrade() -> None:
    op.add_column('bookings', sa.Column('refund_basis_starts_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('bookings', sa.Column('refund_failure_reason', sa.Text(), nullable=True))
    op.execute(
        "UPDATE bookings SET refund_basis_starts_at = starts_at "
        "WHERE payment_id IS NOT NULL OR status IN ('confirmed', 'completed', 'no_show')"
    )
    op.drop_constraint(op.f('ck_bookings_payment_status_known'), 'bookings', type_='check')
    op.create_check_constraint(op.f('ck_bookings_payment_status_known'), 'bookings', _PAYMENT_STATUSES_0003)
    op.create_check_constraint(
        op.f('ck_bookings_refund_failure_has_reason'),
        'bookings',
        "(payment_status = 'refund_failed') = (refund_failure_reason IS NOT NULL)",
    )
    op.create_index('ix_bookings_refund_failed_starts_at', 'bookings', ['starts_at'], unique=False, postgresql_where=sa.text("payment_status = 'refund_failed'"))
    op.create_table('refunds',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('booking_id', sa.Uuid(), nullable=False),
    sa.Column('payment_id', sa.String(length=255), nullable=False),
    sa.Column('amount', sa.Numeric(precision=19, scale=4), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('failure_reason', sa.Text(), nullable=True),
    sa.Column('requested_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('settled_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("(status = 'failed') = (failure_reason IS NOT NULL)", name=op.f('ck_refunds_failure_has_reason')),
    sa.CheckConstraint("status IN ('requested', 'succeeded', 'failed')", name=op.f('ck_refunds_status_known')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_refunds_amount_positive')),
    sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_refunds_booking_id_bookings')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_refunds'))
    )
    op.create_index('ix_refunds_booking_id', 'refunds', ['booking_id'], unique=False)

    # The paid start is what the refund policy counts notice to: once set, nobody moves it.
    op.execute(
        """
        CREATE FUNCTION bookings_keep_refund_basis() RETURNS trigger AS $$
        BEGIN
            IF OLD.refund_basis_starts_at IS NOT NULL
               AND NEW.refund_basis_starts_at IS DISTINCT FROM OLD.refund_basis_starts_at THEN
                RAISE EXCEPTION 'the start a booking was paid for never changes (% to %)',
                    OLD.refund_basis_starts_at, NEW.refund_basis_starts_at
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NEW;
        END
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        "CREATE TRIGGER bookings_keep_refund_basis BEFORE UPDATE OF refund_basis_starts_at "
        "ON bookings FOR EACH ROW EXECUTE FUNCTION bookings_keep_refund_basis()"
    )
    # domain.REFUND_SETTLEMENTS, enforced for every writer (a snapshot, like the booking
    # state machine of 0002).
    op.execute(
        """
        CREATE FUNCTION refunds_check_settlement() RETURNS trigger AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                IF NEW.status <> 'requested' THEN
                    RAISE EXCEPTION 'a refund starts requested, not %', NEW.status
                        USING ERRCODE = 'check_violation';
                END IF;
            ELSIF NEW.status IS DISTINCT FROM OLD.status
                  AND (OLD.status, NEW.status) NOT IN (
                      ('requested', 'succeeded'), ('requested', 'failed'),
                      ('failed', 'succeeded')) THEN
                RAISE EXCEPTION 'a refund cannot go from % to %', OLD.status, NEW.status
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NEW;
        END
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        "CREATE TRIGGER refunds_check_settlement BEFORE INSERT OR UPDATE OF status ON refunds "
        "FOR EACH ROW EXECUTE FUNCTION refunds_check_settlement()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER refunds_check_settlement ON refunds")
    op.execute("DROP FUNCTION refunds_check_settlement()")
    op.execute("DROP TRIGGER bookings_keep_refund_basis ON bookings")
    op.execute("DROP FUNCTION bookings_keep_refund_basis()")
    op.drop_index('ix_refunds_booking_id', table_name='refunds')
    op.drop_table('refunds')
    op.drop_index('ix_bookings_refund_failed_starts_at', table_name='bookings', postgresql_where=sa.text("payment_status = 'refund_failed'"))
    op.drop_constraint(op.f('ck_bookings_refund_failure_has_reason'), 'bookings', type_='check')
    op.drop_constraint(op.f('ck_bookings_payment_status_known'), 'bookings', type_='check')
    # 0002 knew one state for a refund asked for, whatever became of it
    op.execute(
        "UPDATE bookings SET payment_status = 'refunded' "
        "WHERE payment_status IN ('refund_pending', 'refund_failed')"
    )
    op.create_check_constraint(op.f('ck_bookings_payment_status_known'), 'bookings', _PAYMENT_STATUSES_0002)
    op.drop_column('bookings', 'refund_failure_reason')
    op.drop_column('bookings', 'refund_basis_starts_at')
