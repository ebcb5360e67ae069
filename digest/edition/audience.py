"""Subscriber operations that also reach into the engine's ledger (kept out of
``subscribers``, which never imports the pipeline)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from digest.store.models import Delivery, Edition
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
    with no link to them and their address removed from any server reply kept there.
    Returns how many ledger rows were kept."""
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
    service.erase(session, subscriber, now=now)
    return len(rows)
