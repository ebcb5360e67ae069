"""The subscriber service: the one place that changes subscribers.

Used by the CLI, the web pages and the demo. Functions take an open session and never
commit: the caller owns the transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.db import Category
from digest.errors import SubscriberError
from subscribers.models import Status, Subscriber, Subscription
from subscribers.tokens import looks_like_token, new_token, tokens_equal


def normalize_email(address: str) -> str:
    """Validate the syntax (no DNS) and return the normalised address."""
    try:
        return validate_email(address.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise SubscriberError(f"{address!r} is not a valid email address: {exc}") from None


def clean_name(name: str | None) -> str | None:
    """A display name on one line (no CR/LF can ever reach a header), or None."""
    if name is None:
        return None
    cleaned = " ".join(name.split())
    return cleaned[:200] or None


def resolve_categories(session: Session, wanted: Iterable[str]) -> list[Category]:
    """Categories by slug or name, case-insensitively; an unknown one is an error."""
    found: list[Category] = []
    for label in wanted:
        key = label.strip().lower()
        category = session.scalar(
            select(Category).where(
                (func.lower(Category.slug) == key) | (func.lower(Category.name) == key)
            )
        )
        if category is None:
            raise SubscriberError(f"unknown category {label!r} (see `digest categories list`)")
        if category not in found:
            found.append(category)
    return found


def find_by_email(session: Session, address: str) -> Subscriber | None:
    return session.scalar(select(Subscriber).where(Subscriber.email_key == address.strip().lower()))


def find_by_token(session: Session, token: str) -> Subscriber | None:
    """The subscriber owning ``token``, or None for an unknown or malformed token."""
    if not looks_like_token(token):
        return None
    subscriber = session.scalar(select(Subscriber).where(Subscriber.token == token))
    if subscriber is None or not tokens_equal(subscriber.token, token):
        return None
    return subscriber


def add_subscriber(
    session: Session,
    email: str,
    categories: Sequence[str],
    *,
    now: dt.datetime,
    name: str | None = None,
    confirmed: bool = False,
) -> Subscriber:
    """Create a subscriber (pending unless ``confirmed``) with the given categories."""
    address = normalize_email(email)
    if find_by_email(session, address) is not None:
        raise SubscriberError(f"{address} is already a subscriber")
    chosen = resolve_categories(session, categories)
    if not chosen:
        raise SubscriberError("choose at least one category")
    subscriber = Subscriber(
        email=address,
        email_key=address.lower(),
        name=clean_name(name),
        status=Status.ACTIVE.value if confirmed else Status.PENDING.value,
        token=new_token(),
        created_at=now,
        confirmed_at=now if confirmed else None,
        active_since=now if confirmed else None,
    )
    subscriber.categories = chosen
    session.add(subscriber)
    session.flush()
    return subscriber


def confirm(session: Session, subscriber: Subscriber, *, now: dt.datetime) -> None:
    """Make a pending (or unsubscribed) subscriber active from ``now``."""
    if subscriber.status in (Status.BOUNCED, Status.COMPLAINED):
        raise SubscriberError("this address is suppressed and cannot be confirmed")
    if subscriber.status != Status.ACTIVE:
        subscriber.status = Status.ACTIVE.value
        subscriber.confirmed_at = now
        subscriber.active_since = now
        subscriber.unsubscribed_at = None


def unsubscribe(session: Session, subscriber: Subscriber, *, now: dt.datetime) -> bool:
    """Unsubscribe from everything. Returns False if there was nothing to do."""
    if subscriber.status == Status.UNSUBSCRIBED:
        return False
    subscriber.status = Status.UNSUBSCRIBED.value
    subscriber.unsubscribed_at = now
    return True


def set_categories(session: Session, subscriber: Subscriber, categories: Sequence[str]) -> None:
    chosen = resolve_categories(session, categories)
    if not chosen:
        raise SubscriberError("choose at least one category")
    subscriber.categories = chosen


def category_subscriber_counts(session: Session) -> dict[int, int]:
    """Active subscribers per category id."""
    rows = session.execute(
        select(Subscription.category_id, func.count())
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(Subscriber.status == Status.ACTIVE.value)
        .group_by(Subscription.category_id)
    )
    return {category_id: count for category_id, count in rows.all()}
