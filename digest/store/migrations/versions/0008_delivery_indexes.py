"""deliveries: indexes without status (status changes no longer move index entries)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SENT_ROWS = "status = 'sent'"


def upgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_edition_id_id', ['edition_id', 'id'], unique=False)
        batch_op.create_index('ix_deliveries_subscriber_id', ['subscriber_id'], unique=False)
        batch_op.create_index(
            'ix_deliveries_subscriber_sent',
            ['subscriber_id'],
            unique=False,
            sqlite_where=sa.text(SENT_ROWS),
            postgresql_where=sa.text(SENT_ROWS),
        )
        batch_op.drop_index('ix_deliveries_subscriber_status')
        batch_op.drop_index('ix_deliveries_edition_status')


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index(
            'ix_deliveries_edition_status', ['edition_id', 'status', 'id'], unique=False
        )
        batch_op.create_index(
            'ix_deliveries_subscriber_status', ['subscriber_id', 'status'], unique=False
        )
        batch_op.drop_index('ix_deliveries_subscriber_sent')
        batch_op.drop_index('ix_deliveries_subscriber_id')
        batch_op.drop_index('ix_deliveries_edition_id_id')
