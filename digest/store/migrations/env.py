"""Alembic environment: runs against the connection handed over by :mod:`digest.store.schema`."""

from __future__ import annotations

from alembic import context

import digest.store.models  # noqa: F401  (registers the engine's tables)
import subscribers.models  # noqa: F401  (registers the subscriber tables)
from digest.store.db import Base

config = context.config
target_metadata = Base.metadata

connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `digest init` (digest.store.schema.upgrade)")

context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
