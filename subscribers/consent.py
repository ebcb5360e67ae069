"""Consent records: what each subscriber agreed to, when, and how it was confirmed.

``source`` says where the choice came from: ``form`` (the subscriber, on a web page),
``import`` (a CSV import) or ``admin`` (``digest subscribers add``). ``confirmed_by`` says
how it was confirmed: ``link`` (the confirmation email), ``admin`` (``add --confirmed``),
``import`` (``import --confirmed``) or ``preferences`` (a change made through the
subscriber's own preferences link). ``text_version`` names the consent wording shown;
bump :data:`CONSENT_TEXT_VERSION` whenever the sign-up wording changes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.errors import SubscriberError
from subscribers.models import Consent

CONSENT_TEXT_VERSION = "2026-11"
SOURCES = ("form", "import", "admin")
CONFIRMED_BY = ("link", "admin", "import", "preferences")


@dataclass(frozen=True, slots=True)
class ConsentView:
    """A consent record as shown and exported."""

    created_at: dt.datetime
    source: str
    categories: tuple[str, ...]
    text_version: str
    confirmed_at: dt.datetime | None
    confirmed_by: str | None


def check_source(source: str) -> str:
    if source not in SOURCES:
        raise SubscriberError(f"consent source {source[:20]!r} is not one of {', '.join(SOURCES)}")
    return source


def check_version(version: str | None) -> str:
    text = " ".join((version or CONSENT_TEXT_VERSION).split())
    if not text or len(text) > 40:
        raise SubscriberError("a consent text version is 1 to 40 characters")
    return text


def record(
    session: Session,
    subscriber_id: int,
    *,
    source: str,
    categories: Sequence[str],
    now: dt.datetime,
    version: str | None = None,
    confirmed_by: str | None = None,
) -> Consent:
    """Add a consent record; confirmed at ``now`` when ``confirmed_by`` is given."""
    row = Consent(
        subscriber_id=subscriber_id,
        created_at=now,
        source=check_source(source),
        categories=list(categories),
        text_version=check_version(version),
        confirmed_at=now if confirmed_by else None,
        confirmed_by=confirmed_by,
    )
    session.add(row)
    return row


def confirm_latest(session: Session, subscriber_id: int, *, now: dt.datetime, by: str) -> None:
    """Mark the newest unconfirmed record confirmed (the one the email asked about)."""
    row = session.scalar(
        select(Consent)
        .where(Consent.subscriber_id == subscriber_id, Consent.confirmed_at.is_(None))
        .order_by(Consent.id.desc())
        .limit(1)
    )
    if row is not None:
        row.confirmed_at = now
        row.confirmed_by = by


def history(session: Session, subscriber_id: int) -> list[ConsentView]:
    """Every consent record of a subscriber, oldest first."""
    rows = session.scalars(
        select(Consent).where(Consent.subscriber_id == subscriber_id).order_by(Consent.id)
    )
    return [view(row) for row in rows]


def view(row: Consent) -> ConsentView:
    return ConsentView(
        created_at=row.created_at,
        source=row.source,
        categories=tuple(row.categories),
        text_version=row.text_version,
        confirmed_at=row.confirmed_at,
        confirmed_by=row.confirmed_by,
    )
