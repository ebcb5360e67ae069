"""``run_edition``: the only way digests are sent (CLI, scheduler, tests and benchmarks).

plan (plan.py) -> render once per variant (variants.py; during the plan: prerender.py)
-> preflight (checks.py) -> claim and send (passes.py, sender.py, transports; helped by
workers.py) -> record (ledger.py). Stages hand each other values: an :class:`EditionRef`,
variants, templates.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings
from digest.delivery import ledger
from digest.delivery.journal import FileJournal, journal_folder
from digest.delivery.limits import limiter_for
from digest.delivery.locks import SendLock, no_workers
from digest.delivery.sender import Outbound, Sender
from digest.edition.heap import Heap, long_lived
from digest.edition.passes import (
    Progress,
    SendOptions,
    check_pending,
    outbound_for,
    pending_variants,
    send_passes,
)
from digest.edition.prerender import Prerender
from digest.edition.render_pool import helper_count
from digest.edition.report import EditionReport, VariantReport
from digest.edition.resume import settle_in_flight
from digest.edition.variants import render_variants
from digest.edition.workers import WorkerFeed, start_workers
from digest.edition.workers import work_on_edition as work_on_edition
from digest.errors import DigestError, EditionError
from digest.mail.transports.base import Transport
from digest.planning.due import not_due_reason as not_due_reason
from digest.planning.plan import EditionRef, dry_plan, get_or_create_edition, plan_edition
from digest.planning.when import (
    Schedule,
    all_readers_due,
    current_key,
    is_current,
    next_key,
    send_moment,
)
from digest.render.renderer import Renderer
from digest.store.db import make_engine, transaction, utcnow
from digest.store.models import DeliveryStatus, EditionStatus
from digest.store.schema import open_database

__all__ = ["EditionReport", "SendOptions", "VariantReport", "not_due_reason", "run_edition"]


@dataclass(frozen=True)
class _Run:
    """What every step of one run shares."""

    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    now: dt.datetime
    options: SendOptions
    started: float = field(default_factory=time.monotonic)

    def clock(self) -> dt.datetime:
        """``now`` moved on by the time the run has taken (what DIGEST_NOW replays see)."""
        return self.now + dt.timedelta(seconds=time.monotonic() - self.started)


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
    engine = engine or make_engine(settings.database_url)
    options = SendOptions(progress, retry_delays, sleep, should_stop, workers, retry_failed)
    run = _Run(settings, engine, open_database(settings, engine), now or utcnow(), options)
    key = key or current_key(run.now, Schedule.from_settings(settings))
    edition, created = _open_edition(run, key, create=not dry_run)
    report = EditionReport(key=key, cutoff=edition.cutoff, created=created, dry_run=dry_run)
    if dry_run:
        _dry_run(run, edition, report)
    else:
        lease = dt.timedelta(seconds=settings.send_lease_seconds)
        with SendLock(engine, key, lease=lease) as lock:
            if lock.acquired:
                _send_edition(run, transport, edition, report, lock=lock)
            else:
                report.busy = lock.other
    report.seconds = time.monotonic() - started
    return report


def _send_edition(
    run: _Run,
    transport: Transport,
    edition: EditionRef,
    report: EditionReport,
    *,
    lock: SendLock,
) -> None:
    """The steps of a send, under the edition's send lock; the collector skips what lives
    as long as the run (:mod:`digest.edition.heap`)."""
    with long_lived() as heap:
        _send_stages(run, transport, edition, report, lock, heap)


def _send_stages(
    run: _Run,
    transport: Transport,
    edition: EditionRef,
    report: EditionReport,
    lock: SendLock,
    heap: Heap,
) -> None:
    _resume(run, edition, report, lock)  # rows left by a crash (or failed, with retry_failed)
    # 1 plan, and 2 render each variant once: each new one while the plan goes on
    renderer = Renderer(run.settings)
    early = Prerender(
        run.factory,
        renderer,
        run.settings.card_cap,
        date=run.now,
        edition=edition.key,
        helpers=helper_count(),
    )
    with closing(early):
        plan = plan_edition(
            run.factory,
            run.settings,
            edition,
            now=run.now,
            on_variant=early.submit if _threads_share(run.engine) else None,
        )
        pending = pending_variants(run.factory, edition)
        renders = early.renders(pending)  # those not rendered yet are rendered now
    report.queued, report.nothing_new, report.not_due = plan.queued, plan.nothing_new, plan.not_due
    report.late, report.waiting, report.topped_up = plan.late, plan.waiting, plan.topped_up
    # 3 preflight what was rendered: on any problem, nothing goes out
    built = check_pending(renderer, pending, renders)
    report.variants = [
        VariantReport(v.number, built[v.key][0].subject, len(v.key[1]), v.waiting) for v in pending
    ]
    # 4 claim and send
    outbound = outbound_for(run.settings, edition.key, pending, built)
    heap.settle()  # the templates: kept until the run ends
    total = sum(v.waiting for v in pending)
    _claim_and_send(run, transport, edition, outbound, total, report, holds=lock.holds)
    # 5 record
    _record(run, edition, report)


def _open_edition(run: _Run, key: str, *, create: bool) -> tuple[EditionRef, bool]:
    """The edition ``key`` (created unless a dry run), refused when cancelled or paused."""
    found, created = get_or_create_edition(run.factory, key, now=run.now, create=create)
    edition = found or EditionRef.unsaved(key, run.now)  # a dry run of a new edition
    if edition.status == EditionStatus.CANCELLED:
        raise EditionError(f"edition {key} was cancelled")
    if edition.status == EditionStatus.PAUSED:
        raise EditionError(
            f"edition {key} is paused after a policy bounce; fix the cause, then "
            f"`digest bounces resume {key}`"
        )
    return edition, created


def _resume(run: _Run, edition: EditionRef, report: EditionReport, lock: SendLock) -> None:
    """Before planning: rows a crashed run left ``sending`` are settled from the outcome
    journals (unless worker processes hold them), and with ``retry_failed`` temporary
    failures go back to the queue."""
    edition_id = _id(edition)
    with no_workers(run.engine, edition.key) as alone:
        if alone:
            settled = settle_in_flight(
                run.factory,
                edition_id,
                edition.key,
                _journals(run),
                _database(run),
                lock,
                run.options.sleep,
            )
            report.recorded_from_journal = settled.recorded
            report.possibly_duplicated = settled.possibly_duplicated
        else:  # ``sending`` rows are theirs, not left by a crash
            with run.factory() as session:
                sending = (DeliveryStatus.SENDING.value,)
                report.held_by_workers = ledger.count(session, edition_id, sending)
    with transaction(run.factory) as session:
        report.previously_sent = ledger.count(session, edition_id, (DeliveryStatus.SENT.value,))
        if run.options.retry_failed:
            report.requeued = ledger.requeue_gave_up(session, edition_id)


def _claim_and_send(
    run: _Run,
    transport: Transport,
    edition: EditionRef,
    outbound: Outbound,
    total: int,
    report: EditionReport,
    *,
    holds: Callable[[], bool],
) -> None:
    """Claim and send every row, with the worker processes asked for, and add up the tallies.
    The outcome journal is removed once every outcome is recorded (also after a DigestError:
    the sender records before it raises), and kept for the next run otherwise."""
    feed = WorkerFeed(run.options.progress)
    options = replace(run.options, progress=feed)
    helpers = start_workers(
        run.settings,
        edition.key,
        run.options.workers,
        run.engine,
        transport,
        feed,
        now=run.now,
        prepared=(outbound, total),
    )
    journal = FileJournal(_journals(run), _database(run), edition.key)
    recorded = False
    try:
        limiter = limiter_for(run.settings, run.engine)
        with Sender(
            run.factory, transport, outbound, limiter, journal=journal, holds=holds
        ) as sender:
            stopped = send_passes(
                run.factory,
                run.settings,
                _id(edition),
                sender,
                options,
                total,
                journal=journal,
                holds=holds,
            )
        recorded = True
    except DigestError:
        recorded = True
        raise
    finally:
        journal.close(remove=recorded)
        report.worker_errors += feed.wait_for(helpers)
    tally = sender.tally
    report.stopped = stopped
    report.sent_by_workers = sum(other.sent for other in feed.tallies)
    for other in feed.tallies:
        tally.add(other)
    report.sent, report.failed, report.skipped = tally.sent, tally.failed, tally.skipped
    report.failures, report.resent_after_crash = tally.failures, tally.resent_after_crash
    report.possibly_duplicated += tally.possibly_duplicated


def _record(run: _Run, edition: EditionRef, report: EditionReport) -> None:
    """Count what waits for a retry; mark the edition complete when every reader was due
    and nothing is left. An edition that planned nobody stays open while its period lasts:
    readers who join later (an import after an early cron run) still get it."""
    schedule = Schedule.from_settings(run.settings)
    current = is_current(edition.key, run.now, schedule)
    with transaction(run.factory) as session:
        report.deferred = ledger.count(session, _id(edition), (DeliveryStatus.DEFERRED.value,))
        planned_anyone = not current or bool(ledger.counts_by_status(session, _id(edition)))
        finished = all_readers_due(edition.key, schedule, run.now) and not report.stopped
        if finished and planned_anyone:
            report.complete = ledger.complete_if_done(session, _id(edition), now=run.clock())
        if current:
            report.next_key = next_key(edition.key)
            report.next_send = send_moment(report.next_key, schedule)


def _dry_run(run: _Run, edition: EditionRef, report: EditionReport) -> None:
    """What a send now would do: the plan's counts and each variant's subject."""
    plan, counts = dry_plan(run.factory, run.settings, edition, now=run.now)
    report.nothing_new, report.not_due = plan.nothing_new, plan.not_due
    report.late, report.waiting = plan.late, plan.waiting
    with run.factory() as session:
        renderer = Renderer(run.settings)
        built = render_variants(
            session, renderer, run.settings, counts, date=run.now, edition=edition.key
        )
    for number, (variant_key, recipients) in enumerate(counts.most_common(), start=1):
        subject = built[variant_key][0].subject
        report.variants.append(VariantReport(number, subject, len(variant_key[1]), recipients))


def _threads_share(engine: Engine) -> bool:
    """Whether another thread sees this database: not an in-memory SQLite one (each thread
    gets its own, empty)."""
    return engine.dialect.name != "sqlite" or engine.url.database not in (None, "", ":memory:")


def _journals(run: _Run) -> Path:
    return journal_folder(_database(run), run.settings.config_path)


def _database(run: _Run) -> str:
    return run.engine.url.render_as_string(hide_password=False)


def _id(edition: EditionRef) -> int:
    assert edition.id is not None
    return edition.id
