"""Looking at editions, and cancelling one (``digest editions``)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.orm import Session

from digest.delivery import ledger
from digest.errors import EditionError
from digest.planning.notices import notices_planned, notices_sent
from digest.store.db import Category
from digest.store.models import Delivery, Edition, EditionStatus, Variant


@dataclass(frozen=True)
class VariantInfo:
    number: int
    categories: tuple[str, ...]
    summaries: int
    recipients: int
    notices: int = 0  # corrections and retractions at its top


@dataclass(frozen=True)
class EditionInfo:
    key: str
    status: str
    created_at: dt.datetime
    cutoff: dt.datetime
    completed_at: dt.datetime | None
    counts: Counter[str]
    variants: tuple[VariantInfo, ...] = ()
    #: Correction and retraction notices sent in this edition (on rows sent), and planned.
    notices_sent: int = 0
    notices_planned: int = 0
    #: readers who became active after the cutoff: planned into it; planned but with nothing
    #: new in it (their first digest is a later edition); not planned yet (the next run does)
    late: int = 0
    waiting: int = 0
    unplanned: int = 0


def list_editions(session: Session, limit: int = 20) -> list[EditionInfo]:
    editions = session.scalars(select(Edition).order_by(Edition.cutoff.desc()).limit(limit))
    return [_info(session, e, with_variants=False) for e in editions]


def get_edition(session: Session, key: str) -> Edition:
    edition = session.scalar(select(Edition).where(Edition.key == key))
    if edition is None:
        raise EditionError(f"no edition {key} (see `digest editions list`)")
    return edition


def edition_info(session: Session, key: str) -> EditionInfo:
    return _info(session, get_edition(session, key), with_variants=True)


def _info(session: Session, edition: Edition, *, with_variants: bool) -> EditionInfo:
    variants: tuple[VariantInfo, ...] = ()
    if with_variants:
        names = dict(session.execute(select(Category.id, Category.name)).all())
        recipients = dict(
            session.execute(
                select(Delivery.variant_id, func.count())
                .where(Delivery.edition_id == edition.id)
                .group_by(Delivery.variant_id)
            ).all()
        )
        rows = session.scalars(
            select(Variant).where(Variant.edition_id == edition.id).order_by(Variant.number)
        )
        archived = edition.totals if edition.archived_at is not None else None
        kept = dict((archived or {}).get("variants", {}))
        variants = tuple(
            VariantInfo(
                v.number,
                tuple(sorted(names.get(c, f"#{c}") for c in v.category_ids)),
                len(v.summary_ids),
                kept.get(str(v.number), recipients.get(v.id, 0)),
                len(v.notice_ids or ()),
            )
            for v in rows
        )
    late = waiting = unplanned = 0
    if with_variants:
        late, waiting, unplanned = late_readers(session, edition)
    return EditionInfo(
        late=late,
        waiting=waiting,
        unplanned=unplanned,
        key=edition.key,
        status=edition.status,
        created_at=edition.created_at,
        cutoff=edition.cutoff,
        completed_at=edition.completed_at,
        counts=_counts(session, edition),
        variants=variants,
        notices_sent=notices_sent(session, edition.id),
        notices_planned=notices_planned(session, edition.id),
    )


def _counts(session: Session, edition: Edition) -> Counter[str]:
    """Deliveries by status; the totals an edition kept once retention deleted its rows."""
    if edition.archived_at is not None and edition.totals is not None:
        return Counter({k: int(n) for k, n in dict(edition.totals.get("statuses", {})).items()})
    return ledger.counts_by_status(session, edition.id)


def late_readers(session: Session, edition: Edition) -> tuple[int, int, int]:
    """Readers active now who became active after ``edition``'s cutoff: (planned into it,
    waiting for a later edition, not planned yet). Counts only, never addresses."""
    from subscribers.models import Status, Subscriber

    row = exists().where(Delivery.edition_id == edition.id, Delivery.subscriber_id == Subscriber.id)
    joined = [Subscriber.status == Status.ACTIVE.value, Subscriber.active_since > edition.cutoff]
    planned_at = edition.planned_at or edition.cutoff

    def number(*conditions: ColumnElement[bool]) -> int:
        query = select(func.count()).select_from(Subscriber).where(*joined, *conditions)
        return session.scalar(query) or 0

    return (
        number(row),
        number(~row, Subscriber.active_since <= planned_at),
        number(~row, Subscriber.active_since > planned_at),
    )


def cancel_edition(session: Session, key: str) -> int:
    """Cancel before or during a send; returns how many queued messages will not go out."""
    edition = get_edition(session, key)
    if edition.status == EditionStatus.COMPLETE:
        raise EditionError(f"edition {key} is complete: every message has gone out")
    if edition.status == EditionStatus.CANCELLED:
        return 0
    return ledger.cancel(session, edition)


@dataclass(frozen=True)
class DeliveryRow:
    edition: str
    address: str  # "(erased)" once the subscriber was erased
    status: str
    attempts: int
    updated_at: dt.datetime
    detail: str


def list_deliveries(
    session: Session, key: str | None = None, status: str | None = None, limit: int = 50
) -> list[DeliveryRow]:
    """The ledger, newest first; never shows tokens."""
    from subscribers.models import Subscriber

    query = (
        select(
            Edition.key,
            Subscriber.email,
            Delivery.status,
            Delivery.attempts,
            Delivery.updated_at,
            Delivery.detail,
        )
        .join(Edition, Edition.id == Delivery.edition_id)
        .outerjoin(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .order_by(Delivery.updated_at.desc(), Delivery.id.desc())
        .limit(limit)
    )
    if key:
        get_edition(session, key)
        query = query.where(Edition.key == key)
    if status:
        query = query.where(Delivery.status == status)
    return [
        DeliveryRow(k, address or "(erased)", s, attempts, updated, detail or "")
        for k, address, s, attempts, updated, detail in session.execute(query).all()
    ]
