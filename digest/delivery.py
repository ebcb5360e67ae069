"""``run_edition``: the only way digests are sent (CLI, scheduler, tests and benchmarks).

1 plan (planning.py) -> 2 group into variants -> 3 render once per variant (render.py) ->
4 build a message template per variant (message.py) -> 5 personalise per reader ->
6 claim ledger rows (ledger.py) -> 7 send (sending.py, transports/) -> 8 record outcomes.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from digest import ledger, schema
from digest.checks import render_checked
from digest.config import Settings
from digest.db import make_engine, session_factory, transaction, utcnow
from digest.dkim import DkimSigner
from digest.errors import DigestError, EditionError
from digest.locks import SendLock
from digest.models import DeliveryStatus, Edition, EditionStatus
from digest.planning import dry_plan, get_or_create_edition, plan_edition
from digest.ratelimit import RateLimiter
from digest.ratelimit_shared import SharedRateLimiter
from digest.render import Renderer
from digest.schedule import (
    EARLIEST_ZONE,
    Schedule,
    all_readers_due,
    current_key,
    is_due,
    send_moment,
)
from digest.sending import Outbound, Sender, backoff_delays
from digest.transports import make_transport
from digest.transports.base import Transport
from digest.variants import render_variants
from digest.verp import envelope_sender

Progress = Callable[[int, int, int], None]  # done, total, failed


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
    requeued: int = 0  # by --retry-failed
    worker_errors: int = 0  # extra worker processes that did not end cleanly
    complete: bool = False
    stopped: bool = False  # asked to stop (signal, cancel) before the end
    busy: str | None = None  # another process holds the edition's send lock
    seconds: float = 0.0
    variants: list[VariantReport] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


def open_database(settings: Settings, engine: Engine | None = None) -> sessionmaker[Session]:
    """Sessions on the configured database, refusing one that is not migrated to head."""
    engine = engine or make_engine(settings.database_url)
    if not schema.is_current(engine):
        raise DigestError("the database is not initialised or not up to date: run `digest init`")
    return session_factory(engine)


@dataclass(frozen=True)
class SendOptions:
    """How a run sends; the defaults come from the settings."""

    progress: Progress | None = None
    retry_delays: Sequence[float] | None = None
    sleep: Callable[[float], None] = time.sleep
    should_stop: Callable[[], bool] = lambda: False
    workers: int = 1  # processes sending this edition (PostgreSQL)
    retry_failed: bool = False


def run_edition(
    settings: Settings,
    transport: Transport,
    *,
    now: dt.datetime | None = None,
    key: str | None = None,
    dry_run: bool = False,
    engine: Engine | None = None,
    progress: Progress | None = None,
    retry_delays: Sequence[float] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    should_stop: Callable[[], bool] = lambda: False,
    workers: int = 1,
    retry_failed: bool = False,
) -> EditionReport:
    """Send (or, with ``dry_run``, describe) this period's edition. Safe to run again and
    from several processes at once: one of them sends, the others say so and return."""
    started = time.monotonic()
    now = now or utcnow()
    options = SendOptions(progress, retry_delays, sleep, should_stop, workers, retry_failed)
    factory = open_database(settings, engine)
    schedule = Schedule.from_settings(settings)
    key = key or current_key(now, schedule)
    edition, created = get_or_create_edition(factory, key, now=now, create=not dry_run)
    if edition is None:  # dry run of an edition that does not exist yet
        edition = Edition(key=key, cutoff=now, created_at=now, status=EditionStatus.OPEN.value)
    if edition.status == EditionStatus.CANCELLED:
        raise EditionError(f"edition {key} was cancelled")
    if edition.status == EditionStatus.PAUSED:
        raise EditionError(
            f"edition {key} is paused after a policy bounce; fix the cause, then "
            f"`digest bounces resume {key}`"
        )
    report = EditionReport(key=key, cutoff=edition.cutoff, created=created, dry_run=dry_run)
    if dry_run:
        _dry_run(factory, settings, edition, now, report)
    else:
        with SendLock(factory.kw["bind"], key) as lock:
            if not lock.acquired:
                report.busy = lock.other
            else:
                edition_id = _id(edition)
                ledger.recover_in_flight(factory, edition_id)
                if retry_failed:
                    with transaction(factory) as session:
                        report.requeued = ledger.requeue_gave_up(session, edition_id)
                plan = plan_edition(factory, settings, edition, now=now)
                report.queued, report.nothing_new = plan.queued, plan.nothing_new
                report.not_due = plan.not_due
                _send(factory, settings, transport, edition, report, options, renew=lock.renew)
                with transaction(factory) as session:
                    report.deferred = ledger.count(
                        session, edition_id, (DeliveryStatus.DEFERRED.value,)
                    )
                    if all_readers_due(edition.key, schedule, now) and not report.stopped:
                        report.complete = ledger.complete_if_done(session, edition_id)
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
    if status == EditionStatus.PAUSED:
        return f"edition {key} is paused (digest bounces resume {key})"
    return None


def _id(edition: Edition) -> int:
    assert edition.id is not None
    return edition.id


def _dry_run(
    factory: sessionmaker[Session],
    settings: Settings,
    edition: Edition,
    now: dt.datetime,
    report: EditionReport,
) -> None:
    plan, counts = dry_plan(factory, settings, edition, now=now)
    report.nothing_new, report.not_due = plan.nothing_new, plan.not_due
    with factory() as session:
        built = render_variants(session, Renderer(settings), settings, counts, date=now)
    for number, (variant_key, recipients) in enumerate(counts.most_common(), start=1):
        subject = built[variant_key][0].subject
        report.variants.append(VariantReport(number, subject, len(variant_key[1]), recipients))


def _outbound(
    factory: sessionmaker[Session],
    settings: Settings,
    edition: Edition,
    report: EditionReport | None = None,
) -> tuple[Outbound, int]:
    """Render and build every variant with rows still to send; returns them and how many
    rows are waiting."""
    edition_id = _id(edition)
    with factory() as session:
        pending = ledger.pending_by_variant(session, edition_id)
        built = render_checked(  # preflight: PreflightError before any message goes out
            session,
            settings,
            [(v.number, v.key) for v, _ in pending],
            date=utcnow(),
            web_ids={v.key: v.web_id for v, _ in pending},
        )
        if report is not None:
            report.previously_sent = ledger.count(session, edition_id, (DeliveryStatus.SENT.value,))
            report.variants = [
                VariantReport(v.number, built[v.key][0].subject, len(v.summary_ids), n)
                for v, n in pending
            ]
    signer = DkimSigner.from_settings(settings)  # a bad key fails here, before any send
    outbound = Outbound(
        sender=partial(envelope_sender, settings),
        sign=signer.sign if signer is not None else None,
        edition_key=edition.key,
        templates={v.id: built[v.key][1] for v, _ in pending},
        numbers={v.id: v.number for v, _ in pending},
    )
    return outbound, sum(n for _, n in pending)


def _limiter(settings: Settings, engine: Engine) -> RateLimiter:
    """The run's rate limiter. On PostgreSQL with a limit, one limit per relay shared
    exactly through the database by every sending process, here or on other machines
    (:mod:`digest.ratelimit_shared`); otherwise (SQLite: one process) a local one."""
    per_second = settings.rate_per_second or None
    per_hour = settings.rate_per_hour or None
    if engine.dialect.name == "postgresql" and (per_second or per_hour):
        relay = f"{settings.smtp.host}:{settings.smtp.port}" if settings.smtp else "smtp"
        return SharedRateLimiter(engine, relay, per_second, per_hour)
    return RateLimiter(per_second, per_hour)


def _send(
    factory: sessionmaker[Session],
    settings: Settings,
    transport: Transport,
    edition: Edition,
    report: EditionReport,
    options: SendOptions,
    *,
    renew: Callable[[], None],
) -> None:
    outbound, total = _outbound(factory, settings, edition, report)
    helpers = _start_workers(settings, edition.key, options.workers, factory)
    try:
        with Sender(factory, transport, outbound, _limiter(settings, factory.kw["bind"])) as sender:
            report.stopped = send_passes(
                factory, settings, edition, sender, options, total, renew=renew
            )
    finally:
        for process in helpers:
            process.join()
            report.worker_errors += process.exitcode != 0
    tally = sender.tally
    report.sent, report.failed, report.skipped = tally.sent, tally.failed, tally.skipped
    report.failures, report.resent_after_crash = tally.failures, tally.resent_after_crash


def send_passes(
    factory: sessionmaker[Session],
    settings: Settings,
    edition: Edition,
    sender: Sender,
    options: SendOptions,
    total: int,
    *,
    renew: Callable[[], None] = lambda: None,
) -> bool:
    """Claim and send until nothing is left, retrying deferred rows after back-off delays.
    Returns True when it stopped early (a stop request or the edition was cancelled)."""
    edition_id = _id(edition)
    delays = options.retry_delays
    if delays is None:
        delays = backoff_delays(settings.send_retries, settings.retry_base_seconds)

    done = 0
    for delay in (0.0, *delays):
        if delay:
            with factory() as session:
                if not ledger.count(session, edition_id, (DeliveryStatus.DEFERRED.value,)):
                    break
            options.sleep(delay)
        after = 0
        while True:
            if options.should_stop():
                return True
            claims = ledger.claim(factory, edition_id, after, settings.send_batch_size)
            if claims is None:  # cancelled or paused meanwhile
                return True
            if not claims:
                break
            after = claims[-1].delivery_id
            done += sender.send_batch(claims)
            renew()
            if options.progress:
                options.progress(min(done, total), total, sender.tally.failed)
    return False


def _start_workers(
    settings: Settings, key: str, workers: int, factory: sessionmaker[Session]
) -> list[multiprocessing.process.BaseProcess]:
    if workers <= 1:
        return []
    if factory.kw["bind"].dialect.name != "postgresql":
        raise EditionError(
            "--workers needs PostgreSQL; on SQLite one sender uses smtp_connections connections"
        )
    context = multiprocessing.get_context("spawn")
    processes: list[multiprocessing.process.BaseProcess] = [
        context.Process(target=work_on_edition, args=(settings, key), daemon=False)
        for _ in range(workers - 1)
    ]
    for process in processes:
        process.start()
    return processes


def work_on_edition(settings: Settings, key: str) -> EditionReport:
    """An extra worker: send rows of an edition another process planned and is sending
    (no planning, no lock; ``FOR UPDATE SKIP LOCKED`` keeps workers' batches disjoint)."""
    started = time.monotonic()
    factory = open_database(settings)
    with factory() as session:
        edition = session.scalar(select(Edition).where(Edition.key == key))
    if edition is None or edition.status != EditionStatus.OPEN:
        raise EditionError(f"edition {key} is not being sent (see `digest editions list`)")
    report = EditionReport(key=key, cutoff=edition.cutoff, created=False)
    outbound, total = _outbound(factory, settings, edition)
    transport = make_transport(settings)
    try:
        with Sender(factory, transport, outbound, _limiter(settings, factory.kw["bind"])) as sender:
            report.stopped = send_passes(factory, settings, edition, sender, SendOptions(), total)
    finally:
        transport.close()
    report.sent, report.failed = sender.tally.sent, sender.tally.failed
    report.seconds = time.monotonic() - started
    return report
