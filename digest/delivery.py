"""``run_edition``: the only way digests are sent (CLI, scheduler, tests and benchmarks).

1 plan (planning.py) -> 2 group into variants -> 3 render once per variant (render.py) ->
4 build a message template per variant (message.py) -> 5 personalise per reader ->
6 claim ledger rows (ledger.py) -> 7 send (sending.py, transports/) -> 8 record outcomes.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from digest import ledger, schema
from digest.config import Settings
from digest.db import make_engine, session_factory, transaction, utcnow
from digest.errors import DigestError, EditionError
from digest.locks import SendLock
from digest.models import DeliveryStatus, Edition, EditionStatus
from digest.planning import get_or_create_edition, plan_edition
from digest.render import Renderer
from digest.schedule import (
    EARLIEST_ZONE,
    Schedule,
    all_readers_due,
    current_key,
    is_due,
    send_moment,
)
from digest.selection import VariantKey
from digest.sending import Outbound, Tally, send_batch
from digest.transports.base import Transport
from digest.variants import render_variants

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
    not_due: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    skipped: int = 0
    resent_after_crash: int = 0
    previously_sent: int = 0
    complete: bool = False
    stopped: bool = False  # asked to stop (signal, cancel) before the end
    busy: str | None = None  # another process holds the edition's send lock
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
    should_stop: Callable[[], bool] = lambda: False,
) -> EditionReport:
    """Send (or, with ``dry_run``, describe) this period's edition. Safe to run again and
    from several processes at once: one of them sends, the others say so and return."""
    started = time.monotonic()
    now = now or utcnow()
    factory = open_database(settings, engine)
    schedule = Schedule.from_settings(settings)
    key = key or current_key(now, schedule)
    edition, created = get_or_create_edition(factory, key, now=now, create=not dry_run)
    if edition is None:  # dry run of an edition that does not exist yet
        edition = Edition(key=key, cutoff=now, created_at=now, status=EditionStatus.OPEN.value)
    if edition.status == EditionStatus.CANCELLED:
        raise EditionError(f"edition {key} was cancelled")
    report = EditionReport(key=key, cutoff=edition.cutoff, created=created, dry_run=dry_run)
    if dry_run:
        _dry_run(factory, settings, edition, schedule, now, report)
    else:
        bind = factory.kw["bind"]
        with SendLock(bind, key) as lock:
            if not lock.acquired:
                report.busy = lock.other
            else:
                ledger.recover_in_flight(factory, _id(edition))
                _plan_and_send(
                    factory,
                    settings,
                    transport,
                    edition,
                    schedule,
                    now,
                    report,
                    progress=progress,
                    retry_delays=retry_delays,
                    sleep=sleep,
                    should_stop=should_stop,
                    renew=lock.renew,
                )
    report.seconds = time.monotonic() - started
    return report


def not_due_reason(
    settings: Settings, *, now: dt.datetime, engine: Engine | None = None
) -> str | None:
    """None when this period's edition should be sent now (``digest send --due``);
    otherwise why not, in one line."""
    schedule = Schedule.from_settings(settings)
    key = current_key(now, schedule)
    if not is_due(now, schedule):
        zone = EARLIEST_ZONE if schedule.local_delivery else schedule.zone
        when = send_moment(key, schedule, zone).astimezone(schedule.zone)
        return f"edition {key} is not due until {when:%a %Y-%m-%d %H:%M} ({settings.timezone})"
    with open_database(settings, engine)() as session:
        status = session.scalar(select(Edition.status).where(Edition.key == key))
    if status == EditionStatus.COMPLETE:
        return f"edition {key} is complete"
    if status == EditionStatus.CANCELLED:
        return f"edition {key} was cancelled"
    return None


def _id(edition: Edition) -> int:
    assert edition.id is not None
    return edition.id


def _dry_run(
    factory: sessionmaker[Session],
    settings: Settings,
    edition: Edition,
    schedule: Schedule,
    now: dt.datetime,
    report: EditionReport,
) -> None:
    plan = plan_edition(
        factory,
        edition,
        lookback=dt.timedelta(days=settings.lookback_days),
        now=now,
        domain=settings.sender_domain,
        schedule=schedule,
        dry_run=True,
    )
    report.nothing_new, report.not_due = plan.nothing_new, plan.not_due
    counts: Counter[VariantKey] = Counter(plan.per_variant)
    with factory() as session:
        if edition.id is not None:
            for variant, waiting in ledger.pending_by_variant(session, edition.id):
                counts[variant.key] += waiting
        built = render_variants(session, Renderer(settings), settings, counts, date=now)
    for number, (variant_key, recipients) in enumerate(counts.most_common(), start=1):
        subject = built[variant_key][0].subject
        report.variants.append(VariantReport(number, subject, len(variant_key[1]), recipients))


def _plan_and_send(
    factory: sessionmaker[Session],
    settings: Settings,
    transport: Transport,
    edition: Edition,
    schedule: Schedule,
    now: dt.datetime,
    report: EditionReport,
    *,
    progress: Progress | None,
    retry_delays: Sequence[float],
    sleep: Callable[[float], None],
    should_stop: Callable[[], bool],
    renew: Callable[[], None],
) -> None:
    edition_id = _id(edition)
    plan = plan_edition(
        factory,
        edition,
        lookback=dt.timedelta(days=settings.lookback_days),
        now=now,
        domain=settings.sender_domain,
        schedule=schedule,
    )
    report.queued, report.nothing_new, report.not_due = plan.queued, plan.nothing_new, plan.not_due
    with factory() as session:
        report.previously_sent = ledger.count(session, edition_id, (DeliveryStatus.SENT.value,))
        pending = ledger.pending_by_variant(session, edition_id)
        built = render_variants(
            session, Renderer(settings), settings, (v.key for v, _ in pending), date=utcnow()
        )
    report.variants = [
        VariantReport(v.number, built[v.key][0].subject, len(v.summary_ids), n) for v, n in pending
    ]
    outbound = Outbound(
        sender=settings.sender_address,
        edition_key=edition.key,
        templates={v.id: built[v.key][1] for v, _ in pending},
        numbers={v.id: v.number for v, _ in pending},
    )

    def stop_now() -> bool:
        return should_stop() or (
            ledger.edition_status(factory, edition_id) == EditionStatus.CANCELLED
        )

    tally = Tally()
    total = sum(n for _, n in pending)
    done = 0
    for delay in (0.0, *retry_delays):
        if delay:
            with factory() as session:
                if not ledger.count(session, edition_id, (DeliveryStatus.DEFERRED.value,)):
                    break
            sleep(delay)
        after = 0
        while not stop_now():
            claims = ledger.claim(factory, edition_id, after, settings.send_batch_size)
            if not claims:
                break
            after = claims[-1].delivery_id
            done += send_batch(factory, transport, outbound, claims, tally)
            renew()
            if progress:
                progress(min(done, total), total)
        else:
            report.stopped = True
            break
    report.sent, report.failed, report.skipped = tally.sent, tally.failed, tally.skipped
    report.failures = tally.failures
    report.resent_after_crash = tally.resent_after_crash
    with transaction(factory) as session:
        report.deferred = ledger.count(session, edition_id, (DeliveryStatus.DEFERRED.value,))
        if all_readers_due(edition.key, schedule, now):
            report.complete = ledger.complete_if_done(session, edition_id)
