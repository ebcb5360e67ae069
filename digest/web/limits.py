"""The abuse limits of the sign-up and link-request forms, counted in the database.

Each email these forms are asked to send is one row of ``signup_hits`` per limit it counts
against: the client (per ``signup_limit_per_ip`` in 10 minutes), the target address (one
confirmation a day; three link emails an hour) and the whole site (``signup_limit_per_hour``).
A request over any limit is counted nowhere, sends nothing and learns when to retry.
Clients and addresses are stored only as keyed hashes
(:func:`digest.web.security.address_key`), and rows older than a day are
deleted as new ones come. On PostgreSQL the check and the count happen under one
transaction-scoped advisory lock, so every process of every server agrees exactly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from dataclasses import dataclass

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings
from digest.store.db import transaction
from subscribers.models import SignupHit

#: The longest window: older rows are deleted.
KEPT = dt.timedelta(days=1)
_LOCK_ID = int.from_bytes(hashlib.sha256(b"digest-signup-limits").digest()[:8], "big", signed=True)
#: SQLite has no advisory lock: the threads of one process take turns (a SQLite database
#: is served by one machine, and its writes are serialised anyway).
_LOCAL = threading.Lock()


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``count`` hits per ``window`` for each key of ``scope``."""

    scope: str
    count: int
    window: dt.timedelta


@dataclass(frozen=True, slots=True)
class SignupLimits:
    """The limits of one site (see :func:`limits_for`)."""

    per_ip: Limit
    per_address: Limit
    links_per_address: Limit
    per_site: Limit


def limits_for(settings: Settings) -> SignupLimits:
    return SignupLimits(
        per_ip=Limit("ip", settings.signup_limit_per_ip, dt.timedelta(minutes=10)),
        per_address=Limit("address", 1, dt.timedelta(days=1)),
        links_per_address=Limit("links", 3, dt.timedelta(hours=1)),
        per_site=Limit("site", settings.signup_limit_per_hour, dt.timedelta(hours=1)),
    )


def _retry_at(session: Session, limit: Limit, key: str, now: dt.datetime) -> dt.datetime | None:
    """None when one more hit is allowed, else the moment it will be."""
    recent = session.scalars(
        select(SignupHit.at)
        .where(SignupHit.scope == limit.scope, SignupHit.key == key)
        .where(SignupHit.at > now - limit.window)
        .order_by(SignupHit.at.desc())
        .limit(limit.count)
    ).all()
    if len(recent) < limit.count:
        return None
    return recent[-1] + limit.window


def count_hit(
    factory: sessionmaker[Session], hits: list[tuple[Limit, str]], now: dt.datetime
) -> dt.datetime | None:
    """Count one hit under each (limit, key) when none of them is over; otherwise count
    nothing and return the moment the request may be made again."""
    with _LOCAL, transaction(factory) as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        session.execute(delete(SignupHit).where(SignupHit.at < now - KEPT))
        waits = [when for limit, key in hits if (when := _retry_at(session, limit, key, now))]
        if waits:
            return max(waits)
        session.add_all(SignupHit(scope=limit.scope, key=key, at=now) for limit, key in hits)
        return None
