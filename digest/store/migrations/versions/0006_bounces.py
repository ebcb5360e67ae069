"""bounce_events: processed bounces and complaints (digest bounces process)

Revision ID: 0006
Revises: 0003
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import digest.store.db

revision: str = '0006'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('bounce_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('received_at', digest.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=40), nullable=True),
    sa.Column('delivery_id', sa.Integer(), nullable=True),
    sa.Column('subscriber_id', sa.Integer(), nullable=True),
    sa.Column('edition_id', sa.Integer(), nullable=True),
    sa.Column('reference', sa.String(length=255), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['delivery_id'], ['deliveries.id'], name=op.f('fk_bounce_events_delivery_id_deliveries'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['edition_id'], ['editions.id'], name=op.f('fk_bounce_events_edition_id_editions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'], name=op.f('fk_bounce_events_subscriber_id_subscribers'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bounce_events')),
    sa.UniqueConstraint('fingerprint', name=op.f('uq_bounce_events_fingerprint'))
    )
    op.create_index('ix_bounce_events_subscriber_kind', 'bounce_events', ['subscriber_id', 'kind'], unique=False)
    op.create_index(op.f('ix_bounce_events_delivery_id'), 'bounce_events', ['delivery_id'], unique=False)
    op.create_index(op.f('ix_bounce_events_edition_id'), 'bounce_events', ['edition_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_bounce_events_edition_id'), table_name='bounce_events')
    op.drop_index(op.f('ix_bounce_events_delivery_id'), table_name='bounce_events')
    op.drop_index('ix_bounce_events_subscriber_kind', table_name='bounce_events')
    op.drop_table('bounce_events')
