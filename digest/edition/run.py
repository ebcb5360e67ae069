"""``run_edition``: the only way digests are sent (CLI, scheduler, tests and benchmarks).

1 plan (planning.py) -> 2 group into variants -> 3 render once per variant (render.py) ->
4 build a message template per variant (message.py) -> 5 personalise per reader ->
6 claim ledger rows (ledger.py) -> 7 send (sending.py, transports/) -> 8 record outcomes.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import queue
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings
from digest.edition import ledger
from digest.edition.checks import render_checked
from digest.edition.locks import SendLock, no_workers, working_on
from digest.edition.plan import dry_plan, get_or_create_edition, plan_edition
from digest.edition.ratelimit import RateLimiter
from digest.edition.ratelimit_shared import SharedRateLimiter
from digest.edition.sender import Outbound, Sender, Tally, backoff_delays
from digest.edition.transport import make_transport
from digest.edition.variants import render_variants
from digest.edition.when import (
    EARLIEST_ZONE,
    Schedule,
    all_readers_due,
    current_key,
    is_due,
    send_moment,
)
from digest.errors import EditionError
from digest.mail.dkim import DkimSigner
from digest.mail.transports.base import Transport
from digest.mail.verp import envelope_sender
from digest.render.renderer import Renderer
from digest.store.db import transaction, utcnow
from digest.store.models import DeliveryStatus, Edition, EditionStatus
from digest.store.schema import open_database

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
    #: rows worker processes still running had claimed when this run started (not requeued)
    held_by_workers: int = 0
    requeued: int = 0  # by --retry-failed
    worker_errors: int = 0  # extra worker processes that did not end cleanly
    sent_by_workers: int = 0  # of ``sent``, by the worker processes this run started
    complete: bool = False
    stopped: bool = False  # asked to stop (signal, cancel) before the end
    busy: str | None = None  # another process holds the edition's send lock
    seconds: float = 0.0
    variants: list[VariantReport] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


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
                with no_workers(factory.kw["bind"], key) as alone:
                    if alone:
                        ledger.recover_in_flight(factory, edition_id)
                    else:  # ``sending`` rows are theirs, not left by a crash
                        with factory() as session:
                            report.held_by_workers = ledger.count(
                                session, edition_id, (DeliveryStatus.SENDING.value,)
                            )
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
    (:mod:`digest.edition.ratelimit_shared`); otherwise (SQLite: one process) a local one."""
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
    feed = WorkerFeed(options.progress)
    helpers = _start_workers(settings, edition.key, options.workers, factory, transport, feed)
    try:
        with Sender(factory, transport, outbound, _limiter(settings, factory.kw["bind"])) as sender:
            report.stopped = send_passes(
                factory,
                settings,
                edition,
                sender,
                replace(options, progress=feed),
                total,
                renew=renew,
            )
    finally:
        for process in helpers:
            while process.is_alive():  # the queue is read meanwhile, or a worker could block
                feed.update()
                process.join(0.25)
            report.worker_errors += process.exitcode != 0
        if helpers:
            feed.update()  # what they put last
    tally = sender.tally
    report.sent_by_workers = sum(other.sent for other in feed.tallies)
    for other in feed.tallies:
        tally.add(other)
    report.sent, report.failed, report.skipped = tally.sent, tally.failed, tally.skipped
    report.failures, report.resent_after_crash = tally.failures, tally.resent_after_crash


class WorkerFeed:
    """Progress across processes: the main process's own, plus what its worker processes
    put on a queue (messages handled and failed after each batch, their tally at the end).

    Called as the main process's progress callback; :meth:`update` reads the queue."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.queue: Any = None  # a multiprocessing queue, made when workers start
        self.tallies: list[Tally] = []
        self.own = (0, 0, 0)  # the main process's done, total, failed
        self.done = self.failed = 0  # the workers'

    def __call__(self, done: int, total: int, failed: int) -> None:
        self.own = (done, total, failed)
        self.update()

    def update(self) -> None:
        while self.queue is not None:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Tally):
                self.tallies.append(item)
            else:
                self.done, self.failed = self.done + item[0], self.failed + item[1]
        done, total, failed = self.own
        if self.progress is not None and total:
            self.progress(min(done + self.done, total), total, failed + self.failed)


def _reporter(feed: Any) -> Progress:
    """A worker process's progress callback: what changed since its last batch, queued."""
    last = [0, 0]

    def put(done: int, total: int, failed: int) -> None:
        feed.put((done - last[0], failed - last[1]))
        last[:] = done, failed

    return put


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
                options.progress(done, total, sender.tally.failed)  # may pass total: retries
    return False


#: Transports a worker process can open for itself (not the in-process memory one).
WORKER_TRANSPORTS = ("smtp", "file", "console")


def _start_workers(
    settings: Settings,
    key: str,
    workers: int,
    factory: sessionmaker[Session],
    transport: Transport,
    feed: WorkerFeed,
) -> list[multiprocessing.process.BaseProcess]:
    if workers <= 1:
        return []
    if factory.kw["bind"].dialect.name != "postgresql":
        raise EditionError(
            "--workers needs PostgreSQL; on SQLite one sender uses smtp_connections connections"
        )
    if transport.name not in WORKER_TRANSPORTS:
        raise EditionError(f"--workers cannot share the {transport.name} transport")
    settings = replace(settings, transport=transport.name)  # --transport applies to all
    context = multiprocessing.get_context("spawn")
    feed.queue = context.Queue()
    processes: list[multiprocessing.process.BaseProcess] = [
        context.Process(target=work_on_edition, args=(settings, key, feed.queue), daemon=False)
        for _ in range(workers - 1)
    ]
    for process in processes:
        process.start()
    return processes


def work_on_edition(settings: Settings, key: str, feed: Any = None) -> EditionReport:
    """An extra worker: send rows of an edition another process planned and is sending
    (no planning; ``FOR UPDATE SKIP LOCKED`` keeps workers' batches disjoint). With ``feed``
    (a multiprocessing queue), it reports its progress and its tally to the main process."""
    started = time.monotonic()
    factory = open_database(settings)
    with factory() as session:
        edition = session.scalar(select(Edition).where(Edition.key == key))
    if edition is None or edition.status != EditionStatus.OPEN:
        raise EditionError(f"edition {key} is not being sent (see `digest editions list`)")
    report = EditionReport(key=key, cutoff=edition.cutoff, created=False)
    options = SendOptions(progress=_reporter(feed) if feed is not None else None)
    engine = factory.kw["bind"]
    transport = make_transport(settings)
    try:
        with working_on(engine, key):  # from before its first claim to after its last
            outbound, total = _outbound(factory, settings, edition)
            with Sender(factory, transport, outbound, _limiter(settings, engine)) as sender:
                report.stopped = send_passes(factory, settings, edition, sender, options, total)
    finally:
        transport.close()
    if feed is not None:
        feed.put(sender.tally)
    report.sent, report.failed = sender.tally.sent, sender.tally.failed
    report.seconds = time.monotonic() - started
    return report
