"""deliveries.possibly_duplicated: the in-flight mark that survives a deferral

A row found on the wire without a known outcome after a crash or a lost send lock is
queued again with this mark; it was kept in ``detail`` before, which the next reply
overwrote, so a re-sent row that was then deferred stopped being counted.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IN_FLIGHT = "in flight during a crash; sent again with its original Message-ID"


def upgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                'possibly_duplicated', sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
    # rows requeued after a crash by an earlier version keep their mark
    op.execute(
        sa.text("UPDATE deliveries SET possibly_duplicated = :yes WHERE detail = :mark").bindparams(
            yes=True, mark=IN_FLIGHT
        )
    )


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('possibly_duplicated')
