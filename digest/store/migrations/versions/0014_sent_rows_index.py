"""deliveries: the index of rows sent keyed on sent_at, so claiming a row updates it in place

ix_deliveries_subscriber_sent held rows with ``status = 'sent'``. A column in an index's
condition counts as indexed, so each change of status (queued -> sending -> sent) was a
full update on PostgreSQL, with new entries in all six indexes of deliveries. The same rows
are those with a ``sent_at`` (set only when a row is sent), so the index now says that:
claiming a row (queued -> sending) touches no indexed column and can be a HOT update.

Revision ID: 0014
Revises: 0012
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SENT_AT = "sent_at IS NOT NULL"
SENT_STATUS = "status = 'sent'"


def _sent_index(condition: str) -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_subscriber_sent")
        batch_op.create_index(
            "ix_deliveries_subscriber_sent",
            ["subscriber_id"],
            unique=False,
            sqlite_where=sa.text(condition),
            postgresql_where=sa.text(condition),
        )


def upgrade() -> None:
    # rows sent before sent_at was kept everywhere: give them one, so the index has them
    op.execute(
        "UPDATE deliveries SET sent_at = updated_at WHERE status = 'sent' AND sent_at IS NULL"
    )
    _sent_index(SENT_AT)


def downgrade() -> None:
    _sent_index(SENT_STATUS)
