"""Subscriber operations that also reach into the engine's ledger (kept out of
``subscribers``, which never imports the pipeline)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from digest.store.models import BounceEvent, Delivery, Edition
from subscribers import service
from subscribers.models import Subscriber

ERASED = "[erased address]"


@dataclass(frozen=True, slots=True)
class DeliveryLine:
    edition: str
    status: str
    at: dt.datetime
    detail: str | None


def last_deliveries(session: Session, subscriber_id: int, *, limit: int = 5) -> list[DeliveryLine]:
    """The subscriber's latest ledger rows, newest first."""
    rows = session.execute(
        select(Edition.key, Delivery.status, Delivery.updated_at, Delivery.detail)
        .join(Edition, Edition.id == Delivery.edition_id)
        .where(Delivery.subscriber_id == subscriber_id)
        .order_by(Delivery.id.desc())
        .limit(limit)
    ).all()
    return [DeliveryLine(*row) for row in rows]


def erase_subscriber(session: Session, subscriber: Subscriber, *, now: dt.datetime) -> int:
    """Erase a subscriber's personal data. Their ledger rows stay, so counts stay true,
    with no link to them and their address removed from any server reply kept there; so do
    their bounce and complaint records, wherever the address turns up in one (also in
    records that matched nobody). Returns how many ledger rows were kept."""
    pattern = re.compile(re.escape(subscriber.email), re.IGNORECASE)
    rows = session.execute(
        select(Delivery.id, Delivery.detail).where(Delivery.subscriber_id == subscriber.id)
    ).all()
    changed = [
        {"id": row_id, "detail": pattern.sub(ERASED, detail)}
        for row_id, detail in rows
        if detail and pattern.search(detail)
    ]
    if changed:
        session.execute(update(Delivery), changed)
    _scrub_bounce_events(session, subscriber, pattern)
    service.erase(session, subscriber, now=now)
    return len(rows)


def _scrub_bounce_events(
    session: Session, subscriber: Subscriber, pattern: re.Pattern[str]
) -> None:
    """Take the address (and the name) out of every bounce event naming it: addresses are
    replaced on arrival, but a provider's reference or a diagnostic may still name them."""
    keys = [subscriber.email.lower()]
    if subscriber.name and len(subscriber.name) >= 3:  # a name in a diagnostic, too
        keys.append(subscriber.name.lower())
        pattern = re.compile(f"{pattern.pattern}|{re.escape(subscriber.name)}", re.IGNORECASE)
    named = or_(
        BounceEvent.subscriber_id == subscriber.id,
        *(func.lower(BounceEvent.detail).contains(key, autoescape=True) for key in keys),
        *(func.lower(BounceEvent.reference).contains(key, autoescape=True) for key in keys),
    )
    events = session.execute(
        select(BounceEvent.id, BounceEvent.reference, BounceEvent.detail).where(named)
    ).all()
    changed = [
        {
            "id": event_id,
            "reference": pattern.sub(ERASED, reference),
            "detail": pattern.sub(ERASED, detail) if detail else detail,
        }
        for event_id, reference, detail in events
        if pattern.search(reference) or (detail and pattern.search(detail))
    ]
    if changed:
        session.execute(update(BounceEvent), changed)
