"""Database leaf: engine, sessions, the declarative base and the shared ``Category`` model.

Anyone may import this module. Times are stored as UTC and always come back timezone-aware,
on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    TypeDecorator,
    bindparam,
    create_engine,
    event,
    insert,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware datetime stored as UTC (naive on SQLite, timestamptz on PostgreSQL)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = _utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        assert value is None or isinstance(value, dt.datetime)
        return None if value is None else _as_utc(value)

    # On SQLite, one function each way instead of SQLAlchemy's DATETIME processor wrapped
    # in the two above: a million readers' times are read in a plan.

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name == "sqlite":
            return _sqlite_bind
        return super().bind_processor(dialect)

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        if dialect.name == "sqlite":
            return _sqlite_result
        return super().result_processor(dialect, coltype)


def _sqlite_bind(value: dt.datetime | None) -> str | None:
    return None if value is None else _sqlite_time(value)


def _sqlite_result(value: str | dt.datetime | None) -> dt.datetime | None:
    if isinstance(value, str):
        stored = value
        try:  # stored naive, in UTC; parsing the offset is 5x faster than .replace()
            value = dt.datetime.fromisoformat(stored + "+00:00")
        except ValueError:  # it has an offset already
            value = dt.datetime.fromisoformat(stored)
    return None if value is None else _as_utc(value)


def _as_utc(value: dt.datetime) -> dt.datetime:
    """``value`` in UTC, aware; a naive value read back is UTC already."""
    if value.tzinfo is dt.UTC:
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def driver_time(dialect: Dialect) -> Callable[[dt.datetime], Any]:
    """What :class:`UTCDateTime` hands this dialect's driver for an aware datetime, as one
    function: values for :func:`insert_many` and :func:`update_many`. On SQLite it is the
    text SQLAlchemy stores (``YYYY-MM-DD HH:MM:SS.ffffff``, UTC)."""
    if dialect.name == "sqlite":
        return _sqlite_time
    return _utc


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass a timezone-aware value")
    return value.astimezone(dt.UTC)


def _sqlite_time(value: dt.datetime) -> str:
    if value.tzinfo is not dt.UTC:
        value = _utc(value)
    return value.isoformat(" ", "microseconds")[:26]  # without "+00:00"


def insert_many(
    session: Session, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """INSERT ``rows`` (tuples of values for ``columns``) in one driver ``executemany``.

    For the ledger's hot paths: the statement is compiled once and no per-row type
    processing runs, so values must already be in the driver's form (times through
    :func:`driver_time`). About a third of the cost of SQLAlchemy's own executemany."""
    if rows:
        _executemany(session, insert(table), list(columns), list(columns), rows)


def update_many(
    session: Session,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    key: str = "id",
) -> None:
    """UPDATE one row per tuple of values for ``columns``, found by the value of column
    ``key`` (one of ``columns``), in one driver ``executemany``; values as for
    :func:`insert_many`."""
    if not rows:
        return
    statement = (
        update(table)
        .where(table.c[key] == bindparam(f"_{key}"))
        .values({name: bindparam(f"_{name}") for name in columns if name != key})
    )
    _executemany(session, statement, list(columns), None, rows)


def _executemany(
    session: Session,
    statement: ClauseElement,
    columns: list[str],
    column_keys: list[str] | None,
    rows: Sequence[Sequence[Any]],
) -> None:
    """Run ``statement`` once per row of values for ``columns``, bound as parameters named
    after the columns (``column_keys`` given) or ``_`` and the column's name."""
    connection = session.connection()
    compiled = statement.compile(dialect=connection.dialect, column_keys=column_keys)
    assert isinstance(compiled, SQLCompiler)
    binds = [name if column_keys is not None else f"_{name}" for name in columns]
    params: Sequence[Any]
    if not compiled.positional:
        params = [dict(zip(binds, row, strict=True)) for row in rows]
    elif list(compiled.positiontup or ()) == binds:
        params = rows
    else:
        order = [binds.index(bind) for bind in compiled.positiontup or ()]
        params = [tuple([row[i] for i in order]) for row in rows]
    connection.exec_driver_sql(compiled.string, params)


class Category(Base):
    """A topic readers subscribe to, such as Pharmacology."""

    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(200))

    def __repr__(self) -> str:
        return f"Category({self.slug!r})"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``. SQLite gets foreign keys, WAL, a busy timeout, and
    ``BEGIN IMMEDIATE`` transactions: two processes writing at once then wait for each
    other instead of failing with "database is locked" when a reading transaction turns
    into a writing one."""
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"timeout": 30})
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            if ":memory:" not in url:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work is committed on success and rolled back on any error."""
    with factory() as session, session.begin():
        yield session


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
