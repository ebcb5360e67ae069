"""Retention (``digest maintenance``): ledger rows and bounce events past their keeping
period and consent records of erased people leave the database;
each edition touched first keeps its totals, so reports still show them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from digest.bounces.report import live_counts
from digest.delivery import ledger
from digest.store.models import BounceEvent, Delivery, Edition, Variant
from subscribers.models import Consent, Subscriber


@dataclass(frozen=True)
class Retention:
    """What one maintenance run did."""

    ledger_before: dt.datetime
    bounces_before: dt.datetime
    archived: tuple[str, ...]  # keys of editions whose totals were fixed now
    ledger_rows: int
    bounce_events: int
    consents: int

    def lines(self) -> list[str]:
        kept = ", ".join(self.archived) if self.archived else "none newly"
        return [
            f"Ledger rows created before {self.ledger_before:%Y-%m-%d}: {self.ledger_rows} deleted",
            f"Bounce and complaint records before {self.bounces_before:%Y-%m-%d}: "
            f"{self.bounce_events} deleted",
            f"Editions keeping their totals from now on: {kept}",
            f"Consent records of erased people: {self.consents} deleted",
        ]


def edition_totals(session: Session, edition: Edition) -> dict[str, Any]:
    """The counts ``digest editions show`` and ``digest deliverability`` give for one
    edition, from its rows as they are now."""
    counts = live_counts(session, select(Edition.id).where(Edition.id == edition.id))
    statuses = ledger.counts_by_status(session, edition.id)
    variants = session.execute(
        select(Variant.number, func.count())
        .join(Delivery, Delivery.variant_id == Variant.id)
        .where(Variant.edition_id == edition.id)
        .group_by(Variant.number)
    ).all()
    return {
        "statuses": dict(sorted(statuses.items())),
        "variants": {str(number): int(n) for number, n in variants},
        **counts,
    }


def apply_retention(
    session: Session, *, now: dt.datetime, ledger_days: int, bounce_days: int
) -> Retention:
    """Delete what is past its keeping period (takes an open session; never commits)."""
    ledger_before = now - dt.timedelta(days=ledger_days)
    bounces_before = now - dt.timedelta(days=bounce_days)
    touched = (
        select(Delivery.edition_id)
        .where(Delivery.created_at < ledger_before)
        .union(
            select(BounceEvent.edition_id).where(
                BounceEvent.received_at < bounces_before, BounceEvent.edition_id.is_not(None)
            )
        )
    )
    editions = session.scalars(
        select(Edition)
        .where(Edition.id.in_(touched), Edition.archived_at.is_(None))
        .order_by(Edition.cutoff)
    ).all()
    for edition in editions:
        edition.totals = edition_totals(session, edition)
        edition.archived_at = now
    session.flush()
    events = _count_delete(session, BounceEvent, BounceEvent.received_at < bounces_before)
    rows = _count_delete(session, Delivery, Delivery.created_at < ledger_before)
    erased = Consent.subscriber_id.not_in(select(Subscriber.id))
    consents = _count_delete(session, Consent, erased)
    return Retention(
        ledger_before,
        bounces_before,
        tuple(e.key for e in editions),
        rows,
        events,
        consents,
    )


def _count_delete(session: Session, model: Any, condition: Any) -> int:
    found = int(session.scalar(select(func.count()).select_from(model).where(condition)) or 0)
    if found:
        session.execute(delete(model).where(condition))
    return found
