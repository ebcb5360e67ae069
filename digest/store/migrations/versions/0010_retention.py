"""retention: editions keep their totals; bounce events say how they matched and keep no
address (webhook payloads hashed, addresses in diagnostics replaced)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

import hashlib
import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import digest.store.db

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


def upgrade() -> None:
    with op.batch_alter_table('editions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('archived_at', digest.store.db.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('totals', sa.JSON(none_as_null=True), nullable=True))
    with op.batch_alter_table('bounce_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('matched_by', sa.String(length=20), nullable=True))
    events = sa.table(
        'bounce_events',
        sa.column('id', sa.Integer),
        sa.column('delivery_id', sa.Integer),
        sa.column('reference', sa.String),
        sa.column('detail', sa.Text),
        sa.column('matched_by', sa.String),
    )
    bind = op.get_bind()
    bind.execute(events.update().where(events.c.delivery_id.is_not(None)).values(matched_by='earlier'))
    rows = bind.execute(sa.select(events.c.id, events.c.reference, events.c.detail)).all()
    for row_id, reference, detail in rows:
        changes = {}
        if reference.startswith('json:{'):
            changes['reference'] = 'json:sha256:' + hashlib.sha256(reference.encode()).hexdigest()
        if detail and ADDRESS.search(detail):
            changes['detail'] = ADDRESS.sub('[address]', detail)
        if changes:
            bind.execute(events.update().where(events.c.id == row_id).values(**changes))


def downgrade() -> None:
    with op.batch_alter_table('bounce_events', schema=None) as batch_op:
        batch_op.drop_column('matched_by')
    with op.batch_alter_table('editions', schema=None) as batch_op:
        batch_op.drop_column('totals')
        batch_op.drop_column('archived_at')
