"""subscribers.token_hash (links are looked up by a keyed hash); signup_hits (abuse limits)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import digest.store.db

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TOKEN_KEY = 'token_key'


def upgrade() -> None:
    op.create_table('signup_hits',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('scope', sa.String(length=10), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('at', digest.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_signup_hits'))
    )
    with op.batch_alter_table('signup_hits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signup_hits_at'), ['at'], unique=False)
        batch_op.create_index('ix_signup_hits_scope_key_at', ['scope', 'key', 'at'], unique=False)

    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('token_hash', sa.String(length=64), nullable=True))

    # The per-database key of token hashes, and the hash of every existing token
    # (HMAC-SHA256(key, token), as subscribers.tokens.token_digest computes it).
    connection = op.get_bind()
    secrets_table = sa.table('instance_secrets', sa.column('name', sa.String()), sa.column('value', sa.String()), sa.column('created_at', digest.store.db.UTCDateTime()))
    value = connection.scalar(sa.select(secrets_table.c.value).where(secrets_table.c.name == TOKEN_KEY))
    if value is None:
        value = secrets.token_hex(32)
        op.bulk_insert(secrets_table, [{'name': TOKEN_KEY, 'value': value, 'created_at': dt.datetime.now(dt.UTC)}])
    key = bytes.fromhex(value)
    subscribers = sa.table('subscribers', sa.column('id', sa.Integer()), sa.column('token', sa.String()), sa.column('token_hash', sa.String()))
    rows = connection.execute(sa.select(subscribers.c.id, subscribers.c.token)).all()
    if rows:
        connection.execute(
            subscribers.update().where(subscribers.c.id == sa.bindparam('row_id')),
            [{'row_id': row_id, 'token_hash': hmac.new(key, token.encode('utf-8', 'surrogatepass'), hashlib.sha256).hexdigest()} for row_id, token in rows],
        )

    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.alter_column('token_hash', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(batch_op.f('uq_subscribers_token_hash'), ['token_hash'])


def downgrade() -> None:
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_subscribers_token_hash'), type_='unique')
        batch_op.drop_column('token_hash')

    with op.batch_alter_table('signup_hits', schema=None) as batch_op:
        batch_op.drop_index('ix_signup_hits_scope_key_at')
        batch_op.drop_index(batch_op.f('ix_signup_hits_at'))

    op.drop_table('signup_hits')
    op.execute(sa.text("DELETE FROM instance_secrets WHERE name = 'token_key'"))
