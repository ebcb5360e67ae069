"""Read-only views of subscribers: the admin list, one subscriber's record, the export,
and what an import merges into.

Tokens are never part of a view.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from digest.errors import SubscriberError
from digest.store.db import Category
from subscribers import consent, suppression
from subscribers.consent import ConsentView
from subscribers.csvio import ExportRecord
from subscribers.lookup import resolve_categories
from subscribers.merging import Known
from subscribers.models import Confirmation, Consent, Status, Subscriber, Subscription

EXPORT_BATCH = 1000


@dataclass(frozen=True, slots=True)
class ListedSubscriber:
    email: str
    name: str | None
    status: str
    categories: tuple[str, ...]  # names
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class SubscriberView:
    id: int
    email: str
    name: str | None
    status: str
    categories: tuple[str, ...]  # names
    created_at: dt.datetime
    confirmed_at: dt.datetime | None
    unsubscribed_at: dt.datetime | None
    active_since: dt.datetime | None
    timezone: str | None
    frequency: str
    paused_until: dt.datetime | None
    consents: tuple[ConsentView, ...]
    #: (sent, expires) of the open confirmation request, if any.
    confirmation: tuple[dt.datetime, dt.datetime] | None
    #: Why the address is on the suppression list, if it is.
    suppressed: str | None


def _filtered(
    session: Session,
    query: Select[int],
    status: str | None,
    category: str | None,
    search: str | None,
) -> Select[int]:
    if status:
        if status not in tuple(Status):
            raise SubscriberError(f"status must be one of {', '.join(Status)}")
        query = query.where(Subscriber.status == status)
    if category:
        (chosen,) = resolve_categories(session, [category])
        query = query.where(
            Subscriber.id.in_(
                select(Subscription.subscriber_id).where(Subscription.category_id == chosen.id)
            )
        )
    if search:
        text = search.strip().lower()
        query = query.where(
            or_(
                Subscriber.email_key.contains(text, autoescape=True),
                func.lower(Subscriber.name).contains(text, autoescape=True),
            )
        )
    return query


def list_subscribers(
    session: Session,
    *,
    status: str | None = None,
    category: str | None = None,
    search: str | None = None,
    limit: int = 100,
) -> tuple[list[ListedSubscriber], int]:
    """Up to ``limit`` matching subscribers (oldest first) and how many match in all."""
    ids = _filtered(session, select(Subscriber.id), status, category, search)
    total = session.scalar(select(func.count()).select_from(ids.subquery())) or 0
    subscribers = session.scalars(
        select(Subscriber)
        .where(Subscriber.id.in_(ids.order_by(Subscriber.id).limit(limit)))
        .order_by(Subscriber.id)
    ).all()
    rows = [
        ListedSubscriber(
            s.email, s.name, s.status, tuple(c.name for c in s.categories), s.created_at
        )
        for s in subscribers
    ]
    return rows, total


def describe(session: Session, subscriber: Subscriber) -> SubscriberView:
    """Everything stored about one subscriber, except their tokens."""
    request = session.get(Confirmation, subscriber.id)
    listed = suppression.suppression_for(session, subscriber.email_hash)
    return SubscriberView(
        id=subscriber.id,
        email=subscriber.email,
        name=subscriber.name,
        status=subscriber.status,
        categories=tuple(c.name for c in subscriber.categories),
        created_at=subscriber.created_at,
        confirmed_at=subscriber.confirmed_at,
        unsubscribed_at=subscriber.unsubscribed_at,
        active_since=subscriber.active_since,
        timezone=subscriber.timezone,
        frequency=subscriber.frequency,
        paused_until=subscriber.paused_until,
        consents=tuple(consent.history(session, subscriber.id)),
        confirmation=(request.created_at, request.expires_at) if request else None,
        suppressed=listed.reason if listed else None,
    )


def iter_export(
    session: Session,
    *,
    status: str | None = None,
    emails: Sequence[str] = (),
    batch: int = EXPORT_BATCH,
) -> Iterator[ExportRecord]:
    """Every subscriber (or those with ``status``, or the given addresses) with their
    categories and consent records, read in batches by id: memory stays flat."""
    slugs = dict(session.execute(select(Category.id, Category.slug)).all())
    after = 0
    while True:
        query = _filtered(session, select(Subscriber.id), status, None, None)
        if emails:
            query = query.where(Subscriber.email_key.in_([e.strip().lower() for e in emails]))
        ids = list(
            session.scalars(query.where(Subscriber.id > after).order_by(Subscriber.id).limit(batch))
        )
        if not ids:
            return
        after = ids[-1]
        chosen: dict[int, list[str]] = {}
        for subscriber_id, category_id in session.execute(
            select(Subscription.subscriber_id, Subscription.category_id).where(
                Subscription.subscriber_id.in_(ids)
            )
        ):
            chosen.setdefault(subscriber_id, []).append(slugs[category_id])
        consents: dict[int, list[ConsentView]] = {}
        for row in session.scalars(
            select(Consent).where(Consent.subscriber_id.in_(ids)).order_by(Consent.id)
        ):
            consents.setdefault(row.subscriber_id, []).append(consent.view(row))
        for s in session.scalars(
            select(Subscriber).where(Subscriber.id.in_(ids)).order_by(Subscriber.id)
        ):
            yield ExportRecord(
                email=s.email,
                name=s.name,
                status=s.status,
                categories=tuple(sorted(chosen.get(s.id, []))),
                created_at=s.created_at,
                confirmed_at=s.confirmed_at,
                unsubscribed_at=s.unsubscribed_at,
                timezone=s.timezone,
                frequency=s.frequency,
                consents=tuple(consents.get(s.id, [])),
            )
        session.expunge_all()


def known_subscribers(session: Session, keys: Sequence[str]) -> dict[str, Known]:
    """The stored subscribers among these address keys (lower-case addresses), by key, as
    the import's merge rules see them (``listed`` left unset)."""
    if not keys:
        return {}
    rows = session.execute(
        select(
            Subscriber.id,
            Subscriber.email_key,
            Subscriber.email,
            Subscriber.email_hash,
            Subscriber.status,
            Subscriber.name,
            Subscriber.timezone,
            Subscriber.unsubscribed_at,
        ).where(Subscriber.email_key.in_(keys))
    ).all()
    categories: dict[int, set[int]] = {row.id: set() for row in rows}
    if categories:
        chosen = select(Subscription.subscriber_id, Subscription.category_id).where(
            Subscription.subscriber_id.in_(list(categories))
        )
        for subscriber_id, category_id in session.execute(chosen):
            categories[subscriber_id].add(category_id)
    return {
        row.email_key: Known(
            id=row.id,
            email=row.email,
            email_hash=row.email_hash,
            status=row.status,
            name=row.name,
            timezone=row.timezone,
            category_ids=frozenset(categories[row.id]),
            unsubscribed_at=row.unsubscribed_at,
        )
        for row in rows
    }
