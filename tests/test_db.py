"""Times and the driver-level bulk statements of the ledger, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from digest.delivery import ledger
from digest.delivery.ledger import DELIVERIES
from digest.store.db import driver_time, insert_many, transaction, update_many, without_jit
from digest.store.models import Delivery, Edition, Variant

BERLIN = dt.timezone(dt.timedelta(hours=1))
MOMENTS = [
    dt.datetime(2026, 11, 27, 7, 45, 8, 953393, tzinfo=dt.UTC),
    dt.datetime(2026, 11, 27, 8, 0, tzinfo=BERLIN),  # no microseconds, another zone
    dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
]


def _edition(factory: sessionmaker[Session]) -> tuple[int, int]:
    now = MOMENTS[0]
    with transaction(factory) as session:
        edition = Edition(key="2026-W48", cutoff=now, created_at=now)
        session.add(edition)
        session.flush()
        variant = Variant(
            edition_id=edition.id, number=1, category_ids=[], summary_ids=[], web_id="w"
        )
        session.add(variant)
        session.flush()
        return edition.id, variant.id


def test_times_read_back_aware_and_in_utc(factory: sessionmaker[Session]) -> None:
    for moment in MOMENTS:
        with transaction(factory) as session:
            edition = Edition(key=f"k{moment.timestamp()}", cutoff=moment, created_at=moment)
            session.add(edition)
        with factory() as session:
            cutoff = session.scalar(select(Edition.cutoff).where(Edition.key == edition.key))
        assert cutoff == moment and cutoff is not None and cutoff.tzinfo is dt.UTC


def test_a_naive_time_is_refused(factory: sessionmaker[Session]) -> None:
    naive = dt.datetime(2026, 11, 27, 8, 0)
    with pytest.raises(Exception, match="naive datetime"), transaction(factory) as session:
        session.add(Edition(key="naive", cutoff=naive, created_at=naive))
    with pytest.raises(ValueError, match="naive datetime"):
        driver_time(factory.kw["bind"].dialect)(naive)


def test_sqlite_stores_times_as_comparable_text(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("the stored text is SQLite's")
    factory = sessionmaker(engine)
    with transaction(factory) as session:
        for n, moment in enumerate(MOMENTS):
            session.add(Edition(key=f"k{n}", cutoff=moment, created_at=moment))
    with engine.connect() as conn:
        stored = list(conn.execute(text("SELECT cutoff FROM editions ORDER BY key")).scalars())
    expected = [
        "2026-11-27 07:45:08.953393",
        "2026-11-27 07:00:00.000000",
        "1999-12-31 23:59:59.999999",
    ]
    assert stored == expected
    assert [driver_time(engine.dialect)(m) for m in MOMENTS] == expected


def test_insert_many_and_update_many_write_what_the_orm_reads(
    factory: sessionmaker[Session],
) -> None:
    edition_id, variant_id = _edition(factory)
    with transaction(factory) as session:
        time = driver_time(session.get_bind().dialect)
        columns = ("edition_id", "variant_id", "status", "message_id", "attempts")
        columns += ("created_at", "updated_at")
        rows = [
            (edition_id, variant_id, "queued", f"<m{n}@example.org>", 0, time(m), time(m))
            for n, m in enumerate(MOMENTS)
        ]
        insert_many(session, DELIVERIES, columns, rows)
    with factory() as session:
        written = session.scalars(select(Delivery).order_by(Delivery.id)).all()
        assert [(d.message_id, d.created_at, d.status) for d in written] == [
            (f"<m{n}@example.org>", m, "queued") for n, m in enumerate(MOMENTS)
        ]
        ids = [d.id for d in written]
    with transaction(factory) as session:
        time = driver_time(session.get_bind().dialect)
        update_many(
            session,
            DELIVERIES,
            ("detail", "id", "sent_at", "status"),  # not the table's order, "id" not first
            [
                ("250 ok", ids[0], time(MOMENTS[2]), "sent"),
                ("250 ok", ids[2], time(MOMENTS[1]), "sent"),
            ],
        )
    with factory() as session:
        after = session.execute(
            select(Delivery.status, Delivery.detail, Delivery.sent_at).order_by(Delivery.id)
        ).all()
    assert [tuple(row) for row in after] == [
        ("sent", "250 ok", MOMENTS[2]),
        ("queued", None, None),
        ("sent", "250 ok", MOMENTS[1]),
    ]


AWKWARD = [
    'a "quoted" reply, with commas, {braces} and a \\ backslash',
    "NULL",
    "",
    "  spaces around  ",
    "line one\nline two\ttab",
    "Zürich naïve 🙂",
]


def test_recorded_outcomes_read_back_exactly_whatever_their_text(
    factory: sessionmaker[Session],
) -> None:
    """``ledger.record`` (on PostgreSQL one UPDATE from array literals) stores every value
    as given: quotes, backslashes, commas, braces, the word NULL, empty text, line breaks,
    non-ASCII; a None; a bool; times in other zones."""
    edition_id, variant_id = _edition(factory)
    with transaction(factory) as session:
        time = driver_time(session.get_bind().dialect)
        columns = ("edition_id", "variant_id", "status", "message_id", "attempts")
        columns += ("created_at", "updated_at")
        stamp = time(MOMENTS[0])
        rows = [
            (edition_id, variant_id, "sending", f"<r{n}@example.org>", 1, stamp, stamp)
            for n in range(len(AWKWARD) + 1)
        ]
        insert_many(session, DELIVERIES, columns, rows)
    with factory() as session:
        ids = list(session.scalars(select(Delivery.id).order_by(Delivery.id)))
    outcomes: list[dict[str, object]] = [
        {
            "id": row_id,
            "status": "sent",
            "detail": detail,
            "sent_at": MOMENTS[n % 3],
            "updated_at": MOMENTS[n % 3],
        }
        for n, (row_id, detail) in enumerate(zip(ids, AWKWARD, strict=False))
    ]
    outcomes.append(
        {"id": ids[-1], "status": "deferred", "detail": None, "possibly_duplicated": True}
    )
    ledger.record(factory, outcomes)
    with factory() as session:
        after = session.execute(
            select(
                Delivery.status, Delivery.detail, Delivery.sent_at, Delivery.possibly_duplicated
            ).order_by(Delivery.id)
        ).all()
    assert [tuple(row) for row in after] == [
        ("sent", detail, MOMENTS[n % 3], False) for n, detail in enumerate(AWKWARD)
    ] + [("deferred", None, None, True)]


def test_without_jit_lasts_only_for_its_transaction(engine: Engine) -> None:
    """The readers' query of a plan runs without JIT (compiled again at every batch
    otherwise); the connection goes back to the pool with the server's own setting."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no JIT: without_jit does nothing there")
    with engine.connect() as connection:
        before = connection.exec_driver_sql("SHOW jit").scalar()
        connection.commit()
        with connection.begin():
            without_jit(connection)
            assert connection.exec_driver_sql("SHOW jit").scalar() == "off"
        assert connection.exec_driver_sql("SHOW jit").scalar() == before
