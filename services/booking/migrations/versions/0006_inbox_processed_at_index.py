"""inbox: index on processed_at, for the purge

Every worker process deletes the inbox rows older than the retention
(``<PREFIX>INBOX_RETENTION_DAYS``), a batch at a time (``platform_runtime.inbox.InboxPurger``);
the index finds them without reading the table. It is built ``CONCURRENTLY``, outside a
transaction, so that consumers keep claiming events while a large inbox is indexed; an index
left invalid by a build that failed is dropped first.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 09:00:00.000000
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index('ix_inbox_processed_at', table_name='inbox', postgresql_concurrently=True, if_exists=True)
        op.create_index('ix_inbox_processed_at', 'inbox', ['processed_at'], unique=False, postgresql_concurrently=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index('ix_inbox_processed_at', table_name='inbox', postgresql_concurrently=True, if_exists=True)
