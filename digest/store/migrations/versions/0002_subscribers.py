"""subscribers: consent, confirmations, suppression list; time zone, frequency, pause

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import digest.store.db

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('instance_secrets',
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('value', sa.String(length=128), nullable=False),
    sa.Column('created_at', digest.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_instance_secrets'))
    )
    op.create_table('suppressions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email_hash', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.String(length=20), nullable=False),
    sa.Column('created_at', digest.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_suppressions')),
    sa.UniqueConstraint('email_hash', name=op.f('uq_suppressions_email_hash'))
    )
    op.create_table('confirmations',
    sa.Column('subscriber_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', digest.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', digest.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('message_id', sa.String(length=255), nullable=True),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'], name=op.f('fk_confirmations_subscriber_id_subscribers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('subscriber_id', name=op.f('pk_confirmations')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_confirmations_token_hash'))
    )
    op.create_table('consents',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subscriber_id', sa.Integer(), nullable=False),
    sa.Column('created_at', digest.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('categories', sa.JSON(), nullable=False),
    sa.Column('text_version', sa.String(length=40), nullable=False),
    sa.Column('confirmed_at', digest.store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('confirmed_by', sa.String(length=20), nullable=True),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'], name=op.f('fk_consents_subscriber_id_subscribers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consents'))
    )
    with op.batch_alter_table('consents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_consents_subscriber_id'), ['subscriber_id'], unique=False)

    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('timezone', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('frequency', sa.String(length=10), server_default='weekly', nullable=False))
        batch_op.add_column(sa.Column('paused_until', digest.store.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('email_hash', sa.String(length=64), nullable=True))

    # The per-database salt of address hashes, and the hash of every existing address
    # (HMAC-SHA256(salt, lower-case address), as subscribers.suppression computes it).
    salt = secrets.token_hex(32)
    secrets_table = sa.table('instance_secrets', sa.column('name'), sa.column('value'), sa.column('created_at', digest.store.db.UTCDateTime()))
    op.bulk_insert(secrets_table, [{'name': 'email_hash_salt', 'value': salt, 'created_at': dt.datetime.now(dt.UTC)}])
    subscribers = sa.table('subscribers', sa.column('id', sa.Integer()), sa.column('email_key', sa.String()), sa.column('email_hash', sa.String()))
    connection = op.get_bind()
    rows = connection.execute(sa.select(subscribers.c.id, subscribers.c.email_key)).all()
    if rows:
        key = bytes.fromhex(salt)
        connection.execute(
            subscribers.update().where(subscribers.c.id == sa.bindparam('row_id')),
            [{'row_id': row_id, 'email_hash': hmac.new(key, email_key.lower().encode('utf-8'), hashlib.sha256).hexdigest()} for row_id, email_key in rows],
        )

    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.alter_column('email_hash', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(batch_op.f('uq_subscribers_email_hash'), ['email_hash'])


def downgrade() -> None:
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_subscribers_email_hash'), type_='unique')
        batch_op.drop_column('email_hash')
        batch_op.drop_column('paused_until')
        batch_op.drop_column('frequency')
        batch_op.drop_column('timezone')

    with op.batch_alter_table('consents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_consents_subscriber_id'))

    op.drop_table('consents')
    op.drop_table('confirmations')
    op.drop_table('suppressions')
    op.drop_table('instance_secrets')
