"""Migrations: up and down on SQLite and PostgreSQL, and in step with the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

import digest.store.models  # noqa: F401
import subscribers.models  # noqa: F401
from digest.store import schema
from digest.store.db import Base


def test_migrations_match_the_models(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_downgrade_to_base_and_up_again(engine: Engine) -> None:
    assert schema.is_current(engine)
    schema.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    schema.upgrade(engine)
    assert {"summaries", "subscribers", "deliveries", "editions", "variants"} <= set(
        inspect(engine).get_table_names()
    )
    assert schema.is_current(engine)
