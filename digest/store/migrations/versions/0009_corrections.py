"""corrections and retractions: summary status, notices and who was sent which

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from digest.store.db import UTCDateTime

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('summaries', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('status', sa.String(length=20), server_default='published', nullable=False)
        )
        batch_op.add_column(sa.Column('correction_note', sa.Text(), nullable=True))
    with op.batch_alter_table('variants', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('notice_ids', sa.JSON(), server_default='[]', nullable=False)
        )
    op.create_table(
        'notices',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('summary_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('note', sa.Text(), nullable=False),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['summary_id'], ['summaries.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_notices_summary_id', 'notices', ['summary_id'], unique=False)
    op.create_table(
        'notice_deliveries',
        sa.Column('notice_id', sa.Integer(), nullable=False),
        sa.Column('delivery_id', sa.Integer(), nullable=False),
        sa.Column('subscriber_id', sa.Integer(), nullable=True),
        sa.Column('edition_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['notice_id'], ['notices.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['delivery_id'], ['deliveries.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['edition_id'], ['editions.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('notice_id', 'delivery_id'),
    )
    op.create_index(
        'ix_notice_deliveries_delivery_id', 'notice_deliveries', ['delivery_id'], unique=False
    )
    op.create_index(
        'ix_notice_deliveries_subscriber_id', 'notice_deliveries', ['subscriber_id'], unique=False
    )
    op.create_index(
        'ix_notice_deliveries_edition_id', 'notice_deliveries', ['edition_id'], unique=False
    )


def downgrade() -> None:
    op.drop_index('ix_notice_deliveries_edition_id', table_name='notice_deliveries')
    op.drop_index('ix_notice_deliveries_subscriber_id', table_name='notice_deliveries')
    op.drop_index('ix_notice_deliveries_delivery_id', table_name='notice_deliveries')
    op.drop_table('notice_deliveries')
    op.drop_index('ix_notices_summary_id', table_name='notices')
    op.drop_table('notices')
    with op.batch_alter_table('variants', schema=None) as batch_op:
        batch_op.drop_column('notice_ids')
    with op.batch_alter_table('summaries', schema=None) as batch_op:
        batch_op.drop_column('correction_note')
        batch_op.drop_column('status')
