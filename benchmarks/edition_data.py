"""Synthetic data for the send benchmark: a week of summaries and N subscribers, fast.

Categories and summary texts come from the shipped sample data (digest/data/demo.json): its 36
summaries plus 4 follow-ups make a week of 40, published between the previous edition's
cutoff and this one's, so a digest carries 4-15 cards and weighs 40-90 KB. Subscribers go in
with bulk Core inserts (executemany, 10,000 rows a statement), all active, each with a
``secrets.token_urlsafe(32)`` token, a unique address and 1-8 categories drawn so that small
sets of popular categories are common and every one of the 255 possible sets can occur.
95 % of them were sent last week's edition (a ``sent`` ledger row, as in a steady week);
5 % joined during the week and get their first digest.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.orm import Session

from digest.planning.selection import edition_key
from digest.sources.demo import demo_data
from digest.sources.store import SummaryRecord, ensure_category, slugify, upsert_summary
from digest.store import schema
from digest.store.db import make_engine, session_factory, transaction
from digest.store.models import Delivery, DeliveryStatus, Edition, EditionStatus, Variant
from subscribers.instance import token_key
from subscribers.models import Status, Subscriber, Subscription
from subscribers.suppression import email_hash, email_salt
from subscribers.tokens import token_digest

#: Monday 4 March 2030, 08:00 UTC (edition 2030-W10): far from the weeks the tests use.
NOW = dt.datetime(2030, 3, 4, 8, 0, tzinfo=dt.UTC)
WEEK = dt.timedelta(days=7)
PREVIOUS_CUTOFF = NOW - WEEK
SUMMARIES = 40
CHUNK = 10_000
NEW_READERS = 0.05  # joined this week: no previous edition, a window of their own
NAMED_READERS = 0.6
DOMAINS = ("example.org", "example.net", "example.com", "mail.example.org")
#: How many categories readers choose (relative weights).
SET_SIZES = {1: 30, 2: 30, 3: 20, 4: 10, 5: 5, 6: 3, 7: 1, 8: 1}
#: Popularity of the categories, most popular first.
POPULARITY = (25, 18, 15, 12, 10, 8, 7, 5)
#: Categories of the 4 follow-up summaries (the demo's smallest categories get more).
FOLLOW_UP_CATEGORIES = (
    ("neuromodulation", "regenerative-medicine"),
    ("neuromodulation", "regenerative-medicine"),
    ("neuromodulation", "regenerative-medicine"),
    ("neuromodulation", "assistive-technology"),
)

Row = dict[str, Any]


@dataclass(frozen=True)
class Generated:
    subscribers: int
    subscriptions: int
    category_sets: int  # distinct sets chosen: the number of variants to expect
    returning: int  # readers with a delivery in last week's edition
    seconds: float


def week_of_summaries() -> list[SummaryRecord]:
    """The demo's summaries and 4 follow-ups, published evenly over the week before NOW."""
    items = demo_data()["summaries"]
    follow_ups = [
        {
            **{k: v for k, v in item.items() if k not in ("doi", "pmid")},
            "title": f"Follow-up: {item['title']}",
            "url": f"{item['url']}-follow-up",
            "categories": list(categories),
        }
        for item, categories in zip(items, FOLLOW_UP_CATEGORIES, strict=False)
    ]
    skip = {"title", "url", "categories", "published_days_ago"}
    return [
        SummaryRecord(
            title=item["title"],
            url=item["url"],
            published_at=NOW - WEEK * (index + 0.5) / SUMMARIES,
            categories=tuple(item["categories"]),
            fields={k: v for k, v in item.items() if k not in skip},
        )
        for index, item in enumerate([*items, *follow_ups][:SUMMARIES])
    ]


def load_week(session: Session) -> list[int]:
    """Categories and summaries; returns the category ids (in the order of POPULARITY)."""
    categories = [ensure_category(session, c["slug"], c["name"]) for c in demo_data()["categories"]]
    for record in week_of_summaries():
        upsert_summary(session, record, now=record.published_at)
    return [c.id for c in categories]


def category_sets(category_ids: Sequence[int]) -> tuple[list[tuple[int, ...]], list[float]]:
    """Every non-empty set of categories with its cumulative weight: P(size) from SET_SIZES,
    then within a size proportional to the product of the categories' popularity."""
    popularity = dict(zip(category_ids, POPULARITY, strict=True))
    sets: list[tuple[int, ...]] = []
    weights: list[float] = []
    for size, size_weight in SET_SIZES.items():
        of_size = list(itertools.combinations(category_ids, size))
        products = [math.prod(popularity[c] for c in chosen) for chosen in of_size]
        total = sum(products)
        sets.extend(of_size)
        weights.extend(size_weight * p / total for p in products)
    return sets, list(itertools.accumulate(weights))


def last_week(session: Session) -> tuple[int, int]:
    """Last week's edition, complete, with one variant; returns their ids."""
    edition = Edition(
        key=edition_key(PREVIOUS_CUTOFF, dt.UTC),
        cutoff=PREVIOUS_CUTOFF,
        status=EditionStatus.COMPLETE.value,
        created_at=PREVIOUS_CUTOFF,
        completed_at=PREVIOUS_CUTOFF + dt.timedelta(hours=1),
    )
    session.add(edition)
    session.flush()
    variant = Variant(
        edition_id=edition.id,
        number=1,
        category_ids=[],
        summary_ids=[],
        web_id=secrets.token_urlsafe(24),
    )
    session.add(variant)
    session.flush()
    return edition.id, variant.id


class Readers:
    """Rows for subscribers, their subscriptions and last week's deliveries."""

    def __init__(
        self, rng: random.Random, salt: bytes, category_ids: Sequence[int], token_key: bytes = b""
    ) -> None:
        self.token_key = token_key
        self.rng = rng
        self.salt = salt
        self.sets, self.weights = category_sets(category_ids)
        self.names = [p["name"] for p in demo_data()["subscribers"] if p.get("name")]
        self.chosen_sets: set[tuple[int, ...]] = set()

    def subscriber(self, subscriber_id: int) -> Row:
        rng = self.rng
        name = rng.choice(self.names) if rng.random() < NAMED_READERS else None
        local = slugify(name) if name else "reader"
        email = f"{local}.{subscriber_id}@{DOMAINS[subscriber_id % len(DOMAINS)]}"
        if rng.random() < NEW_READERS:
            joined = NOW - dt.timedelta(days=rng.uniform(0.1, 6.9))
        else:
            joined = PREVIOUS_CUTOFF - dt.timedelta(days=rng.uniform(1, 720))
        return {
            "id": subscriber_id,
            "email": email,
            "email_key": email.lower(),
            "email_hash": email_hash(self.salt, email),
            "name": name,
            "status": Status.ACTIVE.value,
            "token": (token := secrets.token_urlsafe(32)),
            "token_hash": token_digest(self.token_key, token),
            "created_at": joined,
            "confirmed_at": joined,
            "active_since": joined,
            "frequency": "weekly",
        }

    def subscriptions(self, subscriber_ids: Sequence[int]) -> list[Row]:
        chosen = self.rng.choices(self.sets, cum_weights=self.weights, k=len(subscriber_ids))
        self.chosen_sets.update(chosen)
        return [
            {"subscriber_id": subscriber_id, "category_id": category_id}
            for subscriber_id, categories in zip(subscriber_ids, chosen, strict=True)
            for category_id in categories
        ]


def delivered_last_week(readers: Sequence[Row], edition_id: int, variant_id: int) -> list[Row]:
    sent_at = PREVIOUS_CUTOFF + dt.timedelta(minutes=30)
    return [
        {
            "edition_id": edition_id,
            "subscriber_id": reader["id"],
            "variant_id": variant_id,
            "status": DeliveryStatus.SENT.value,
            "message_id": f"<digest.previous.{reader['id']:x}@example.org>",
            "attempts": 1,
            "detail": "250 2.0.0 Ok: queued",
            "created_at": PREVIOUS_CUTOFF,
            "updated_at": sent_at,
            "sent_at": sent_at,
        }
        for reader in readers
        if reader["active_since"] < PREVIOUS_CUTOFF
    ]


def insert_readers(engine: Engine, readers: Readers, count: int, previous: tuple[int, int]) -> int:
    """Bulk-insert ``count`` subscribers in chunks; returns how many got last week's edition."""
    returning = 0
    for first in range(1, count + 1, CHUNK):
        ids = range(first, min(first + CHUNK, count + 1))
        rows = [readers.subscriber(i) for i in ids]
        deliveries = delivered_last_week(rows, *previous)
        with engine.begin() as conn:
            conn.execute(insert(Subscriber.__table__), rows)
            conn.execute(insert(Subscription.__table__), readers.subscriptions(ids))
            if deliveries:
                conn.execute(insert(Delivery.__table__), deliveries)
        returning += len(deliveries)
    return returning


def generate(url: str, subscribers: int, seed: int = 7) -> Generated:
    """Migrate an empty database at ``url`` and fill it."""
    started = time.perf_counter()
    engine = make_engine(url)
    schema.upgrade(engine)
    with transaction(session_factory(engine)) as session:
        category_ids = load_week(session)
        salt = email_salt(session)
        key = token_key(session)
        previous = last_week(session)
    readers = Readers(random.Random(seed), salt, category_ids, key)
    returning = insert_readers(engine, readers, subscribers, previous)
    with engine.begin() as conn:
        subscriptions = conn.scalar(select(func.count()).select_from(Subscription))
        if engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE"))  # as autovacuum would have, in a database in use
    engine.dispose()
    return Generated(
        subscribers=subscribers,
        subscriptions=int(subscriptions or 0),
        category_sets=len(readers.chosen_sets),
        returning=returning,
        seconds=time.perf_counter() - started,
    )
