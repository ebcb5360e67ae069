"""``run_edition``: the only way digests are sent (CLI, scheduler, tests and benchmarks).

1 plan (planning.py) -> 2 group into variants -> 3 render once per variant (render.py) ->
4 build a message template per variant (message.py) -> 5 personalise per reader ->
6 claim ledger rows -> 7 send (transports/) -> 8 record each outcome in the ledger.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from digest import schema
from digest.config import Settings
from digest.content import CategoryRef, build_content, load_cards
from digest.db import make_engine, session_factory, transaction, utcnow
from digest.errors import DigestError, EditionError, TransportUnavailable
from digest.message import MessageTemplate, Recipient, build_template, new_placeholder
from digest.models import Delivery, DeliveryStatus, Edition, EditionStatus, Variant
from digest.planning import get_or_create_edition, ordered_categories, plan_edition
from digest.render import Links, Rendered, Renderer
from digest.selection import VariantKey, edition_key
from digest.transports.base import DeliveryFailed, Envelope, Transport
from subscribers.models import Status, Subscriber

#: A temporary failure is retried until a delivery has had this many attempts.
MAX_ATTEMPTS = 5
PENDING = (DeliveryStatus.QUEUED.value, DeliveryStatus.SENDING.value, DeliveryStatus.DEFERRED.value)

Progress = Callable[[int, int], None]


@dataclass
class VariantReport:
    number: int
    subject: str
    summaries: int
    recipients: int  # recipients this run sends (or would send) this variant to


@dataclass
class EditionReport:
    key: str
    cutoff: dt.datetime
    created: bool
    dry_run: bool = False
    queued: int = 0
    nothing_new: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    skipped: int = 0
    resent_after_crash: int = 0
    previously_sent: int = 0
    complete: bool = False
    seconds: float = 0.0
    variants: list[VariantReport] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)


def open_database(settings: Settings, engine: Engine | None = None) -> sessionmaker[Session]:
    """Sessions on the configured database, refusing one that is not migrated to head."""
    engine = engine or make_engine(settings.database_url)
    if not schema.is_current(engine):
        raise DigestError("the database is not initialised or not up to date: run `digest init`")
    return session_factory(engine)


def run_edition(
    settings: Settings,
    transport: Transport,
    *,
    now: dt.datetime | None = None,
    key: str | None = None,
    dry_run: bool = False,
    engine: Engine | None = None,
    progress: Progress | None = None,
    retry_delays: Sequence[float] = (2.0, 10.0),
    sleep: Callable[[float], None] = time.sleep,
) -> EditionReport:
    """Send (or, with ``dry_run``, describe) this period's edition. Safe to run again:
    a second run resumes the same edition and never sends anyone a second digest."""
    started = time.monotonic()
    now = now or utcnow()
    factory = open_database(settings, engine)
    key = key or edition_key(now, settings.zone)
    edition, created = get_or_create_edition(factory, key, now=now, create=not dry_run)
    if edition is None:  # dry run of an edition that does not exist yet
        edition = Edition(key=key, cutoff=now, created_at=now, status=EditionStatus.OPEN.value)
    if edition.status == EditionStatus.CANCELLED:
        raise EditionError(f"edition {key} was cancelled")
    report = EditionReport(key=key, cutoff=edition.cutoff, created=created, dry_run=dry_run)
    plan = plan_edition(
        factory,
        edition,
        lookback=dt.timedelta(days=settings.lookback_days),
        now=now,
        domain=settings.sender_domain,
        dry_run=dry_run,
    )
    report.queued, report.nothing_new = plan.queued, plan.nothing_new
    renderer = Renderer(settings)
    if dry_run:
        _describe_dry_run(factory, renderer, settings, edition, plan.per_variant, report)
    else:
        _send(
            factory,
            renderer,
            settings,
            transport,
            edition,
            report,
            progress=progress,
            retry_delays=retry_delays,
            sleep=sleep,
        )
    report.seconds = time.monotonic() - started
    return report


@dataclass(frozen=True)
class PreparedVariant:
    number: int
    rendered: Rendered
    template: MessageTemplate
    summaries: int


def render_variants(
    session: Session,
    renderer: Renderer,
    settings: Settings,
    keys: Iterable[VariantKey],
    *,
    date: dt.datetime,
) -> dict[VariantKey, tuple[Rendered, MessageTemplate]]:
    """Render and build each distinct digest once. Any template or standards problem
    raises here, before a single message is sent."""
    keys = list(keys)
    categories = [CategoryRef(c.id, c.slug, c.name) for c in ordered_categories(session)]
    cards = load_cards(session, {i for _, items in keys for i in items})
    built: dict[VariantKey, tuple[Rendered, MessageTemplate]] = {}
    for category_ids, item_ids in keys:
        content = build_content(item_ids, category_ids, cards, categories, settings.card_cap)
        placeholder = new_placeholder()
        rendered = renderer.render_digest(content, personal_links(settings, placeholder))
        template = build_template(settings, rendered, placeholder=placeholder, date=date)
        built[(category_ids, item_ids)] = (rendered, template)
    return built


def personal_links(settings: Settings, token: str) -> Links:
    return Links(
        unsubscribe=f"{settings.base_url}/u/{token}",
        preferences=f"{settings.base_url}/p/{token}",
        more=settings.site_url,
    )


def _describe_dry_run(
    factory: sessionmaker[Session],
    renderer: Renderer,
    settings: Settings,
    edition: Edition,
    planned: Counter[VariantKey],
    report: EditionReport,
) -> None:
    counts: Counter[VariantKey] = Counter(planned)
    with factory() as session:
        if edition.id is not None:
            for variant, waiting in _pending_by_variant(session, edition.id):
                counts[variant.key] += waiting
        built = render_variants(session, renderer, settings, counts, date=utcnow())
    for number, (variant_key, recipients) in enumerate(counts.most_common(), start=1):
        rendered, _ = built[variant_key]
        report.variants.append(
            VariantReport(number, rendered.subject, len(variant_key[1]), recipients)
        )


def _pending_by_variant(session: Session, edition_id: int) -> list[tuple[Variant, int]]:
    counts = Counter(
        session.scalars(
            select(Delivery.variant_id).where(
                Delivery.edition_id == edition_id, Delivery.status.in_(PENDING)
            )
        )
    )
    variants = session.scalars(select(Variant).where(Variant.id.in_(counts))).all()
    return [(v, counts[v.id]) for v in sorted(variants, key=lambda v: v.number)]


@dataclass(frozen=True, slots=True)
class _Claim:
    delivery_id: int
    variant_id: int
    message_id: str
    was: str  # status before the claim
    attempts: int  # including this one
    address: str | None
    name: str | None
    token: str | None
    subscriber_status: str | None


def _send(
    factory: sessionmaker[Session],
    renderer: Renderer,
    settings: Settings,
    transport: Transport,
    edition: Edition,
    report: EditionReport,
    *,
    progress: Progress | None,
    retry_delays: Sequence[float],
    sleep: Callable[[float], None],
) -> None:
    assert edition.id is not None
    with factory() as session:
        report.previously_sent = _count(session, edition.id, (DeliveryStatus.SENT.value,))
        pending = _pending_by_variant(session, edition.id)
        built = render_variants(
            session, renderer, settings, (v.key for v, _ in pending), date=utcnow()
        )
    templates = {variant.id: built[variant.key][1] for variant, _ in pending}
    numbers = {variant.id: variant.number for variant, _ in pending}
    report.variants = [
        VariantReport(v.number, built[v.key][0].subject, len(v.summary_ids), n) for v, n in pending
    ]
    total = sum(n for _, n in pending)
    done = 0
    for delay in (0.0, *retry_delays):
        if delay:
            with factory() as session:
                if not _count(session, edition.id, (DeliveryStatus.DEFERRED.value,)):
                    break
            sleep(delay)
        after = 0
        while True:
            claims = _claim(factory, edition.id, after, settings.send_batch_size)
            if not claims:
                break
            after = claims[-1].delivery_id
            done += _deliver(
                factory, settings, transport, edition, templates, numbers, claims, report
            )
            if progress:
                progress(min(done, total), total)
    with transaction(factory) as session:
        report.deferred = _count(session, edition.id, (DeliveryStatus.DEFERRED.value,))
        left = _count(session, edition.id, PENDING)
        if not left:
            current = session.get(Edition, edition.id)
            assert current is not None
            if current.status == EditionStatus.OPEN:
                current.status = EditionStatus.COMPLETE.value
                current.completed_at = utcnow()
            report.complete = True


def _count(session: Session, edition_id: int, statuses: Sequence[str]) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.edition_id == edition_id, Delivery.status.in_(statuses))
        )
        or 0
    )


def _claim(factory: sessionmaker[Session], edition_id: int, after: int, limit: int) -> list[_Claim]:
    """Mark the next ``limit`` pending rows as sending (one transaction) and return them."""
    with transaction(factory) as session:
        rows = session.execute(
            select(
                Delivery.id,
                Delivery.variant_id,
                Delivery.message_id,
                Delivery.status,
                Delivery.attempts,
                Subscriber.email,
                Subscriber.name,
                Subscriber.token,
                Subscriber.status,
            )
            .outerjoin(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(
                Delivery.edition_id == edition_id,
                Delivery.status.in_(PENDING),
                Delivery.id > after,
            )
            .order_by(Delivery.id)
            .limit(limit)
        ).all()
        if not rows:
            return []
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_([r[0] for r in rows]))
            .values(
                status=DeliveryStatus.SENDING.value,
                attempts=Delivery.attempts + 1,
                updated_at=utcnow(),
            )
        )
    return [_Claim(r[0], r[1], r[2], r[3], r[4] + 1, r[5], r[6], r[7], r[8]) for r in rows]


def _deliver(
    factory: sessionmaker[Session],
    settings: Settings,
    transport: Transport,
    edition: Edition,
    templates: dict[int, MessageTemplate],
    numbers: dict[int, int],
    claims: list[_Claim],
    report: EditionReport,
) -> int:
    """Send one claimed batch and record every outcome; returns how many were handled."""
    updates: list[dict[str, object]] = []
    unsent: list[_Claim] = []
    try:
        for index, claim in enumerate(claims):
            now = utcnow()
            row: dict[str, object] = {"id": claim.delivery_id, "updated_at": now}
            if claim.address is None or claim.token is None:
                row.update(status=DeliveryStatus.SKIPPED.value, detail="subscriber was erased")
                report.skipped += 1
            elif claim.subscriber_status != Status.ACTIVE:
                row.update(
                    status=DeliveryStatus.SKIPPED.value,
                    detail=f"subscriber is {claim.subscriber_status} since planning",
                )
                report.skipped += 1
            else:
                template = templates[claim.variant_id]
                raw = template.personalize(
                    Recipient(claim.address, claim.name, claim.token, claim.message_id)
                )
                envelope = Envelope(
                    settings.sender_address, claim.address, edition.key, numbers[claim.variant_id]
                )
                try:
                    unsent = claims[index:]
                    reply = transport.send(envelope, raw)
                    unsent = claims[index + 1 :]
                except DeliveryFailed as exc:
                    unsent = claims[index + 1 :]
                    _record_failure(row, claim, exc, report)
                else:
                    row.update(status=DeliveryStatus.SENT.value, sent_at=now, detail=reply)
                    report.sent += 1
                    if claim.was == DeliveryStatus.SENDING:
                        report.resent_after_crash += 1
            updates.append(row)
    except TransportUnavailable:
        _release(factory, unsent)
        raise
    finally:
        if updates:
            with transaction(factory) as session:
                session.execute(update(Delivery), updates)
    return len(updates)


def _record_failure(
    row: dict[str, object], claim: _Claim, exc: DeliveryFailed, report: EditionReport
) -> None:
    if exc.permanent:
        row.update(status=DeliveryStatus.FAILED.value, detail=exc.reply)
        report.failed += 1
        report.failures[exc.reply[:60]] += 1
    elif claim.attempts >= MAX_ATTEMPTS:
        row.update(
            status=DeliveryStatus.FAILED.value,
            detail=f"gave up after {claim.attempts} attempts: {exc.reply}",
        )
        report.failed += 1
        report.failures["too many temporary failures"] += 1
    else:
        row.update(status=DeliveryStatus.DEFERRED.value, detail=exc.reply)


def _release(factory: sessionmaker[Session], claims: Iterable[_Claim]) -> None:
    """Give back claimed rows that were never handed to the transport."""
    rows = [
        {
            "id": c.delivery_id,
            "status": c.was if c.was != DeliveryStatus.SENDING else DeliveryStatus.QUEUED.value,
            "attempts": c.attempts - 1,
        }
        for c in claims
    ]
    if rows:
        with transaction(factory) as session:
            session.execute(update(Delivery), rows)
