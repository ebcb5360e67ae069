"""one sender per edition: lease rows (SQLite; PostgreSQL uses advisory locks)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import digest.store.db

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('edition_locks',
    sa.Column('edition_key', sa.String(length=20), nullable=False),
    sa.Column('holder', sa.String(length=200), nullable=False),
    sa.Column('expires_at', digest.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('edition_key', name=op.f('pk_edition_locks'))
    )


def downgrade() -> None:
    op.drop_table('edition_locks')
