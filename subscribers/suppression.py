"""The suppression list: addresses that must not be mailed, kept only as salted hashes.

The salt is a random value created once per database (row ``email_hash_salt`` of
``instance_secrets``, made by migration 0002 or on first use). The hash is
HMAC-SHA256(salt, address in lower case). It keeps an erased address from being mailed
again by accident without keeping the address: anyone holding the database can still test
whether a given address is on the list, so treat a copy of the database as personal data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from subscribers.instance import instance_secret
from subscribers.models import Suppression

SALT_NAME = "email_hash_salt"


class Reason:
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    ERASED = "erased"


def email_salt(session: Session) -> bytes:
    """This database's salt for address hashes (created the first time it is needed)."""
    return instance_secret(session, SALT_NAME)


def email_hash(salt: bytes, address: str) -> str:
    """The salted hash stored for ``address`` (any letter case)."""
    return hmac.new(salt, address.strip().lower().encode("utf-8"), hashlib.sha256).hexdigest()


def suppression_for(session: Session, address_hash: str) -> Suppression | None:
    return session.scalar(select(Suppression).where(Suppression.email_hash == address_hash))


def suppress(session: Session, address_hash: str, reason: str, *, now: dt.datetime) -> None:
    """Put an address on the list (a listed address keeps its first reason)."""
    if suppression_for(session, address_hash) is None:
        session.add(Suppression(email_hash=address_hash, reason=reason, created_at=now))
        session.flush()


def lift(session: Session, address_hash: str) -> None:
    """Take an address off the list: only when its owner has confirmed by email again."""
    session.execute(delete(Suppression).where(Suppression.email_hash == address_hash))


def suppressed_among(session: Session, hashes: list[str]) -> dict[str, Suppression]:
    """The listed ones among ``hashes`` (one query)."""
    if not hashes:
        return {}
    rows = session.scalars(select(Suppression).where(Suppression.email_hash.in_(hashes)))
    return {row.email_hash: row for row in rows}
