"""The delivery ledger: claim rows to send, record outcomes, count. Bulk statements only.

Rows move ``queued -> sending -> sent | deferred | failed | skipped``. A row found ``sending``
when a run starts (under the edition's send lock) was claimed by a sender that died or lost
its lock; the outcome journals (:mod:`digest.delivery.journal`) say what became of it, and
:func:`resolve_in_flight` records it: its outcome when one is known, back to ``queued``
when it never went on the wire, and back to ``queued`` with the in-flight mark
(``possibly_duplicated``, ``detail = IN_FLIGHT``) when it may have reached its reader. It
keeps its Message-ID, so a resend is recognisable.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from digest.store.db import driver_time, transaction, update_many, utcnow
from digest.store.models import Delivery, DeliveryStatus, Edition, EditionStatus, Variant
from subscribers.models import Subscriber

DELIVERIES = Delivery.metadata.tables[Delivery.__tablename__]
EDITIONS = Edition.metadata.tables[Edition.__tablename__]
SUBSCRIBERS = Subscriber.metadata.tables[Subscriber.__tablename__]
#: Rows that still have to go out.
CLAIMABLE = (DeliveryStatus.QUEUED.value, DeliveryStatus.DEFERRED.value)
PENDING = (*CLAIMABLE, DeliveryStatus.SENDING.value)
IN_FLIGHT = "in flight during a crash; sent again with its original Message-ID"
#: Detail prefix of rows that failed for good after temporary failures only.
GAVE_UP = "gave up after"


class Claim(NamedTuple):
    """A ledger row claimed for sending, with what the message needs (a named tuple: a
    batch makes hundreds of them at a time)."""

    delivery_id: int
    variant_id: int
    message_id: str
    was: str  # status before the claim
    attempts: int  # including this one
    #: may have reached its reader before (the in-flight mark): true, or 1 (SQLite's
    #: driver gives the column's 0 or 1 as it is)
    resend: int
    address: str | None
    name: str | None
    token: str | None
    subscriber_status: str | None


def count(session: Session, edition_id: int, statuses: Sequence[str]) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.edition_id == edition_id, Delivery.status.in_(statuses))
        )
        or 0
    )


def counts_by_status(session: Session, edition_id: int) -> Counter[str]:
    rows = session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.edition_id == edition_id)
        .group_by(Delivery.status)
    ).all()
    return Counter({status: n for status, n in rows})


def in_flight(session: Session, edition_id: int) -> list[int]:
    """Ids of the edition's rows left ``sending``, in id order."""
    return list(
        session.scalars(
            select(Delivery.id)
            .where(
                Delivery.edition_id == edition_id,
                Delivery.status == DeliveryStatus.SENDING.value,
            )
            .order_by(Delivery.id)
        )
    )


def resolve_in_flight(
    factory: sessionmaker[Session],
    edition_id: int,
    *,
    outcomes: Sequence[dict[str, object]],
    resend: Sequence[int],
    unsent: Sequence[int],
) -> int:
    """Settle rows left ``sending``: ``outcomes`` (known replies) are recorded as such and
    not sent again; ``resend`` rows (on the wire, outcome unknown) go back to ``queued``
    with the in-flight mark; ``unsent`` rows (never on the wire) go back to ``queued`` as
    if never claimed. Only rows still ``sending`` change; returns how many were marked."""
    record(factory, outcomes)
    marked = 0
    sending = DeliveryStatus.SENDING.value
    with transaction(factory) as session:
        for chunk in _chunks(resend):
            result = session.execute(
                update(Delivery)
                .where(Delivery.id.in_(chunk), Delivery.status == sending)
                .values(
                    status=DeliveryStatus.QUEUED.value,
                    detail=IN_FLIGHT,
                    possibly_duplicated=True,
                    updated_at=utcnow(),
                )
            )
            marked += int(getattr(result, "rowcount", 0) or 0)
        for chunk in _chunks(unsent):
            session.execute(
                update(Delivery)
                .where(Delivery.id.in_(chunk), Delivery.status == sending)
                .values(
                    status=DeliveryStatus.QUEUED.value,
                    attempts=Delivery.attempts - 1,
                    updated_at=utcnow(),
                )
            )
    return marked


def _chunks(ids: Sequence[int], size: int = 500) -> list[Sequence[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


class PendingVariant(NamedTuple):
    """A variant of an edition with rows still to send."""

    id: int
    number: int
    key: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # a VariantKey
    web_id: str
    waiting: int  # rows not yet sent


def pending_by_variant(session: Session, edition_id: int) -> list[PendingVariant]:
    """Variants that still have rows to send, with how many, in number order."""
    rows = session.execute(
        select(Delivery.variant_id, func.count())
        .where(Delivery.edition_id == edition_id, Delivery.status.in_(PENDING))
        .group_by(Delivery.variant_id)
    ).all()
    waiting = {variant_id: n for variant_id, n in rows}
    variants = session.scalars(select(Variant).where(Variant.id.in_(waiting))).all()
    return [
        PendingVariant(v.id, v.number, v.key, v.web_id, waiting[v.id])
        for v in sorted(variants, key=lambda v: v.number)
    ]


def claim(
    factory: sessionmaker[Session],
    edition_id: int,
    after: int,
    limit: int,
    statuses: Sequence[str] = CLAIMABLE,
    *,
    on_claim: Callable[[list[int]], None] | None = None,
) -> list[Claim] | None:
    """Mark the next ``limit`` rows after id ``after`` as ``sending``, in one transaction;
    None when the edition was cancelled or paused (nothing is claimed then). On PostgreSQL,
    rows another worker is claiming are skipped (``FOR UPDATE SKIP LOCKED``).

    ``on_claim`` gets the claimed ids before the transaction commits (the sender's outcome
    journal notes them there: no row is ever ``sending`` without its journal knowing)."""
    with transaction(factory) as session:
        status = session.scalar(select(EDITIONS.c.status).where(EDITIONS.c.id == edition_id))
        if status in (EditionStatus.CANCELLED, EditionStatus.PAUSED):
            return None
        if session.get_bind().dialect.name == "postgresql":
            claims = _claim_in_one_statement(session, edition_id, after, limit, statuses)
        else:
            claims = _claim_sqlite(session, edition_id, after, limit, statuses)
        if claims and on_claim is not None:
            on_claim([c.delivery_id for c in claims])
    return claims


def _claim_sqlite(
    session: Session, edition_id: int, after: int, limit: int, statuses: Sequence[str]
) -> list[Claim]:
    """SQLite, under the write lock ``BEGIN IMMEDIATE`` took: read the next ``limit`` rows
    with their readers, then mark exactly those ``sending`` by their id range (the rows of
    the range with a claimable status: nothing else can have changed them meanwhile). On
    the driver's cursor: SQLAlchemy's rows and its expansion of 500 ids into an IN list
    were most of a claim's cost."""
    marks = ", ".join("?" * len(statuses))
    cursor = _driver_cursor(session)
    try:
        cursor.execute(_SQLITE_PICK.format(marks=marks), (edition_id, *statuses, after, limit))
        claims = list(map(Claim._make, cursor.fetchall()))
        if claims:
            last = claims[-1].delivery_id
            values = (driver_time(session.get_bind().dialect)(utcnow()), edition_id)
            cursor.execute(_SQLITE_MARK.format(marks=marks), (*values, after, last, *statuses))
            if cursor.rowcount != len(claims):  # the write lock makes this impossible
                raise RuntimeError(f"claimed {len(claims)} rows but marked {cursor.rowcount}")
    finally:
        cursor.close()
    return claims


#: The next rows to send of an edition, with their readers (an outer join: a reader erased
#: since planning is skipped by the sender), in id order through ix_deliveries_edition_id_id.
_SQLITE_PICK = (
    "SELECT d.id, d.variant_id, d.message_id, d.status, d.attempts + 1,"
    " d.possibly_duplicated, s.email, s.name, s.token, s.status"
    " FROM deliveries AS d LEFT OUTER JOIN subscribers AS s ON s.id = d.subscriber_id"
    " WHERE d.edition_id = ? AND d.status IN ({marks}) AND d.id > ?"
    " ORDER BY d.id LIMIT ?"
)
_SQLITE_MARK = (
    "UPDATE deliveries SET status = 'sending', attempts = attempts + 1, updated_at = ?"
    " WHERE edition_id = ? AND id > ? AND id <= ? AND status IN ({marks})"
)


def _driver_cursor(session: Session) -> Any:
    """A cursor of the DB-API connection under ``session``, in its transaction."""
    driver = session.connection().connection.driver_connection
    assert driver is not None
    return driver.cursor()


def _claim_in_one_statement(
    session: Session, edition_id: int, after: int, limit: int, statuses: Sequence[str]
) -> list[Claim]:
    """PostgreSQL: pick, lock (``SKIP LOCKED``: rows another worker is claiming), mark
    ``sending`` and read the rows with their readers in one statement, one round trip
    (``UPDATE ... FROM picked ... RETURNING``), instead of a SELECT and an UPDATE of 500
    listed ids."""
    picked = (
        select(DELIVERIES.c.id, DELIVERIES.c.status)
        .where(
            DELIVERIES.c.edition_id == edition_id,
            DELIVERIES.c.status.in_(statuses),
            DELIVERIES.c.id > after,
        )
        .order_by(DELIVERIES.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("picked")
    )
    claimed = (
        update(DELIVERIES)
        .where(DELIVERIES.c.id == picked.c.id)
        .values(
            status=DeliveryStatus.SENDING.value,
            attempts=DELIVERIES.c.attempts + 1,
            updated_at=utcnow(),
        )
        .returning(
            DELIVERIES.c.id,
            DELIVERIES.c.variant_id,
            DELIVERIES.c.message_id,
            picked.c.status.label("was"),
            DELIVERIES.c.attempts,  # the new value: this attempt included
            DELIVERIES.c.possibly_duplicated.label("resend"),
            DELIVERIES.c.subscriber_id,
        )
        .cte("claimed")
    )
    query = (
        select(
            claimed.c.id,
            claimed.c.variant_id,
            claimed.c.message_id,
            claimed.c.was,
            claimed.c.attempts,
            claimed.c.resend,
            SUBSCRIBERS.c.email,
            SUBSCRIBERS.c.name,
            SUBSCRIBERS.c.token,
            SUBSCRIBERS.c.status,
        )
        .outerjoin(SUBSCRIBERS, SUBSCRIBERS.c.id == claimed.c.subscriber_id)
        .order_by(claimed.c.id)
    )
    return list(map(Claim._make, session.execute(query)))


def record(factory: sessionmaker[Session], outcomes: Sequence[dict[str, object]]) -> None:
    """Write outcomes (dicts with ``id`` and the changed columns; outcomes of one kind list
    their columns in the same order) in one transaction: one driver executemany per set of
    changed columns. On a plain connection, not a session: it runs every hundred messages."""
    if not outcomes:
        return
    engine: Engine = factory.kw["bind"]
    time = driver_time(engine.dialect)
    last: tuple[object, object] = (None, None)  # sent_at is updated_at: one conversion
    groups: dict[tuple[str, ...], list[tuple[object, ...]]] = {}
    for outcome in outcomes:
        values = []
        for value in outcome.values():
            if isinstance(value, dt.datetime):
                if value is not last[0]:
                    last = (value, time(value))
                value = last[1]
            values.append(value)
        groups.setdefault(tuple(outcome), []).append(tuple(values))
    with engine.begin() as connection:
        for columns, rows in groups.items():
            if connection.dialect.name == "postgresql":
                _update_from_arrays(connection, columns, rows)
            else:
                update_many(connection, DELIVERIES, columns, rows)


def _update_from_arrays(
    connection: Connection, columns: Sequence[str], rows: Sequence[Sequence[object]]
) -> None:
    """PostgreSQL: one ``UPDATE ... FROM unnest(arrays)`` for all ``rows`` (one array per
    column), instead of one UPDATE per row: the server parses, plans and runs one statement
    for a hundred outcomes."""
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    types = [DELIVERIES.c[name].type.compile(dialect=dialect) for name in columns]  # known
    arrays = ", ".join(f"%s::{kind}[]" for kind in types)
    names = ", ".join(map(quote, columns))
    changed = ", ".join(f"{quote(name)} = v.{quote(name)}" for name in columns if name != "id")
    table = dialect.identifier_preparer.format_table(DELIVERIES)
    statement = (  # only column names of the table, quoted; every value a parameter
        f"UPDATE {table} AS d SET {changed} "  # noqa: S608
        f"FROM unnest({arrays}) AS v({names}) WHERE d.id = v.id"
    )
    connection.exec_driver_sql(statement, tuple(map(array_literal, zip(*rows, strict=True))))


def array_literal(values: Iterable[object]) -> str:
    """A PostgreSQL array literal (``{1,"text",NULL}``) of ints, strings, bools, aware
    datetimes and Nones, cast to the column's array type by the statement: a third of the
    client's CPU of psycopg's own list adaptation, which walks every element in Python."""
    return "{" + ",".join(map(_element, values)) + "}"


def _element(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware value")
        return f'"{value.isoformat()}"'
    if isinstance(value, str):  # quoted: commas, braces, spaces and "NULL" stay text
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"no array literal for {type(value).__name__}")


def release(factory: sessionmaker[Session], claims: Sequence[Claim]) -> None:
    """Give back claimed rows that were never handed to the transport."""
    if not claims:
        return
    record(
        factory,
        [{"id": c.delivery_id, "status": c.was, "attempts": c.attempts - 1} for c in claims],
    )


def complete_if_done(session: Session, edition_id: int, *, now: dt.datetime | None = None) -> bool:
    """Mark the edition complete (at ``now``, by default the real time) when no row is left
    to send; returns whether it is."""
    if count(session, edition_id, PENDING):
        return False
    edition = session.get(Edition, edition_id)
    assert edition is not None
    if edition.status == EditionStatus.OPEN:
        edition.status = EditionStatus.COMPLETE.value
        edition.completed_at = now or utcnow()
    return edition.status == EditionStatus.COMPLETE


def cancel(session: Session, edition: Edition) -> int:
    """Cancel ``edition``: rows not yet handed over are skipped; returns how many. Rows a
    running sender holds (``sending``) are recorded by that sender, which then stops."""
    edition.status = EditionStatus.CANCELLED.value
    return skip_cancelled(session, edition.id)


def skip_cancelled(session: Session, edition_id: int) -> int:
    """Skip the rows of a cancelled edition not yet handed over; returns how many."""
    result = session.execute(
        update(Delivery)
        .where(Delivery.edition_id == edition_id, Delivery.status.in_(CLAIMABLE))
        .values(
            status=DeliveryStatus.SKIPPED.value, detail="edition cancelled", updated_at=utcnow()
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def requeue_gave_up(session: Session, edition_id: int) -> int:
    """Queue again the rows that failed only through temporary failures (``--retry-failed``);
    permanent failures (5xx) stay failed. Reopens a completed edition."""
    result = session.execute(
        update(Delivery)
        .where(
            Delivery.edition_id == edition_id,
            Delivery.status == DeliveryStatus.FAILED.value,
            Delivery.detail.like(f"{GAVE_UP}%"),
        )
        .values(status=DeliveryStatus.QUEUED.value, attempts=0, updated_at=utcnow())
    )
    requeued = int(getattr(result, "rowcount", 0) or 0)
    edition = session.get(Edition, edition_id)
    if requeued and edition is not None and edition.status == EditionStatus.COMPLETE:
        edition.status, edition.completed_at = EditionStatus.OPEN.value, None
    return requeued
