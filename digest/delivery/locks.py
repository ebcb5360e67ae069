"""One sender per edition: a PostgreSQL advisory lock, or a lease row on SQLite.

A lease whose holder is a process on this machine that no longer exists is taken over at
once, so ``digest send`` right after a crash does not wait for the lease to run out.

On PostgreSQL, extra worker processes (``--workers``, ``digest send --worker``) hold a second,
shared advisory lock while they send: rows they have claimed are ``sending`` without any
crash, so the sender requeues ``sending`` rows only while it holds that lock exclusively
(:func:`no_workers`). PostgreSQL drops a killed process's locks with its connection.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.exc import IntegrityError

from digest.store.db import session_factory, utcnow
from digest.store.models import EditionLock

LEASE = dt.timedelta(minutes=10)


def this_process() -> str:
    """``host:pid:nonce``: unique per lock holder, even for two senders in one process."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _holder_is_dead(holder: str) -> bool:
    """Whether ``holder`` (``host:pid[:nonce]``) is a process on this machine that is gone."""
    parts = holder.split(":")
    if len(parts) < 2 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = parts[1]
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _advisory_id(key: str, purpose: str = "edition") -> int:
    digest = hashlib.sha256(f"digest-{purpose}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def no_workers(engine: Engine, key: str) -> Iterator[bool]:
    """Whether no worker process is sending edition ``key`` (always True on SQLite, which
    has none); while the ``with`` block runs, a worker that starts waits for it to end."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    lock = {"id": _advisory_id(key, "workers")}
    with engine.connect() as conn:
        alone = bool(conn.scalar(text("SELECT pg_try_advisory_lock(:id)"), lock))
        conn.commit()
        try:
            yield alone
        finally:
            if alone:
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), lock)
                conn.commit()


@contextmanager
def working_on(engine: Engine, key: str) -> Iterator[None]:
    """Held by a worker process for as long as it sends edition ``key`` (PostgreSQL)."""
    if engine.dialect.name != "postgresql":
        yield
        return
    lock = {"id": _advisory_id(key, "workers")}
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock_shared(:id)"), lock)
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock_shared(:id)"), lock)
            conn.commit()


class SendLock:
    """``with SendLock(engine, key) as lock: if lock.acquired: ...``"""

    def __init__(
        self, engine: Engine, key: str, *, holder: str | None = None, lease: dt.timedelta = LEASE
    ) -> None:
        self.engine = engine
        self.key = key
        self.holder = holder or this_process()
        self.lease = lease
        self.acquired = False
        self.other: str | None = None  # who holds it, when we could not get it
        self._conn: Connection | None = None
        self._renewed = 0.0  # time.monotonic() of the last write of the lease

    @property
    def _postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def acquire(self) -> bool:
        if self._postgres:
            self._conn = self.engine.connect()
            got = self._conn.scalar(
                text("SELECT pg_try_advisory_lock(:id)"), {"id": _advisory_id(self.key)}
            )
            self._conn.commit()
            if not got:
                self._conn.close()
                self._conn = None
                self.other = "another process"
            self.acquired = bool(got)
            return self.acquired
        factory = session_factory(self.engine)
        now = utcnow()
        try:
            with factory.begin() as session:
                row = session.scalar(select(EditionLock).where(EditionLock.edition_key == self.key))
                if row is None:
                    session.add(
                        EditionLock(
                            edition_key=self.key, holder=self.holder, expires_at=now + self.lease
                        )
                    )
                elif (
                    row.holder == self.holder
                    or row.expires_at <= now
                    or _holder_is_dead(row.holder)
                ):
                    row.holder, row.expires_at = self.holder, now + self.lease
                else:
                    self.other = row.holder
                    return False
        except IntegrityError:  # another process inserted the row a moment ago
            self.other = "another process"
            return False
        self.acquired = True
        self._renewed = time.monotonic()
        return True

    def renew(self) -> None:
        """Extend the lease (SQLite); call it between batches. It is written at most once
        every twentieth of the lease (30 s by default), not once per batch."""
        if not self.acquired or self._postgres:
            return
        if time.monotonic() - self._renewed < self.lease.total_seconds() / 20:
            return
        self._renewed = time.monotonic()
        with session_factory(self.engine).begin() as session:
            row = session.get(EditionLock, self.key)
            if row is not None and row.holder == self.holder:
                row.expires_at = utcnow() + self.lease

    def release(self) -> None:
        if not self.acquired:
            return
        self.acquired = False
        if self._conn is not None:
            self._conn.execute(
                text("SELECT pg_advisory_unlock(:id)"), {"id": _advisory_id(self.key)}
            )
            self._conn.commit()
            self._conn.close()
            self._conn = None
            return
        with session_factory(self.engine).begin() as session:
            row = session.get(EditionLock, self.key)
            if row is not None and row.holder == self.holder:
                session.delete(row)

    def __enter__(self) -> SendLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
