"""Plan an edition: pick each reader's summaries and record one queued ledger row per reader.

Readers are streamed in batches by id (never all in memory); each batch is one transaction,
so an interrupted plan resumes where it stopped. Readers with the same categories and the
same summaries share a :class:`~digest.store.models.Variant`.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sqlalchemy import bindparam, exists, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings
from digest.delivery.ledger import DELIVERIES, SUBSCRIBERS, pending_by_variant
from digest.planning.ids import MESSAGE_IDS
from digest.planning.notices import owed_notices, record_notices
from digest.planning.readers import reader_subqueries
from digest.planning.selection import (
    Catalog,
    ItemRef,
    Reader,
    VariantKey,
    select_items,
    variant_key,
    wants_edition,
)
from digest.planning.topups import find_topups
from digest.planning.webid import web_id_for, web_salt
from digest.planning.when import Schedule, is_current, reader_due
from digest.sources.corrections import RETRACTED
from digest.store.db import Category, driver_time, insert_many, transaction, without_jit
from digest.store.models import (
    DeliveryStatus,
    Edition,
    EditionStatus,
    Summary,
    Variant,
    summary_categories,
)
from subscribers.models import Status, Subscriber, Suppression

SUPPRESSIONS = Subscriber.metadata.tables[Suppression.__tablename__]

READER_BATCH = 5000
_PLANNED_COLUMNS = (
    "edition_id",
    "subscriber_id",
    "variant_id",
    "status",
    "message_id",
    "attempts",
    "created_at",
    "updated_at",
)
#: Ledger rows queued by one plan after which PostgreSQL's statistics are refreshed.
ANALYZE_AFTER = 10_000


@dataclass(frozen=True, slots=True)
class EditionRef:
    """An edition as the stages of a run pass it around: a value, not an ORM object."""

    id: int | None  # None: a dry run of an edition that does not exist yet
    key: str
    cutoff: dt.datetime
    status: str

    @classmethod
    def of(cls, edition: Edition) -> EditionRef:
        return cls(edition.id, edition.key, edition.cutoff, edition.status)

    @classmethod
    def unsaved(cls, key: str, now: dt.datetime) -> EditionRef:
        """The edition ``key`` as a dry run now imagines it (cut off now)."""
        return cls(None, key, now, EditionStatus.OPEN.value)


@dataclass
class PlanResult:
    queued: int = 0  # ledger rows created by this plan
    nothing_new: int = 0  # active readers with no new summary: no email
    not_due: int = 0  # paused, monthly readers between months, or local time not yet come
    notices: int = 0  # correction and retraction notices planned
    #: of ``queued``: readers who became active after the edition's cutoff (late readers)
    late: int = 0
    #: of ``queued``: readers who added topics after they were sent this edition, planned
    #: a second message with only the new topics' summaries
    topped_up: int = 0
    #: late readers not planned (nothing new for them yet, or not due): their first digest
    #: is a later edition's
    waiting: int = 0
    #: recipients per variant key planned by this run
    per_variant: Counter[VariantKey] = field(default_factory=Counter)


def load_catalog(session: Session, cutoff: dt.datetime) -> Catalog:
    """Every summary published up to ``cutoff``, as light references."""
    categories: dict[int, set[int]] = {}
    for summary_id, category_id in session.execute(
        select(summary_categories.c.summary_id, summary_categories.c.category_id)
    ):
        categories.setdefault(summary_id, set()).add(category_id)
    rows = session.execute(  # a retracted summary is never sent again
        select(Summary.id, Summary.published_at).where(
            Summary.published_at <= cutoff, Summary.status != RETRACTED
        )
    )
    return Catalog(
        (ItemRef(sid, published, frozenset(categories.get(sid, ()))) for sid, published in rows),
        cutoff,
    )


def iter_readers(
    session: Session,
    edition: EditionRef,
    *,
    batch: int = READER_BATCH,
    joined_by: dt.datetime | None = None,
) -> Iterator[list[Reader]]:
    """Active readers not yet planned in ``edition`` who became active by ``joined_by``
    (default: the edition's cutoff; later while its period lasts, for late readers), in
    batches ordered by id; an address on the suppression list is never a reader, whatever
    its status says.

    One Core query per batch brings each reader with their categories (as text, ``1,4,7``)
    and the cutoff of the last edition they were sent, through correlated subqueries that
    are each one index lookup; a second reads which of the batch's readers are planned
    already (:func:`planned_between`)."""
    categories, last_cutoff = reader_subqueries(edition.id)
    query = (
        select(
            SUBSCRIBERS.c.id,
            SUBSCRIBERS.c.active_since,
            SUBSCRIBERS.c.frequency,
            SUBSCRIBERS.c.paused_until,
            SUBSCRIBERS.c.timezone,
            categories,
            last_cutoff,
        )
        .where(
            SUBSCRIBERS.c.status == Status.ACTIVE.value,
            SUBSCRIBERS.c.active_since.is_not(None),
            SUBSCRIBERS.c.active_since <= max(joined_by or edition.cutoff, edition.cutoff),
            ~exists().where(SUPPRESSIONS.c.email_hash == SUBSCRIBERS.c.email_hash),
            SUBSCRIBERS.c.id > bindparam("after"),
        )
        .order_by(SUBSCRIBERS.c.id)
        .limit(batch)
    )
    category_sets: dict[str | None, frozenset[int]] = {None: frozenset()}
    after = 0
    while True:
        without_jit(session)  # each batch is its own transaction
        rows = session.execute(query, {"after": after}).all()
        if not rows:
            return
        first, after = rows[0][0], rows[-1][0]
        planned = planned_between(session, edition.id, first, after)
        readers = []
        for reader_id, active_since, frequency, paused_until, zone, chosen, last in rows:
            if reader_id in planned:  # by an earlier, interrupted run
                continue
            category_ids = category_sets.get(chosen)
            if category_ids is None:  # one parse per distinct set (255 with 8 categories)
                category_ids = category_sets[chosen] = frozenset(map(int, chosen.split(",")))
            readers.append(
                Reader(reader_id, category_ids, active_since, last, frequency, paused_until, zone)
            )
        yield readers


def planned_between(session: Session, edition_id: int | None, first: int, last: int) -> set[int]:
    """Ids of the readers from ``first`` to ``last`` who have a row in ``edition_id``: one
    range scan of the ledger's ``(edition_id, subscriber_id)`` index per batch of readers.

    Not a correlated ``EXISTS`` in the readers' query: PostgreSQL may run that as a hashed
    subplan, which reads every row of the edition planned so far for each batch (the plan
    of a million readers spent most of its 90 s there, each batch slower than the last);
    and not an anti join either, which compared each reader with every row planned so far
    while the statistics still saw none."""
    if edition_id is None:  # a dry run of an edition not created yet: nothing planned
        return set()
    return set(
        session.scalars(
            select(DELIVERIES.c.subscriber_id).where(
                DELIVERIES.c.edition_id == edition_id,
                DELIVERIES.c.subscriber_id.between(first, last),
            )
        )
    )


def plan_edition(
    factory: sessionmaker[Session],
    settings: Settings,
    edition: EditionRef,
    *,
    now: dt.datetime,
    dry_run: bool = False,
    on_variant: Callable[[VariantKey, str], None] | None = None,
) -> PlanResult:
    """Queue a ledger row for every active reader with something new (unless ``dry_run``).
    ``on_variant`` hears of each variant created (its key and web id), as it is created:
    the run renders it meanwhile (:mod:`digest.edition.prerender`).

    While the edition's period lasts, readers who became active after its cutoff (imported,
    confirmed) are planned too: late readers, counted in :attr:`PlanResult.late`; their
    selection still ends at the cutoff, so the next edition starts where this one ends."""
    lookback = dt.timedelta(days=settings.lookback_days)
    domain = settings.sender_domain
    schedule = Schedule.from_settings(settings)
    joined_by = now if is_current(edition.key, now, schedule) else edition.cutoff
    result = PlanResult()
    with factory() as session:
        catalog = load_catalog(session, edition.cutoff)
        variants: dict[VariantKey, int] = {
            v.key: v.id
            for v in session.scalars(select(Variant).where(Variant.edition_id == edition.id))
        }
        owed = owed_notices(session)
        numbers = len(variants)
        salt = web_salt(session)
        stamp = driver_time(session.get_bind().dialect)(now)
        queued = DeliveryStatus.QUEUED.value
        edition_id, edition_key, cutoff = edition.id, edition.key, edition.cutoff  # loop-local
        session.commit()  # end the read transaction; each batch below is its own
        readers = iter_readers(session, edition, joined_by=joined_by)
        while True:
            with session.begin():
                batch = next(readers, None)
                if batch is None:
                    break
                planned: list[tuple[int, int]] = []  # (subscriber id, variant id)
                noticed: dict[int, tuple[int, ...]] = {}  # subscriber id -> notice ids
                for reader in batch:
                    late = reader.active_since > cutoff
                    if not wants_edition(reader, cutoff, now, schedule.zone) or not reader_due(
                        edition_key, schedule, now, reader.timezone
                    ):
                        result.not_due += 1
                        result.waiting += late
                        continue
                    items = select_items(reader, catalog, lookback)
                    notices = owed.get(reader.subscriber_id, ())
                    if not items and not notices:
                        result.nothing_new += 1
                        result.waiting += late
                        continue
                    key = variant_key(reader, items, notices)
                    if notices:
                        result.notices += len(notices)
                        noticed[reader.subscriber_id] = notices
                    result.per_variant[key] += 1
                    result.late += late
                    if dry_run:
                        continue
                    if key not in variants:
                        numbers += 1
                        variant = Variant(
                            edition_id=edition_id,
                            number=numbers,
                            category_ids=list(key[0]),
                            summary_ids=list(key[1]),
                            notice_ids=list(key[2]),
                            web_id=web_id_for(salt, edition_key, key),
                        )
                        session.add(variant)
                        session.flush()
                        variants[key] = variant.id
                        if on_variant is not None:
                            on_variant(key, variant.web_id)
                    planned.append((reader.subscriber_id, variants[key]))
                if planned:
                    message_ids = MESSAGE_IDS.new(edition_key, domain, len(planned))
                    rows = [
                        (edition_id, reader_id, variant_id, queued, message_id, 0, stamp, stamp)
                        for (reader_id, variant_id), message_id in zip(
                            planned, message_ids, strict=True
                        )
                    ]
                    insert_many(session, DELIVERIES, _PLANNED_COLUMNS, rows)
                    result.queued += len(rows)
                    # in the same transaction as the rows: never repeated, never lost
                    assert edition_id is not None
                    record_notices(session, edition_id, noticed)
        if not dry_run and edition_id is not None:
            with session.begin():
                if joined_by > cutoff:  # the period lasts: readers who added topics
                    topped_up = _queue_topups(
                        session, edition, catalog, lookback, variants, salt, domain, stamp
                    )
                    result.queued += topped_up
                    result.topped_up = topped_up
                mark_planned(session, edition_id, now, reopen=result.queued > 0)
        if result.queued >= ANALYZE_AFTER and session.get_bind().dialect.name == "postgresql":
            # Fresh statistics, or the claim query sorts every queued row for each batch
            # until autovacuum gets round to it (quadratic in the edition's size).
            with session.begin():
                session.execute(text("ANALYZE deliveries"))
    return result


def _queue_topups(
    session: Session,
    edition: EditionRef,
    catalog: Catalog,
    lookback: dt.timedelta,
    variants: dict[VariantKey, int],
    salt: bytes,
    domain: str,
    stamp: object,
) -> int:
    """Queue the second messages owed to readers who added topics after they were sent
    ``edition`` (see :mod:`digest.planning.topups`); returns how many."""
    edition_id = edition.id
    assert edition_id is not None
    topups = find_topups(session, edition_id, edition.cutoff, catalog, lookback)
    if not topups:
        return 0
    numbers = session.scalar(
        select(func.coalesce(func.max(Variant.number), 0)).where(Variant.edition_id == edition_id)
    )
    rows = []
    message_ids = MESSAGE_IDS.new(edition.key, domain, len(topups))
    for topup, message_id in zip(topups, message_ids, strict=True):
        key: VariantKey = (topup.categories, topup.summary_ids, ())  # notices went in part 1
        if key not in variants:
            numbers = (numbers or 0) + 1
            variant = Variant(
                edition_id=edition_id,
                number=numbers,
                category_ids=list(key[0]),
                summary_ids=list(key[1]),
                notice_ids=[],
                web_id=web_id_for(salt, edition.key, key),
            )
            session.add(variant)
            session.flush()
            variants[key] = variant.id
        queued = DeliveryStatus.QUEUED.value
        row = (edition_id, topup.subscriber_id, variants[key], queued, message_id, 0)
        rows.append((*row, stamp, stamp, topup.part))
    insert_many(session, DELIVERIES, (*_PLANNED_COLUMNS, "part"), rows)
    return len(rows)


def mark_planned(session: Session, edition_id: int, now: dt.datetime, *, reopen: bool) -> None:
    """Record that the edition's readers were planned at ``now``; a complete edition that
    got late readers (``reopen``) is open again until they have it."""
    edition = session.get(Edition, edition_id)
    assert edition is not None
    edition.planned_at = now
    if reopen and edition.status == EditionStatus.COMPLETE:
        edition.status, edition.completed_at = EditionStatus.OPEN.value, None


def dry_plan(
    factory: sessionmaker[Session], settings: Settings, edition: EditionRef, *, now: dt.datetime
) -> tuple[PlanResult, Counter[VariantKey]]:
    """What sending ``edition`` now would do, writing nothing: the plan, and recipients per
    variant counting rows already queued but not yet sent."""
    plan = plan_edition(factory, settings, edition, now=now, dry_run=True)
    counts: Counter[VariantKey] = Counter(plan.per_variant)
    if edition.id is not None:
        with factory() as session:
            for variant in pending_by_variant(session, edition.id):
                counts[variant.key] += variant.waiting
    return plan, counts


def ordered_categories(session: Session) -> list[Category]:
    """All categories in the order sections appear in an email (by name)."""
    return list(session.scalars(select(Category).order_by(Category.name, Category.id)))


def find_edition(session: Session, key: str) -> EditionRef | None:
    edition = session.scalar(select(Edition).where(Edition.key == key))
    return EditionRef.of(edition) if edition is not None else None


def get_or_create_edition(
    factory: sessionmaker[Session], key: str, *, now: dt.datetime, create: bool = True
) -> tuple[EditionRef | None, bool]:
    """The edition ``key``; created with ``cutoff = now`` if it does not exist yet."""
    with factory() as session:
        found = find_edition(session, key)
        if found is not None or not create:
            return found, False
    try:
        with transaction(factory) as session:
            edition = Edition(key=key, cutoff=now, created_at=now)
            session.add(edition)
            session.flush()
            created = EditionRef.of(edition)
        return created, True
    except IntegrityError:  # another process created it a moment ago
        with factory() as session:
            return find_edition(session, key), False
