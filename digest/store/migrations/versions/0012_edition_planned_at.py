"""editions.planned_at, deliveries.part: late readers and readers who change topics

editions.planned_at is when the edition's readers were last planned; deliveries.part
numbers the messages of one edition to one reader (2 and up: the new topics' summaries of
a reader who changed topics after they were sent it), unique with edition and reader.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import digest.store.db

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('editions', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('planned_at', digest.store.db.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('part', sa.Integer(), server_default='1', nullable=False))
        batch_op.drop_constraint('uq_deliveries_edition_id', type_='unique')
        batch_op.create_unique_constraint(
            'uq_deliveries_edition_id', ['edition_id', 'subscriber_id', 'part']
        )


def downgrade() -> None:
    op.execute("DELETE FROM deliveries WHERE part > 1")
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_constraint('uq_deliveries_edition_id', type_='unique')
        batch_op.create_unique_constraint(
            'uq_deliveries_edition_id', ['edition_id', 'subscriber_id']
        )
        batch_op.drop_column('part')
    with op.batch_alter_table('editions', schema=None) as batch_op:
        batch_op.drop_column('planned_at')
