"""Database leaf: engine, sessions, the one bulk writer, the declarative base and the shared
``Category`` model.

Anyone may import this module. Times are stored as UTC and always come back timezone-aware,
on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    Connection,
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
from sqlalchemy.exc import DBAPIError
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
    session: Session | Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> None:
    """INSERT ``rows`` (tuples of values for ``columns``): the one bulk writer.

    Values must already be in the driver's form: times through :func:`driver_time`, JSON
    as its text (``json.dumps``). No per-row type processing runs. On SQLite it is one
    driver ``executemany`` of a statement compiled once (about a third of the cost of
    SQLAlchemy's own executemany); on PostgreSQL one ``COPY ... FROM STDIN``, several times
    faster again than an executemany there. Errors are SQLAlchemy's (``IntegrityError``...),
    whichever path ran."""
    if not rows:
        return
    connection = session.connection() if isinstance(session, Session) else session
    if connection.dialect.name == "postgresql":
        _copy(connection, table, columns, rows)
    else:
        _executemany(connection, ("insert", table, tuple(columns), ""), rows)


def _copy(
    connection: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """``rows`` into ``table`` through PostgreSQL's COPY, in the connection's transaction."""
    from psycopg import sql

    name = sql.Identifier(*[part for part in (table.schema, table.name) if part])
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        name, sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    driver = connection.connection.driver_connection
    assert driver is not None
    dbapi = connection.dialect.loaded_dbapi
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    except dbapi.Error as exc:
        text = statement.as_string(driver)
        raise DBAPIError.instance(text, None, exc, dbapi.Error, dialect=connection.dialect) from exc


def update_many(
    session: Session | Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    key: str = "id",
) -> None:
    """UPDATE one row per tuple of values for ``columns``, found by the value of column
    ``key`` (one of ``columns``), in one driver ``executemany``; values as for
    :func:`insert_many`."""
    if rows:
        connection = session.connection() if isinstance(session, Session) else session
        _executemany(connection, ("update", table, tuple(columns), key), rows)


def refresh_statistics(session: Session | Connection, table: Table) -> None:
    """On PostgreSQL, let the planner see the rows this transaction added to ``table`` (after
    a bulk insert, statistics of a much smaller table make it scan the whole table for each
    look-up until autovacuum gets round to it). Nothing to do on SQLite."""
    connection = session.connection() if isinstance(session, Session) else session
    if connection.dialect.name == "postgresql":
        name = connection.dialect.identifier_preparer.format_table(table)
        connection.exec_driver_sql(f"ANALYZE {name}")


def without_jit(session: Session | Connection) -> None:
    """On PostgreSQL, no JIT compilation for the rest of this transaction. A query that
    probes an index per row over a large table (the readers of a plan) is costed high
    enough for JIT, which then compiles it again at every execution: 4.6 of the plan's 32 s
    of server CPU at a million readers, for nothing gained. Nothing to do on SQLite."""
    connection = session.connection() if isinstance(session, Session) else session
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL jit = off")


#: What :func:`_compiled` compiles: ("insert" or "update", table, columns, key column).
_Statement = tuple[str, Table, tuple[str, ...], str]


def _executemany(connection: Connection, what: _Statement, rows: Sequence[Sequence[Any]]) -> None:
    """Run the statement ``what`` once per row of values for its columns."""
    sql, binds, order = _compiled(what, connection.dialect)
    params: Sequence[Any]
    if order is None:  # named parameters
        params = [dict(zip(binds, row, strict=True)) for row in rows]
    elif order == list(range(len(binds))):
        params = rows
    else:
        params = [tuple([row[i] for i in order]) for row in rows]
    connection.exec_driver_sql(sql, params)


@functools.lru_cache(maxsize=64)
def _compiled(what: _Statement, dialect: Dialect) -> tuple[str, list[str], list[int] | None]:
    """The SQL of an INSERT or UPDATE ... WHERE key = ... of ``columns`` (compiled once per
    statement and dialect), its parameter names in the order of ``columns``, and, for a
    positional driver, where each parameter comes from in a row (None for named ones)."""
    kind, table, columns, key = what
    statement: ClauseElement
    if kind == "insert":
        statement, column_keys, binds = insert(table), list(columns), list(columns)
    else:
        statement = (
            update(table)
            .where(table.c[key] == bindparam(f"_{key}"))
            .values({name: bindparam(f"_{name}") for name in columns if name != key})
        )
        column_keys, binds = None, [f"_{name}" for name in columns]
    compiled = statement.compile(dialect=dialect, column_keys=column_keys)
    assert isinstance(compiled, SQLCompiler)
    if not compiled.positional:
        return compiled.string, binds, None
    return compiled.string, binds, [binds.index(bind) for bind in compiled.positiontup or ()]


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
