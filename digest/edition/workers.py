"""Extra worker processes that help send one edition (PostgreSQL only, ``--workers N``).

The main run starts them after its preflight (:func:`start_workers`); each opens its own
database connection and transport, claims batches with ``FOR UPDATE SKIP LOCKED`` so that
no two processes send the same row, and reports its progress and final tally on a queue
that :class:`WorkerFeed` reads in the main process.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import queue
import time
from dataclasses import replace
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue

from sqlalchemy import Engine, select

from digest.config import Settings
from digest.delivery.journal import FileJournal, journal_folder
from digest.delivery.limits import limiter_for
from digest.delivery.locks import heartbeat_for, working_on
from digest.delivery.sender import Outbound, Sender, Tally
from digest.delivery.transport import make_transport
from digest.edition.heap import long_lived
from digest.edition.passes import Progress, SendOptions, prepare, send_passes
from digest.edition.report import EditionReport
from digest.errors import DigestError, EditionError
from digest.mail.transports.base import Transport
from digest.planning.plan import EditionRef
from digest.store.db import make_engine
from digest.store.models import Edition, EditionStatus
from digest.store.schema import open_database

#: What a worker puts on the feed: (messages handled, failed) since its last batch, or, at
#: the end, its tally.
FeedItem = tuple[int, int] | Tally
#: What a worker sends with: every variant's message template and more (see ``Outbound``),
#: and how many rows were waiting when it was made.
Prepared = tuple[Outbound, int]
#: Transports a worker process can open for itself (not the in-process memory one).
WORKER_TRANSPORTS = ("smtp", "file", "console")


class WorkerFeed:
    """Progress across processes: the main process's own, plus what its worker processes
    put on a queue (messages handled and failed after each batch, their tally at the end).

    Called as the main process's progress callback; :meth:`update` reads the queue."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.queue: Queue[FeedItem] | None = None  # made when workers start
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

    def wait_for(self, processes: list[BaseProcess]) -> int:
        """Wait for ``processes`` to end, reading the queue meanwhile (or a worker could
        block on a full one); returns how many did not end cleanly."""
        errors = 0
        for process in processes:
            while process.is_alive():
                self.update()
                process.join(0.25)
            errors += process.exitcode != 0
        if processes:
            self.update()  # what they put last
        return errors


def _reporter(feed: Queue[FeedItem]) -> Progress:
    """A worker process's progress callback: what changed since its last batch, queued."""
    last = [0, 0]

    def put(done: int, total: int, failed: int) -> None:
        feed.put((done - last[0], failed - last[1]))
        last[:] = done, failed

    return put


def start_workers(
    settings: Settings,
    key: str,
    workers: int,
    engine: Engine,
    transport: Transport,
    feed: WorkerFeed,
    *,
    now: dt.datetime | None = None,
    prepared: Prepared | None = None,
) -> list[BaseProcess]:
    """Start ``workers - 1`` processes helping to send edition ``key`` through the same kind
    of transport (their messages dated ``now``, as the main process's); none when ``workers``
    is 1. ``prepared``: what the main process rendered, checked and built for every variant
    with rows waiting, and how many rows wait; the workers send with it instead of rendering
    every variant again (each used to spend more CPU on that than on its share of a 100,000
    reader send)."""
    if workers <= 1:
        return []
    if engine.dialect.name != "postgresql":
        raise EditionError(
            "--workers needs PostgreSQL; on SQLite one sender uses smtp_connections connections"
        )
    if transport.name not in WORKER_TRANSPORTS:
        raise EditionError(f"--workers cannot share the {transport.name} transport")
    settings = replace(settings, transport=transport.name)  # --transport applies to all
    context = multiprocessing.get_context("spawn")
    feed.queue = context.Queue()
    processes: list[BaseProcess] = [
        context.Process(
            target=work_on_edition, args=(settings, key, feed.queue, now, prepared), daemon=False
        )
        for _ in range(workers - 1)
    ]
    for process in processes:
        process.start()
    return processes


def work_on_edition(
    settings: Settings,
    key: str,
    feed: Queue[FeedItem] | None = None,
    now: dt.datetime | None = None,
    prepared: Prepared | None = None,
) -> EditionReport:
    """An extra worker: send rows of an edition another process planned and is sending
    (no planning; ``FOR UPDATE SKIP LOCKED`` keeps workers' batches disjoint). With ``feed``
    (a multiprocessing queue), it reports its progress and its tally to the main process.
    Without ``prepared`` (the main process's built variants), it renders, checks and builds
    every variant with rows waiting itself (``digest send --worker``)."""
    started = time.monotonic()
    engine = make_engine(settings.database_url)
    factory = open_database(settings, engine)
    with factory() as session:
        found = session.scalar(select(Edition).where(Edition.key == key))
        edition = EditionRef.of(found) if found is not None else None
    if edition is None or edition.id is None or edition.status != EditionStatus.OPEN:
        raise EditionError(f"edition {key} is not being sent (see `digest editions list`)")
    report = EditionReport(key=key, cutoff=edition.cutoff, created=False)
    options = SendOptions(progress=_reporter(feed) if feed is not None else None)
    transport = make_transport(settings)
    database = engine.url.render_as_string(hide_password=False)
    journal = FileJournal(journal_folder(database, settings.config_path), database, key)
    recorded = False
    try:
        lease = dt.timedelta(seconds=settings.send_lease_seconds)
        # from before its first claim to after its last; stops when the lock is gone
        with working_on(engine, key, heartbeat_for(lease)) as holds, long_lived() as heap:
            outbound, total = prepared or prepare(factory, settings, edition, now=now)
            heap.settle()  # the templates (see digest.edition.heap)
            limiter = limiter_for(settings, engine)
            with Sender(
                factory, transport, outbound, limiter, journal=journal, holds=holds
            ) as sender:
                report.stopped = send_passes(
                    factory,
                    settings,
                    edition.id,
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
        transport.close()
    if feed is not None:
        feed.put(sender.tally)
    report.sent, report.failed = sender.tally.sent, sender.tally.failed
    report.seconds = time.monotonic() - started
    return report
