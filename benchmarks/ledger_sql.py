"""What the ledger's statements cost the database, per row, apart from most of the Python
around them: the plan's query of readers (as the plan runs it, SQLAlchemy's row handling
included), its insert of queued rows, the claim (reading the next rows with their readers,
and marking them ``sending``), and the record of each outcome (issue 17: where the CPU
before SMTP goes, and what a claim that writes no row would save).

The statements are the package's own (``digest.delivery.ledger``, ``digest.store.db``), in
the batch sizes a run uses, each batch in its own transaction, on a database of N generated
subscribers (benchmarks/edition_data.py, with last week's ledger: the table and its indexes
as large as in a steady week). The rows' values are made before the clock starts.

- SQLite: the driver's statements; the CPU is this process's (SQLite runs in it). The
  claim's read and its mark are two statements, timed apart.
- PostgreSQL: the claim is one statement (``UPDATE ... FROM (SELECT ... FOR UPDATE SKIP
  LOCKED) RETURNING``); beside it, the same read with no write, which is what a claim that
  writes no row would still cost. Client CPU is this process's; server CPU is the one
  backend's, read from ``/proc`` (the server must run on this machine).

    .venv/bin/python -m benchmarks.ledger_sql [--subscribers 300000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

from sqlalchemy import Connection, select, text
from sqlalchemy.orm import Session

from benchmarks.edition_data import NOW, generate
from benchmarks.pgcpu import process_cpu
from benchmarks.send_edition import database
from digest.config import Settings
from digest.delivery import ledger
from digest.planning.ids import MESSAGE_IDS
from digest.planning.plan import _PLANNED_COLUMNS, READER_BATCH, EditionRef, iter_readers
from digest.store.db import (
    _compiled,
    driver_time,
    insert_many,
    make_engine,
    session_factory,
    transaction,
)
from digest.store.models import Edition, Variant
from subscribers.models import Subscriber

RECORD_EVERY = 100  # as the sender's


def _default_batch() -> int:
    value = next(f.default for f in fields(Settings) if f.name == "send_batch_size")
    assert isinstance(value, int)
    return value


#: Rows claimed at a time: the default of ``send_batch_size``.
CLAIM = _default_batch()
SENT_COLUMNS = ("id", "status", "detail", "sent_at", "updated_at")
REPLY = "250 2.0.0 Ok: queued as 4XyZ1a2b3c"
#: The next rows with their readers, as a PostgreSQL claim reads them, writing nothing.
_PG_READ = (
    "SELECT d.id, d.variant_id, d.message_id, d.status, d.attempts + 1,"
    " d.possibly_duplicated, s.email, s.name, s.token, s.status"
    " FROM deliveries AS d LEFT OUTER JOIN subscribers AS s ON s.id = d.subscriber_id"
    " WHERE d.edition_id = %s AND d.status IN ('queued', 'deferred') AND d.id > %s"
    " ORDER BY d.id LIMIT %s"
)


@dataclass
class Phase:
    label: str
    client: float = 0.0  # seconds of CPU
    server: float = 0.0


@dataclass(frozen=True)
class Ready:
    """A generated database with this week's edition, one variant and the planned rows'
    values (made before any clock starts)."""

    url: str
    edition_id: int
    variant_id: int
    readers: list[int]
    message_ids: list[str]


def prepare(url: str, subscribers: int) -> Ready:
    generate(url, subscribers)
    engine = make_engine(url)
    with transaction(session_factory(engine)) as session:
        edition = Edition(key="2030-W10", cutoff=NOW, created_at=NOW)
        session.add(edition)
        session.flush()
        variant = Variant(
            edition_id=edition.id, number=1, category_ids=[], summary_ids=[], web_id="bench"
        )
        session.add(variant)
        session.flush()
        ids = list(session.scalars(select(Subscriber.id).order_by(Subscriber.id)))
        edition_id, variant_id = edition.id, variant.id
    engine.dispose()
    message_ids = MESSAGE_IDS.new("2030-W10", "example.org", len(ids))
    return Ready(url, edition_id, variant_id, ids, message_ids)


def planned_rows(ready: Ready, stamp: object) -> list[tuple[object, ...]]:
    return [
        (ready.edition_id, reader, ready.variant_id, "queued", message_id, 0, stamp, stamp)
        for reader, message_id in zip(ready.readers, ready.message_ids, strict=True)
    ]


def chunks(rows: Sequence[tuple[object, ...]], size: int) -> Iterator[Sequence[tuple[object, ...]]]:
    for first in range(0, len(rows), size):
        yield rows[first : first + size]


def read_readers(session: Session, ready: Ready, phase: Phase, backend: int | None) -> None:
    """The plan's query of readers (their categories and last edition's cutoff), batch by
    batch as the plan runs it: SQLAlchemy's row handling included."""
    edition = EditionRef(ready.edition_id, "2030-W10", NOW, "open")
    readers = 0
    with clock(phase, backend):
        batches = iter_readers(session, edition)
        while True:
            with session.begin():
                batch = next(batches, None)
                if batch is None:
                    break
                readers += len(batch)
    if readers != len(ready.readers):
        raise RuntimeError(f"{readers} readers read of {len(ready.readers)}")


# ---------------------------------------------------------------- SQLite


def measure_sqlite(ready: Ready, path: Path) -> list[Phase]:
    engine = make_engine(ready.url)
    stamp = driver_time(engine.dialect)(NOW)
    insert_sql = _compiled(("insert", ledger.DELIVERIES, _PLANNED_COLUMNS, ""), engine.dialect)[0]
    record_sql, _, order = _compiled(
        ("update", ledger.DELIVERIES, SENT_COLUMNS, "id"), engine.dialect
    )
    assert order is not None  # sqlite3 is a positional driver
    planned = planned_rows(ready, stamp)
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in ("foreign_keys=ON", "journal_mode=WAL", "synchronous=NORMAL"):
        db.execute(f"PRAGMA {pragma}")

    def in_transaction(statement: str, rows: Sequence[tuple[object, ...]]) -> None:
        db.execute("BEGIN IMMEDIATE")
        db.executemany(statement, rows)
        db.execute("COMMIT")

    readers, insert, pick, mark, record = (
        Phase("plan: the readers' query, as the plan runs it"),
        Phase("plan: insert the queued rows"),
        Phase("claim: read the next rows with their readers"),
        Phase("claim: mark them sending"),
        Phase("record: update each outcome"),
    )
    with Session(engine) as session:
        read_readers(session, ready, readers, None)
    engine.dispose()
    with clock(insert):
        for rows in chunks(planned, READER_BATCH):
            in_transaction(insert_sql, rows)
    statuses = ledger.CLAIMABLE
    marks = ", ".join("?" * len(statuses))
    pick_sql = ledger._SQLITE_PICK.format(marks=marks)
    mark_sql = ledger._SQLITE_MARK.format(marks=marks)
    claimed: list[int] = []
    after = 0
    while True:
        db.execute("BEGIN IMMEDIATE")
        with clock(pick):
            found = db.execute(pick_sql, (ready.edition_id, *statuses, after, CLAIM)).fetchall()
        if not found:
            db.execute("COMMIT")
            break
        with clock(mark):
            db.execute(mark_sql, (stamp, ready.edition_id, after, found[-1][0], *statuses))
        db.execute("COMMIT")
        claimed.extend(row[0] for row in found)
        after = found[-1][0]
    sent = [(i, "sent", REPLY, stamp, stamp) for i in claimed]  # SENT_COLUMNS
    outcomes = [tuple(row[i] for i in order) for row in sent]  # as update_many passes them
    with clock(record):
        for rows in chunks(outcomes, RECORD_EVERY):
            in_transaction(record_sql, rows)
    (sent_rows,) = db.execute(SENT_ROWS.replace("%s", "?"), (ready.edition_id,)).fetchone()
    db.close()
    check(len(planned), len(claimed), sent_rows)
    return [readers, insert, pick, mark, record]


# ---------------------------------------------------------------- PostgreSQL


def measure_postgres(ready: Ready) -> list[Phase]:
    engine = make_engine(ready.url)
    stamp = driver_time(engine.dialect)(NOW)
    planned = planned_rows(ready, stamp)
    readers, insert, read, claim, record = (
        Phase("plan: the readers' query, as the plan runs it"),
        Phase("plan: insert the queued rows (COPY)"),
        Phase("claim that writes no row: the same read alone"),
        Phase("claim: read, lock and mark sending (one statement)"),
        Phase("record: update each outcome (unnest)"),
    )
    with engine.connect() as connection:
        backend = int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
        connection.commit()
        with Session(bind=connection) as session:
            read_readers(session, ready, readers, backend)
        with clock(insert, backend):
            for rows in chunks(planned, READER_BATCH):
                with connection.begin():
                    insert_many(connection, ledger.DELIVERIES, _PLANNED_COLUMNS, rows)
        with connection.begin():
            connection.exec_driver_sql("ANALYZE deliveries")  # as the plan does
        after = 0
        with clock(read, backend):
            while found := in_one(connection, _PG_READ, (ready.edition_id, after, CLAIM)):
                after = found[-1][0]
        claimed = claim_all(connection, ready.edition_id, claim, backend)
        sent = [(i, "sent", REPLY, stamp, stamp) for i in claimed]
        with clock(record, backend):
            for rows in chunks(sent, RECORD_EVERY):
                with connection.begin():
                    ledger._update_from_arrays(connection, SENT_COLUMNS, rows)
        with connection.begin():
            sent_rows = connection.execute(
                text(SENT_ROWS.replace("%s", ":e")), {"e": ready.edition_id}
            )
            sent_count = int(sent_rows.scalar_one())
    engine.dispose()
    check(len(planned), len(claimed), sent_count)
    return [readers, insert, read, claim, record]


def in_one(connection: Connection, sql: str, values: tuple[object, ...]) -> list[tuple[int]]:
    with connection.begin():
        return [tuple(row) for row in connection.exec_driver_sql(sql, values)]


def claim_all(connection: Connection, edition_id: int, phase: Phase, backend: int) -> list[int]:
    claimed: list[int] = []
    after = 0
    with Session(bind=connection) as session, clock(phase, backend):
        while True:
            with session.begin():
                found = ledger._claim_in_one_statement(
                    session, edition_id, after, CLAIM, ledger.CLAIMABLE
                )
            if not found:
                return claimed
            claimed.extend(c.delivery_id for c in found)
            after = found[-1].delivery_id


# ---------------------------------------------------------------- common

SENT_ROWS = (
    "SELECT count(*) FROM deliveries WHERE edition_id = %s AND status = 'sent'"
    " AND attempts = 1 AND sent_at IS NOT NULL"
)


def check(planned: int, claimed: int, sent: int) -> None:
    """Each statement did its whole work (or the figures would measure less)."""
    if not planned == claimed == sent:
        raise RuntimeError(f"{planned} planned, {claimed} claimed, {sent} sent")


@contextmanager
def clock(phase: Phase, backend: int | None = None) -> Iterator[None]:
    """Add the CPU spent in the block to ``phase``: this process's, and the backend's."""
    server = process_cpu(backend) if backend is not None else None
    started = time.process_time()
    yield
    phase.client += time.process_time() - started
    if backend is not None:
        now = process_cpu(backend)
        if server is None or now is None:
            raise RuntimeError(f"cannot read the CPU of backend {backend} from /proc")
        phase.server += now - server


def report(title: str, rows: int, phases: list[Phase], server: bool) -> None:
    print(f"{title}: the ledger's statements over {rows:,} rows, CPU per row")
    for phase in phases:
        client, backend = phase.client / rows * 1e6, phase.server / rows * 1e6
        figures = f"client {client:5.2f} + server {backend:5.2f} us" if server else ""
        total = client + backend
        print(f"  {phase.label:<52} {total:5.2f} us = {total:5.1f} s at 1,000,000  {figures}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=300_000)
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL database on this machine")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as folder,
        database(args.postgres, folder, "ledger") as url,
    ):
        ready = prepare(url, args.subscribers)
        if args.postgres:
            phases = measure_postgres(ready)
        else:
            phases = measure_sqlite(ready, Path(folder) / "ledger.sqlite3")
    title = "PostgreSQL" if args.postgres else "SQLite"
    report(title, len(ready.readers), phases, server=bool(args.postgres))


if __name__ == "__main__":
    main()
