"""stray payments

A payment no booking takes (it names a booking that does not exist, or pays another amount
or currency than the booking's price) is no longer dead-lettered with the money kept: it is
recorded in ``stray_payments`` and returned in full. The payment id is the primary key, so
the same payment, however often delivered, is recorded and refunded once; the refund id is
unique. ``booking_id`` is the id the payment named, with no foreign key: it may name no
booking. The refund's outcome settles ``refund_status`` as ``domain.REFUND_SETTLEMENTS``
allows (a trigger, as for ``refunds`` in 0003).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 03:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('stray_payments',
    sa.Column('payment_id', sa.String(length=255), nullable=False),
    sa.Column('booking_id', sa.Uuid(), nullable=False),
    sa.Column('amount', sa.Numeric(precision=19, scale=4), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('refund_id', sa.Uuid(), nullable=False),
    sa.Column('refund_status', sa.String(length=16), nullable=False),
    sa.Column('failure_reason', sa.Text(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('settled_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("(refund_status = 'failed') = (failure_reason IS NOT NULL)", name=op.f('ck_stray_payments_failure_has_reason')),
    sa.CheckConstraint("refund_status IN ('requested', 'succeeded', 'failed')", name=op.f('ck_stray_payments_refund_status_known')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_stray_payments_amount_positive')),
    sa.PrimaryKeyConstraint('payment_id', name=op.f('pk_stray_payments')),
    sa.UniqueConstraint('refund_id', name=op.f('uq_stray_payments_refund_id'))
    )
    op.create_index('ix_stray_payments_booking_id', 'stray_payments', ['booking_id'], unique=False)

    # domain.REFUND_SETTLEMENTS, enforced for every writer (the snapshot of 0003).
    op.execute(
        """
        CREATE FUNCTION stray_payments_check_settlement() RETURNS trigger AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                IF NEW.refund_status <> 'requested' THEN
                    RAISE EXCEPTION 'a refund starts requested, not %', NEW.refund_status
                        USING ERRCODE = 'check_violation';
                END IF;
            ELSIF NEW.refund_status IS DISTINCT FROM OLD.refund_status
                  AND (OLD.refund_status, NEW.refund_status) NOT IN (
                      ('requested', 'succeeded'), ('requested', 'failed'),
                      ('failed', 'succeeded')) THEN
                RAISE EXCEPTION 'a refund cannot go from % to %',
                    OLD.refund_status, NEW.refund_status
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NEW;
        END
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        "CREATE TRIGGER stray_payments_check_settlement "
        "BEFORE INSERT OR UPDATE OF refund_status ON stray_payments "
        "FOR EACH ROW EXECUTE FUNCTION stray_payments_check_settlement()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER stray_payments_check_settlement ON stray_payments")
    op.execute("DROP FUNCTION stray_payments_check_settlement()")
    op.drop_index('ix_stray_payments_booking_id', table_name='stray_payments')
    op.drop_table('stray_payments')
