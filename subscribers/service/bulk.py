"""The subscriber service for a CSV import: store each batch :mod:`subscribers.merging`
planned. New people go through the one bulk writer (:func:`digest.store.db.insert_many`:
COPY on PostgreSQL); changes to people already stored go through
:mod:`subscribers.service.people`, so they follow the same rules as any other change."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.store.db import Category, driver_time, insert_many
from subscribers import consent, rules, suppression
from subscribers.instance import token_key
from subscribers.merging import BatchPlan, Close, NewSubscriber, Update
from subscribers.models import SUPPRESSED, Consent, Subscriber, Subscription, Suppression
from subscribers.service.people import confirm, unsubscribe
from subscribers.tokens import new_token, token_digest

_SUBSCRIBERS = Subscriber.metadata.tables[Subscriber.__tablename__]
_SUBSCRIPTIONS = Subscription.metadata.tables[Subscription.__tablename__]
_CONSENTS = Consent.metadata.tables[Consent.__tablename__]
_SUPPRESSIONS = Suppression.metadata.tables[Suppression.__tablename__]
_SUBSCRIBER_COLUMNS = (
    "email", "email_key", "email_hash", "name", "status", "token", "token_hash", "created_at",
    "confirmed_at", "unsubscribed_at", "active_since", "timezone", "frequency",
)  # fmt: skip
_CONSENT_COLUMNS = (
    "subscriber_id", "created_at", "source", "categories", "text_version", "confirmed_at",
    "confirmed_by",
)  # fmt: skip


def write_import(session: Session, plan: BatchPlan, *, now: dt.datetime) -> None:
    """Store one planned batch of an import (flushed; the caller commits or rolls back)."""
    _create(session, plan.new, now=now)
    for change in plan.changes:
        subscriber = session.get(Subscriber, change.subscriber_id)
        assert subscriber is not None
        if isinstance(change, Close):
            _close(session, subscriber, change, now=now)
        else:
            _update(session, subscriber, change, now=now)
    session.flush()


def _create(session: Session, new: Sequence[NewSubscriber], *, now: dt.datetime) -> None:
    if not new:
        return
    time = driver_time(session.connection().dialect)

    def maybe(value: dt.datetime | None) -> object:
        return None if value is None else time(value)

    key = token_key(session)
    tokens = [new_token() for _ in new]
    subscribers = [
        (
            *(n.email, n.key, n.email_hash, n.name, n.status, token, token_digest(key, token)),
            time(n.created_at),
            *(maybe(n.confirmed_at), maybe(n.unsubscribed_at), maybe(n.active_since)),
            *(n.timezone, n.frequency),
        )
        for n, token in zip(new, tokens, strict=True)
    ]
    insert_many(session, _SUBSCRIBERS, _SUBSCRIBER_COLUMNS, subscribers)
    keys = [n.key for n in new]
    found = select(Subscriber.email_key, Subscriber.id).where(Subscriber.email_key.in_(keys))
    ids = {key: subscriber_id for key, subscriber_id in session.execute(found)}
    subscriptions = [(ids[n.key], category) for n in new for category in n.category_ids]
    insert_many(session, _SUBSCRIPTIONS, ("subscriber_id", "category_id"), subscriptions)
    consents = [
        (
            *(ids[n.key], time(c.created_at), c.source, json.dumps(list(c.categories))),
            *(c.text_version, maybe(c.confirmed_at), c.confirmed_by),
        )
        for n in new
        for c in (n.consent,)
    ]
    insert_many(session, _CONSENTS, _CONSENT_COLUMNS, consents)
    suppressions = [(n.email_hash, n.status, time(now)) for n in new if n.suppressed]
    insert_many(session, _SUPPRESSIONS, ("email_hash", "reason", "created_at"), suppressions)


def _close(session: Session, subscriber: Subscriber, change: Close, *, now: dt.datetime) -> None:
    if subscriber.status not in rules.CLOSED:
        unsubscribe(session, subscriber, now=now)
    subscriber.status = change.status
    subscriber.unsubscribed_at = change.unsubscribed_at
    if change.status in SUPPRESSED:
        suppression.suppress(session, subscriber.email_hash, change.status, now=now)


def _update(session: Session, subscriber: Subscriber, change: Update, *, now: dt.datetime) -> None:
    if change.add_category_ids:
        added = session.scalars(select(Category).where(Category.id.in_(change.add_category_ids)))
        subscriber.categories = [*subscriber.categories, *added]
    subscriber.name = change.name or subscriber.name
    subscriber.timezone = change.timezone or subscriber.timezone
    if change.consent_version:
        session.flush()
        consent.record(
            session,
            subscriber.id,
            source="import",
            categories=[c.slug for c in subscriber.categories],
            now=now,
            version=change.consent_version,
        )
    if change.confirmed_at is not None:
        confirm(session, subscriber, now=now, by="import")
        subscriber.confirmed_at = change.confirmed_at
