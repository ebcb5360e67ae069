"""Plan an edition: pick each reader's summaries and record one queued ledger row per reader.

Readers are streamed in batches by id (never all in memory); each batch is one transaction,
so an interrupted plan resumes where it stopped. Readers with the same categories and the
same summaries share a :class:`~digest.models.Variant`.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import exists, func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings
from digest.db import Category, transaction
from digest.ledger import DELIVERIES, pending_by_variant
from digest.message import new_message_id
from digest.models import Delivery, DeliveryStatus, Edition, Summary, Variant, summary_categories
from digest.schedule import Schedule, reader_due
from digest.selection import (
    Catalog,
    ItemRef,
    Reader,
    VariantKey,
    select_items,
    variant_key,
    wants_edition,
)
from digest.webid import web_id_for, web_salt
from subscribers.models import Status, Subscriber, Subscription, Suppression

READER_BATCH = 5000
#: Ledger rows queued by one plan after which PostgreSQL's statistics are refreshed.
ANALYZE_AFTER = 10_000


@dataclass
class PlanResult:
    queued: int = 0  # ledger rows created by this plan
    nothing_new: int = 0  # active readers with no new summary: no email
    not_due: int = 0  # paused, monthly readers between months, or local time not yet come
    #: recipients per variant key planned by this run
    per_variant: Counter[VariantKey] = field(default_factory=Counter)


def load_catalog(session: Session, cutoff: dt.datetime) -> Catalog:
    """Every summary published up to ``cutoff``, as light references."""
    categories: dict[int, set[int]] = {}
    for summary_id, category_id in session.execute(
        select(summary_categories.c.summary_id, summary_categories.c.category_id)
    ):
        categories.setdefault(summary_id, set()).add(category_id)
    rows = session.execute(
        select(Summary.id, Summary.published_at).where(Summary.published_at <= cutoff)
    )
    return Catalog(
        (ItemRef(sid, published, frozenset(categories.get(sid, ()))) for sid, published in rows),
        cutoff,
    )


def iter_readers(
    session: Session, edition: Edition, *, batch: int = READER_BATCH
) -> Iterator[list[Reader]]:
    """Active readers not yet planned in ``edition``, in batches ordered by id; an address on
    the suppression list is never a reader, whatever its status says."""
    after = 0
    while True:
        rows = session.execute(
            select(
                Subscriber.id,
                Subscriber.active_since,
                Subscriber.frequency,
                Subscriber.paused_until,
                Subscriber.timezone,
            )
            .where(
                Subscriber.status == Status.ACTIVE.value,
                Subscriber.active_since.is_not(None),
                Subscriber.active_since <= edition.cutoff,
                ~exists().where(Suppression.email_hash == Subscriber.email_hash),
                Subscriber.id > after,
            )
            .order_by(Subscriber.id)
            .limit(batch)
        ).all()
        if not rows:
            return
        first, after = rows[0][0], rows[-1][0]
        # The batch's id range, not an IN list of its ids: one index range scan per query
        # (rows of inactive subscribers in the range are read and ignored).
        in_range = (first, after)
        planned = set(
            session.scalars(
                select(Delivery.subscriber_id).where(
                    Delivery.edition_id == edition.id,
                    Delivery.subscriber_id.between(*in_range),
                )
            )
        )
        chosen: dict[int, set[int]] = {}
        for subscriber_id, category_id in session.execute(
            select(Subscription.subscriber_id, Subscription.category_id).where(
                Subscription.subscriber_id.between(*in_range)
            )
        ):
            chosen.setdefault(subscriber_id, set()).add(category_id)
        last_cutoff = dict(
            session.execute(
                select(Delivery.subscriber_id, func.max(Edition.cutoff))
                .join(Edition, Edition.id == Delivery.edition_id)
                .where(
                    Delivery.subscriber_id.between(*in_range),
                    Delivery.status == DeliveryStatus.SENT.value,
                    Edition.id != edition.id,
                )
                .group_by(Delivery.subscriber_id)
            ).all()
        )
        yield [
            Reader(
                subscriber_id=subscriber_id,
                category_ids=frozenset(chosen.get(subscriber_id, ())),
                active_since=active_since,
                last_cutoff=last_cutoff.get(subscriber_id),
                frequency=frequency,
                paused_until=paused_until,
                timezone=timezone,
            )
            for subscriber_id, active_since, frequency, paused_until, timezone in rows
            if subscriber_id not in planned and active_since is not None
        ]


def plan_edition(
    factory: sessionmaker[Session],
    settings: Settings,
    edition: Edition,
    *,
    now: dt.datetime,
    dry_run: bool = False,
) -> PlanResult:
    """Queue a ledger row for every active reader with something new (unless ``dry_run``)."""
    lookback = dt.timedelta(days=settings.lookback_days)
    domain = settings.sender_domain
    schedule = Schedule.from_settings(settings)
    result = PlanResult()
    with factory() as session:
        catalog = load_catalog(session, edition.cutoff)
        variants: dict[VariantKey, int] = {
            (tuple(v.category_ids), tuple(v.summary_ids)): v.id
            for v in session.scalars(select(Variant).where(Variant.edition_id == edition.id))
        }
        numbers = len(variants)
        salt = web_salt(session)
        session.commit()  # end the read transaction; each batch below is its own
        readers = iter_readers(session, edition)
        while True:
            with session.begin():
                batch = next(readers, None)
                if batch is None:
                    break
                rows = []
                for reader in batch:
                    if not wants_edition(
                        reader, edition.cutoff, now, schedule.zone
                    ) or not reader_due(edition.key, schedule, now, reader.timezone):
                        result.not_due += 1
                        continue
                    items = select_items(reader, catalog, lookback)
                    if not items:
                        result.nothing_new += 1
                        continue
                    key = variant_key(reader, items)
                    result.per_variant[key] += 1
                    if dry_run:
                        continue
                    if key not in variants:
                        numbers += 1
                        variant = Variant(
                            edition_id=edition.id,
                            number=numbers,
                            category_ids=list(key[0]),
                            summary_ids=list(key[1]),
                            web_id=web_id_for(salt, edition.key, key),
                        )
                        session.add(variant)
                        session.flush()
                        variants[key] = variant.id
                    rows.append(
                        {
                            "edition_id": edition.id,
                            "subscriber_id": reader.subscriber_id,
                            "variant_id": variants[key],
                            "status": DeliveryStatus.QUEUED.value,
                            "message_id": new_message_id(edition.key, domain),
                            "attempts": 0,
                            "created_at": now,
                            "updated_at": now,
                        }
                    )
                if rows:  # a Core executemany: the ORM's bulk path costs twice as much
                    session.execute(insert(DELIVERIES), rows)
                    result.queued += len(rows)
        if result.queued >= ANALYZE_AFTER and session.get_bind().dialect.name == "postgresql":
            # Fresh statistics, or the claim query sorts every queued row for each batch
            # until autovacuum gets round to it (quadratic in the edition's size).
            with session.begin():
                session.execute(text("ANALYZE deliveries"))
    return result


def dry_plan(
    factory: sessionmaker[Session], settings: Settings, edition: Edition, *, now: dt.datetime
) -> tuple[PlanResult, Counter[VariantKey]]:
    """What sending ``edition`` now would do, writing nothing: the plan, and recipients per
    variant counting rows already queued but not yet sent."""
    plan = plan_edition(factory, settings, edition, now=now, dry_run=True)
    counts: Counter[VariantKey] = Counter(plan.per_variant)
    if edition.id is not None:
        with factory() as session:
            for variant, waiting in pending_by_variant(session, edition.id):
                counts[variant.key] += waiting
    return plan, counts


def ordered_categories(session: Session) -> list[Category]:
    """All categories in the order sections appear in an email (by name)."""
    return list(session.scalars(select(Category).order_by(Category.name, Category.id)))


def get_or_create_edition(
    factory: sessionmaker[Session], key: str, *, now: dt.datetime, create: bool = True
) -> tuple[Edition | None, bool]:
    """The edition ``key``; created with ``cutoff = now`` if it does not exist yet."""
    with factory() as session:
        edition = session.scalar(select(Edition).where(Edition.key == key))
        if edition is not None or not create:
            return edition, False
    try:
        with transaction(factory) as session:
            edition = Edition(key=key, cutoff=now, created_at=now)
            session.add(edition)
        return edition, True
    except IntegrityError:  # another process created it a moment ago
        with factory() as session:
            return session.scalar(select(Edition).where(Edition.key == key)), False
