"""The admin console's list: one subscriber at a time, found by address, and counts.

No function here returns addresses of people nobody asked about: :func:`find` needs the
whole address or a prefix of at least :data:`MIN_PREFIX` characters and returns at most
:data:`MAX_FOUND` people, so the list cannot be read out letter by letter by someone
looking over an admin's shoulder or holding a stolen session. The suppression list holds
only salted hashes: it is searched by a whole address and otherwise only counted.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.errors import DigestError
from digest.store.db import Category
from digest.store.models import BounceEvent, Delivery, Edition
from subscribers import consent
from subscribers.models import (
    ImportRecord,
    InstanceSecret,
    Status,
    Subscriber,
    Subscription,
    Suppression,
)
from subscribers.suppression import SALT_NAME, email_hash

#: The shortest prefix searched for: shorter ones would match too many people.
MIN_PREFIX = 4
#: At most this many people are shown for one search.
MAX_FOUND = 10
#: The latest deliveries and bounce events shown per person.
MAX_ROWS = 52
MAX_QUERY = 320


class SearchRefused(DigestError):
    """A search the console does not run (too short, too long, not an address)."""


@dataclass(frozen=True, slots=True)
class Query:
    text: str  # lower case, stripped
    exact: bool  # a whole address: matched exactly; otherwise a prefix


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    edition: str
    part: int
    status: str
    attempts: int
    at: dt.datetime  # sent, or last changed
    detail: str


@dataclass(frozen=True, slots=True)
class EventRow:
    received_at: dt.datetime
    kind: str  # hard, soft, policy, complaint
    status: str
    edition: str
    detail: str


@dataclass(frozen=True, slots=True)
class Person:
    """One subscriber as the console shows them: what they chose and what the ledger and
    bounce processing recorded, nothing else."""

    id: int
    email: str
    name: str | None
    status: str
    topics: tuple[str, ...]
    frequency: str
    timezone: str | None
    created_at: dt.datetime
    confirmed_at: dt.datetime | None
    active_since: dt.datetime | None
    unsubscribed_at: dt.datetime | None
    paused_until: dt.datetime | None
    consents: tuple[consent.ConsentView, ...]
    deliveries: tuple[DeliveryRow, ...]
    events: tuple[EventRow, ...]
    suppressed: str | None  # why the address is on the suppression list


@dataclass(frozen=True, slots=True)
class Found:
    query: Query
    people: tuple[Person, ...]
    more: bool  # more than MAX_FOUND matched: the admin should type more


@dataclass(frozen=True, slots=True)
class TopicCount:
    name: str
    slug: str
    active: int
    pending: int


@dataclass(frozen=True, slots=True)
class Listed:
    """The answer to "is this address on the suppression list?"."""

    address: str
    reason: str | None
    since: dt.datetime | None


@dataclass(frozen=True, slots=True)
class ImportView:
    at: dt.datetime
    source: str
    confirmed: bool
    rows: int
    created: dict[str, int]
    merged: int
    unchanged: int
    duplicates: int
    kept_out: int
    invalid: int

    @property
    def created_total(self) -> int:
        return sum(self.created.values())


def parse_query(text: str) -> Query:
    """The search ``text`` as run, or :class:`SearchRefused` saying why not."""
    cleaned = text.strip().lower()
    if not cleaned:
        raise SearchRefused("type an address, or at least its first 4 characters")
    if len(cleaned) > MAX_QUERY or any(c.isspace() or ord(c) < 32 for c in cleaned):
        raise SearchRefused("an address has no spaces and at most 320 characters")
    if "@" in cleaned and cleaned.rpartition("@")[2]:
        return Query(cleaned, exact=True)
    if len(cleaned) < MIN_PREFIX:
        raise SearchRefused(
            f"type at least {MIN_PREFIX} characters of the address (shorter prefixes would "
            "show too many people's addresses)"
        )
    return Query(cleaned, exact=False)


def find(session: Session, query: Query, *, limit: int = MAX_FOUND) -> Found:
    """The subscribers whose address is ``query`` (or starts with it), in full."""
    statement = select(Subscriber)
    if query.exact:
        statement = statement.where(Subscriber.email_key == query.text)
    else:
        escaped = query.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        statement = statement.where(Subscriber.email_key.like(escaped + "%", escape="\\"))
    rows = session.scalars(statement.order_by(Subscriber.email_key).limit(limit + 1)).all()
    people = tuple(_person(session, row) for row in rows[:limit])
    return Found(query, people, more=len(rows) > limit)


def _person(session: Session, subscriber: Subscriber) -> Person:
    deliveries = session.execute(
        select(Edition.key, Delivery.part, Delivery.status, Delivery.attempts,
               func.coalesce(Delivery.sent_at, Delivery.updated_at), Delivery.detail)
        .join(Edition, Edition.id == Delivery.edition_id)
        .where(Delivery.subscriber_id == subscriber.id)
        .order_by(Delivery.id.desc())
        .limit(MAX_ROWS)
    ).all()  # fmt: skip
    events = session.execute(
        select(BounceEvent.received_at, BounceEvent.kind, BounceEvent.status,
               Edition.key, BounceEvent.detail)
        .outerjoin(Edition, Edition.id == BounceEvent.edition_id)
        .where(BounceEvent.subscriber_id == subscriber.id)
        .order_by(BounceEvent.received_at.desc(), BounceEvent.id.desc())
        .limit(MAX_ROWS)
    ).all()  # fmt: skip
    listed = session.scalar(
        select(Suppression.reason).where(Suppression.email_hash == subscriber.email_hash)
    )
    return Person(
        id=subscriber.id,
        email=subscriber.email,
        name=subscriber.name,
        status=subscriber.status,
        topics=tuple(c.name for c in subscriber.categories),
        frequency=subscriber.frequency,
        timezone=subscriber.timezone,
        created_at=subscriber.created_at,
        confirmed_at=subscriber.confirmed_at,
        active_since=subscriber.active_since,
        unsubscribed_at=subscriber.unsubscribed_at,
        paused_until=subscriber.paused_until,
        consents=tuple(consent.history(session, subscriber.id)),
        deliveries=tuple(
            DeliveryRow(key, part, status, attempts, at, detail or "")
            for key, part, status, attempts, at, detail in deliveries
        ),
        events=tuple(
            EventRow(at, kind, status or "", key or "", detail or "")
            for at, kind, status, key, detail in events
        ),
        suppressed=listed,
    )


def status_counts(session: Session) -> dict[str, int]:
    """Subscribers per status, every status named (0 when none)."""
    rows = session.execute(select(Subscriber.status, func.count()).group_by(Subscriber.status))
    counts = Counter({status.value: 0 for status in Status})
    counts.update({status: int(count) for status, count in rows})
    return dict(counts)


def topic_counts(session: Session) -> list[TopicCount]:
    """Active and pending subscribers per topic, every topic listed (by name)."""
    rows = session.execute(
        select(Subscription.category_id, Subscriber.status, func.count())
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(Subscriber.status.in_((Status.ACTIVE.value, Status.PENDING.value)))
        .group_by(Subscription.category_id, Subscriber.status)
    )
    counts: dict[tuple[int, str], int] = {(c, s): int(n) for c, s, n in rows}
    categories = session.scalars(select(Category).order_by(Category.name)).all()
    return [
        TopicCount(
            c.name,
            c.slug,
            counts.get((c.id, Status.ACTIVE.value), 0),
            counts.get((c.id, Status.PENDING.value), 0),
        )
        for c in categories
    ]


def suppression_counts(session: Session) -> dict[str, int]:
    """Addresses on the suppression list per reason (bounced, complained, erased)."""
    rows = session.execute(
        select(Suppression.reason, func.count())
        .group_by(Suppression.reason)
        .order_by(Suppression.reason)
    )
    return {reason: int(count) for reason, count in rows}


def suppression_lookup(session: Session, address: str) -> Listed:
    """Whether ``address`` (whole) is on the suppression list. Reads the salt without
    making one: a database without it has an empty list."""
    cleaned = address.strip().lower()
    if "@" not in cleaned or len(cleaned) > MAX_QUERY or any(c.isspace() for c in cleaned):
        raise SearchRefused("the suppression list is searched by a whole address")
    salt = session.scalar(select(InstanceSecret.value).where(InstanceSecret.name == SALT_NAME))
    if salt is None:
        return Listed(cleaned, None, None)
    row = session.scalar(
        select(Suppression).where(
            Suppression.email_hash == email_hash(bytes.fromhex(salt), cleaned)
        )
    )
    return Listed(cleaned, row.reason if row else None, row.created_at if row else None)


def recent_imports(session: Session, limit: int = 20) -> list[ImportView]:
    """The latest imports written, newest first."""
    rows = session.scalars(
        select(ImportRecord).order_by(ImportRecord.created_at.desc(), ImportRecord.id.desc())
        .limit(limit)
    )  # fmt: skip
    return [
        ImportView(
            r.created_at, r.source, r.confirmed, r.rows, dict(r.created), r.merged,
            r.unchanged, r.duplicates, r.kept_out, r.invalid,
        )
        for r in rows
    ]  # fmt: skip
