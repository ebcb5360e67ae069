"""send_rates, send_rate_grants: one rate limit shared by every sending process (PostgreSQL)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import digest.store.db

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('send_rate_grants',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('ends_at', sa.Double(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_send_rate_grants'))
    )
    op.create_index('ix_send_rate_grants_name_ends_at', 'send_rate_grants', ['name', 'ends_at'], unique=False)
    op.create_table('send_rates',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('rate', sa.Double(), nullable=True),
    sa.Column('next_at', sa.Double(), nullable=False),
    sa.Column('good', sa.Integer(), nullable=False),
    sa.Column('updated_at', digest.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_send_rates'))
    )


def downgrade() -> None:
    op.drop_table('send_rates')
    op.drop_index('ix_send_rate_grants_name_ends_at', table_name='send_rate_grants')
    op.drop_table('send_rate_grants')
