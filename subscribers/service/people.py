"""The subscriber service, one subscriber at a time: add, confirm, unsubscribe, change
categories, erase (see :mod:`subscribers.service`).

Used by the CLI, the web pages and the demo. Functions take an open session and never
commit: the caller owns the transaction. Lookups and validation live in
:mod:`subscribers.lookup`; they are re-exported here for callers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from digest.errors import SubscriberError
from subscribers import consent, rules, suppression
from subscribers.lookup import (
    clean_name,
    find_by_email,
    find_by_token,
    normalize_email,
    resolve_categories,
    validate_frequency,
    validate_timezone,
)
from subscribers.models import SUPPRESSED, Confirmation, Status, Subscriber, Subscription
from subscribers.tokens import looks_like_token, new_token, token_hash, tokens_equal

__all__ = [
    "CONFIRM_TTL",
    "add_subscriber",
    "category_subscriber_counts",
    "clean_name",
    "confirm",
    "confirm_with_token",
    "erase",
    "find_by_email",
    "find_by_token",
    "normalize_email",
    "open_confirmation",
    "resolve_categories",
    "resubscribe",
    "rotate_token",
    "set_categories",
    "set_preferences",
    "store_confirmations",
    "unsubscribe",
    "unsubscribe_category",
    "validate_frequency",
    "validate_timezone",
]

#: How long a confirmation link works.
CONFIRM_TTL = dt.timedelta(days=7)


def add_subscriber(
    session: Session,
    email: str,
    categories: Sequence[str],
    *,
    now: dt.datetime,
    name: str | None = None,
    confirmed: bool = False,
    source: str = "admin",
    timezone: str | None = None,
    frequency: str | None = None,
    consent_version: str | None = None,
) -> Subscriber:
    """Create a subscriber (pending unless ``confirmed``) with the given categories.

    A pending address is updated. An unsubscribed or suppressed address (also one erased
    earlier) becomes pending again: only its owner can confirm it, so ``confirmed`` is
    refused for it. An active address is refused.
    """
    address = normalize_email(email)
    chosen = resolve_categories(session, categories)
    if not chosen:
        raise SubscriberError("choose at least one category")
    source = consent.check_source(source)
    zone, how_often = validate_timezone(timezone), validate_frequency(frequency)
    address_hash = suppression.email_hash(suppression.email_salt(session), address)
    subscriber = find_by_email(session, address)
    if subscriber is not None and subscriber.status == Status.ACTIVE:
        raise SubscriberError(f"{subscriber.email} is already an active subscriber")
    listed = suppression.suppression_for(session, address_hash)
    if confirmed and subscriber is not None and subscriber.status != Status.PENDING:
        _refuse_confirmed(address, subscriber.status)
    if confirmed and subscriber is not None and subscriber.unsubscribed_at is not None:
        _refuse_confirmed(address, "pending after unsubscribing")
    if confirmed and listed is not None:
        _refuse_confirmed(address, f"on the suppression list ({listed.reason})")
    if subscriber is None:
        subscriber = Subscriber(
            email=address,
            email_key=address.lower(),
            email_hash=address_hash,
            token=new_token(),
            created_at=now,
            frequency=how_often,
        )
        session.add(subscriber)
    subscriber.name = clean_name(name) or subscriber.name
    subscriber.status = Status.PENDING.value
    subscriber.timezone = zone or subscriber.timezone
    subscriber.frequency = how_often if frequency else subscriber.frequency
    subscriber.categories = chosen
    session.flush()
    consent.record(
        session,
        subscriber.id,
        source=source,
        categories=[c.slug for c in chosen],
        now=now,
        version=consent_version,
    )
    if confirmed:
        confirm(session, subscriber, now=now, by="admin")
    session.flush()
    return subscriber


def _refuse_confirmed(address: str, why: str) -> None:
    raise SubscriberError(
        f"{address} is {why}: only its owner can subscribe it again; "
        "add it without --confirmed to send them a confirmation email"
    )


def confirm(
    session: Session, subscriber: Subscriber, *, now: dt.datetime, by: str = "admin"
) -> bool:
    """Make a pending subscriber active from ``now``; False if already active.

    ``by`` is ``link`` when the owner used the confirmation email: only that confirms an
    address that unsubscribed or is suppressed (they just received mail there and asked).
    """
    if subscriber.status == Status.ACTIVE:
        return False
    listed = suppression.suppression_for(session, subscriber.email_hash)
    reason = listed.reason if listed else None
    refused = rules.confirm_refusal(subscriber.status, subscriber.unsubscribed_at, reason, by=by)
    if refused:
        raise SubscriberError(
            f"{subscriber.email} {refused}: only its owner can confirm it, "
            "with the link in the confirmation email"
        )
    if listed is not None:
        suppression.lift(session, subscriber.email_hash)
    subscriber.status = Status.ACTIVE.value
    subscriber.confirmed_at = now
    subscriber.active_since = now
    subscriber.unsubscribed_at = None
    consent.confirm_latest(session, subscriber.id, now=now, by=by)
    session.execute(delete(Confirmation).where(Confirmation.subscriber_id == subscriber.id))
    return True


def open_confirmation(
    session: Session,
    subscriber: Subscriber,
    *,
    now: dt.datetime,
    message_id: str | None = None,
    ttl: dt.timedelta = CONFIRM_TTL,
) -> str:
    """A new confirmation token for a pending subscriber (replacing any earlier one).
    Only its sha256 is stored: put the returned token in the email, then forget it."""
    if subscriber.status != Status.PENDING:
        raise SubscriberError(f"{subscriber.email} is {subscriber.status}, not pending")
    token = new_token()
    store_confirmations(session, [(subscriber.id, token, message_id)], now=now, ttl=ttl)
    return token


def store_confirmations(
    session: Session,
    sent: Sequence[tuple[int, str, str | None]],
    *,
    now: dt.datetime,
    ttl: dt.timedelta = CONFIRM_TTL,
) -> int:
    """Record confirmation emails just sent as (subscriber id, token, Message-ID), replacing
    earlier requests; subscribers no longer pending are left out. Returns how many."""
    for _, token, _ in sent:
        if not looks_like_token(token):
            raise SubscriberError("a confirmation token must be 43 URL-safe characters")
    ids = [subscriber_id for subscriber_id, _, _ in sent]
    pending = set(
        session.scalars(
            select(Subscriber.id).where(
                Subscriber.id.in_(ids), Subscriber.status == Status.PENDING.value
            )
        )
    )
    session.execute(delete(Confirmation).where(Confirmation.subscriber_id.in_(ids)))
    rows = [
        {
            "subscriber_id": subscriber_id,
            "token_hash": token_hash(token),
            "created_at": now,
            "expires_at": now + ttl,
            "message_id": message_id,
        }
        for subscriber_id, token, message_id in sent
        if subscriber_id in pending
    ]
    if rows:
        session.execute(insert(Confirmation), rows)
    return len(rows)


def confirm_with_token(session: Session, token: str, *, now: dt.datetime) -> Subscriber:
    """Confirm the subscriber whose confirmation email carried ``token`` (single use)."""
    invalid = SubscriberError("this confirmation link is not valid (it may have been used)")
    if not looks_like_token(token):
        raise invalid
    digest = token_hash(token)
    row = session.scalar(select(Confirmation).where(Confirmation.token_hash == digest))
    if row is None or not tokens_equal(row.token_hash, digest):
        raise invalid
    if row.expires_at <= now:
        raise SubscriberError(
            f"this confirmation link expired on {row.expires_at:%Y-%m-%d}: please sign up again"
        )
    subscriber = session.get(Subscriber, row.subscriber_id)
    assert subscriber is not None
    confirm(session, subscriber, now=now, by="link")
    return subscriber


def unsubscribe(session: Session, subscriber: Subscriber, *, now: dt.datetime) -> bool:
    """Unsubscribe from everything. Returns False if there was nothing to do."""
    if subscriber.status in (Status.UNSUBSCRIBED, *SUPPRESSED):
        return False
    subscriber.status = Status.UNSUBSCRIBED.value
    subscriber.unsubscribed_at = now
    session.execute(delete(Confirmation).where(Confirmation.subscriber_id == subscriber.id))
    return True


def unsubscribe_category(
    session: Session, subscriber: Subscriber, category: str, *, now: dt.datetime
) -> bool:
    """Leave one category; leaving the last one unsubscribes. False if not subscribed to it."""
    (leaving,) = resolve_categories(session, [category])
    if leaving not in subscriber.categories:
        return False
    remaining = [c for c in subscriber.categories if c.id != leaving.id]
    if not remaining:
        return unsubscribe(session, subscriber, now=now)
    subscriber.categories = remaining
    _record_change(session, subscriber, now=now)
    return True


def set_categories(
    session: Session, subscriber: Subscriber, categories: Sequence[str], *, now: dt.datetime
) -> None:
    """Replace the subscriber's categories (their own choice, e.g. on the preferences page)."""
    chosen = resolve_categories(session, categories)
    if not chosen:
        raise SubscriberError("choose at least one category")
    subscriber.categories = chosen
    _record_change(session, subscriber, now=now)


def resubscribe(
    session: Session,
    subscriber: Subscriber,
    *,
    now: dt.datetime,
    categories: Sequence[str] | None = None,
) -> None:
    """The owner, through their own preferences link, joins again (active at once).
    Admins use :func:`add_subscriber`, which asks the owner to confirm by email."""
    if categories is not None:
        chosen = resolve_categories(session, categories)
        if not chosen:
            raise SubscriberError("choose at least one category")
        subscriber.categories = chosen
    if subscriber.status != Status.ACTIVE:
        suppression.lift(session, subscriber.email_hash)
        subscriber.status = Status.ACTIVE.value
        subscriber.active_since = now
        subscriber.unsubscribed_at = None
    _record_change(session, subscriber, now=now)


def _record_change(session: Session, subscriber: Subscriber, *, now: dt.datetime) -> None:
    active = subscriber.status == Status.ACTIVE
    consent.record(
        session,
        subscriber.id,
        source="form",
        categories=[c.slug for c in subscriber.categories],
        now=now,
        confirmed_by="preferences" if active else None,
    )


def set_preferences(
    subscriber: Subscriber, *, timezone: str | None = None, frequency: str | None = None
) -> None:
    """Change the time zone (IANA name; "" for the list's) and/or the frequency."""
    if timezone is not None:
        subscriber.timezone = validate_timezone(timezone or None)
    if frequency is not None:
        subscriber.frequency = validate_frequency(frequency)


def rotate_token(session: Session, subscriber: Subscriber) -> None:
    """A new unsubscribe/preferences token: links in emails sent earlier stop working."""
    subscriber.token = new_token()
    session.flush()


def erase(session: Session, subscriber: Subscriber, *, now: dt.datetime) -> None:
    """Delete the subscriber's personal data (subscriber row, categories, consent records,
    confirmation) and keep only the salted hash of the address on the suppression list.
    Ledger rows stay, their subscriber set to NULL by the database."""
    reason = subscriber.status if subscriber.status in SUPPRESSED else suppression.Reason.ERASED
    suppression.suppress(session, subscriber.email_hash, reason, now=now)
    session.delete(subscriber)
    session.flush()


def category_subscriber_counts(session: Session) -> dict[int, int]:
    """Active subscribers per category id."""
    rows = session.execute(
        select(Subscription.category_id, func.count())
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(Subscriber.status == Status.ACTIVE.value)
        .group_by(Subscription.category_id)
    )
    return {category_id: count for category_id, count in rows.all()}
