"""Per-database random secrets (address-hash salt, form key, token key), made on first use."""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from subscribers.models import TOKEN_KEY_NAME, InstanceSecret


def instance_secret(session: Session, name: str) -> bytes:
    """The database's secret called ``name``, created on first use so that every process
    using the database agrees on it. Deleting the row rotates it."""
    value = session.scalar(select(InstanceSecret.value).where(InstanceSecret.name == name))
    if value is None:
        candidate = secrets.token_hex(32)
        try:
            with session.begin_nested():
                session.add(
                    InstanceSecret(name=name, value=candidate, created_at=dt.datetime.now(dt.UTC))
                )
            value = candidate
        except IntegrityError:  # another process made it a moment ago
            value = session.scalar(select(InstanceSecret.value).where(InstanceSecret.name == name))
    assert value is not None
    return bytes.fromhex(value)


def token_key(session: Session) -> bytes:
    """This database's key of token hashes (see :func:`subscribers.tokens.token_digest`)."""
    return instance_secret(session, TOKEN_KEY_NAME)
