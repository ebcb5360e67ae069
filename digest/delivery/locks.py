"""One sender per edition: a PostgreSQL advisory lock, or a lease row on SQLite.

A lease whose holder is a process on this machine that no longer exists is taken over at
once, so ``digest send`` right after a crash does not wait for the lease to run out.

On PostgreSQL, extra worker processes (``--workers``, ``digest send --worker``) hold a second,
shared advisory lock while they send: rows they have claimed are ``sending`` without any
crash, so the sender requeues ``sending`` rows only while it holds that lock exclusively
(:func:`no_workers`). PostgreSQL drops a killed process's locks with its connection.

A sender must not go on once it can no longer prove it holds the edition (a lease not
renewed in time, a lock session ended by a pooler restart or ``pg_terminate_backend``):
:meth:`SendLock.holds` says so, from a heartbeat thread's proofs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType

from sqlalchemy import Connection, Engine, select, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from digest.store.db import session_factory, utcnow
from digest.store.models import EditionLock

LEASE = dt.timedelta(minutes=10)
#: The longest interval between two proofs that a sender still holds its edition (s).
HEARTBEAT = 10.0


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


def heartbeat_for(lease: dt.timedelta) -> float:
    """Seconds between two proofs of a hold: a tenth of the lease, at most HEARTBEAT."""
    return min(lease.total_seconds() / 10, HEARTBEAT)


def _advisory_id(key: str, purpose: str = "edition", schema: str = "public") -> int:
    """The advisory lock of edition ``key`` for ``purpose`` in ``schema``. Advisory locks
    are per database, not per schema: two lists in one database (each in its own schema,
    chosen by the URL's search_path) must not share their weeks' locks. The default
    schema's ids are those of versions that did not name it."""
    scope = "" if schema == "public" else f"{schema}/"
    digest = hashlib.sha256(f"digest-{purpose}:{scope}{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def advisory_id(conn: Connection, key: str, purpose: str = "edition") -> int:
    """:func:`_advisory_id` in the schema ``conn`` works in."""
    return _advisory_id(key, purpose, conn.scalar(text("SELECT current_schema()")) or "public")


def _advisory_held(conn: Connection, lock_id: int) -> bool:
    """Whether ``conn``'s own session holds advisory lock ``lock_id`` (raises when the
    session is gone)."""
    key = lock_id & 0xFFFF_FFFF_FFFF_FFFF
    held = conn.scalar(
        text(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND pid = pg_backend_pid() AND classid::bigint = :hi"
            " AND objid::bigint = :lo AND objsubid = 1)"
        ),
        {"hi": key >> 32, "lo": key & 0xFFFF_FFFF},
    )
    conn.commit()
    return bool(held)


class Heartbeat:
    """A thread proving a hold every ``interval`` seconds with ``check`` (True: held;
    False: lost for good; an exception: lost for good when ``errors_lose``, else merely
    not proven this time). :meth:`holds` is True while the last proof, started at most
    ``proof`` seconds ago, stands and nothing was lost."""

    def __init__(
        self, check: Callable[[], bool], interval: float, proof: float, *, errors_lose: bool
    ) -> None:
        self.check, self.interval, self.proof = check, interval, proof
        self.errors_lose = errors_lose
        self.lost: str | None = None
        self._valid_until = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, proven_at: float) -> None:
        self._valid_until = proven_at + self.proof
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="digest-lock", daemon=True)
        self._thread.start()

    def holds(self) -> bool:
        return self.lost is None and time.monotonic() < self._valid_until

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            started = time.monotonic()
            try:
                held = self.check()
            except Exception as exc:
                if self.errors_lose:
                    self.lost = f"its lock session ended ({type(exc).__name__})"
                    return
                continue  # e.g. SQLite busy: the proof runs out unless a later one works
            if not held:
                self.lost = "it no longer holds the lock"
                return
            self._valid_until = started + self.proof


@contextmanager
def no_workers(engine: Engine, key: str) -> Iterator[bool]:
    """Whether no worker process is sending edition ``key`` (always True on SQLite, which
    has none); while the ``with`` block runs, a worker that starts waits for it to end."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    with engine.connect() as conn:
        lock = {"id": advisory_id(conn, key, "workers")}
        alone = bool(conn.scalar(text("SELECT pg_try_advisory_lock(:id)"), lock))
        conn.commit()
        try:
            yield alone
        finally:
            if alone:
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), lock)
                conn.commit()


@contextmanager
def working_on(
    engine: Engine, key: str, heartbeat: float = HEARTBEAT
) -> Iterator[Callable[[], bool]]:
    """Held by a worker process for as long as it sends edition ``key`` (PostgreSQL);
    yields ``holds()``, False once the lock's session is gone (a run started then would
    take the worker's rows for a crash's: the worker must stop)."""
    if engine.dialect.name != "postgresql":
        yield lambda: True
        return
    with engine.connect() as conn:
        lock_id = advisory_id(conn, key, "workers")
        conn.execute(text("SELECT pg_advisory_lock_shared(:id)"), {"id": lock_id})
        conn.commit()
        beat = Heartbeat(
            lambda: _advisory_held(conn, lock_id), heartbeat, 2 * heartbeat, errors_lose=True
        )
        beat.start(time.monotonic())
        try:
            yield beat.holds
        finally:
            beat.stop()
            try:
                conn.execute(text("SELECT pg_advisory_unlock_shared(:id)"), {"id": lock_id})
                conn.commit()
            except SQLAlchemyError:  # the session is gone, and the lock with it
                conn.invalidate()


class SendLock:
    """``with SendLock(engine, key) as lock: if lock.acquired: ...``

    While held, a heartbeat thread proves the hold every ``heartbeat`` seconds (a tenth of
    the lease, at most 10 s), whatever the sending rate: on SQLite it renews the lease row
    (only if it is still ours), on PostgreSQL it checks in ``pg_locks`` that the lock's
    session still holds the advisory lock. :meth:`holds` (cheap: two reads) is False once
    the hold cannot be proven: the lease row taken or not renewed within the lease less
    two heartbeats, or the lock session gone or not checked for two heartbeats. A sender
    asks it before each message and stops.

    A new holder that takes the edition from a holder that may still be running (an
    expired lease, a lock session that ended without releasing) learns it from
    :attr:`previous_may_live` and waits :attr:`settle` seconds before touching the rows
    left ``sending`` (the old sender notices within two heartbeats and records them).
    """

    def __init__(
        self,
        engine: Engine,
        key: str,
        *,
        holder: str | None = None,
        lease: dt.timedelta = LEASE,
        heartbeat: float | None = None,
    ) -> None:
        self.engine = engine
        self.key = key
        self.holder = holder or this_process()
        self.lease = lease
        self.heartbeat = heartbeat or heartbeat_for(lease)
        self.acquired = False
        self.other: str | None = None  # who holds it, when we could not get it
        #: a previous holder did not release it and may still be running (see settle)
        self.previous_may_live = False
        self._conn: Connection | None = None
        self._lock_id = 0  # the advisory lock's id, once the schema is known
        self._beat = Heartbeat(
            self._check_advisory if self._postgres else self._renew_lease,
            self.heartbeat,
            2 * self.heartbeat if self._postgres else lease.total_seconds() - 2 * self.heartbeat,
            errors_lose=self._postgres,
        )

    @property
    def _postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @property
    def settle(self) -> float:
        """Seconds a new holder waits for a possibly live previous one to notice and stop:
        longer than that one's proof lasts (two heartbeats) by one more."""
        return 3 * self.heartbeat

    def acquire(self) -> bool:
        started = time.monotonic()
        got = self._acquire_advisory() if self._postgres else self._acquire_lease()
        if got:
            self.acquired = True
            self._beat.start(started)
        return got

    def _acquire_advisory(self) -> bool:
        self._conn = self.engine.connect()
        self._lock_id = advisory_id(self._conn, self.key)
        got = self._conn.scalar(text("SELECT pg_try_advisory_lock(:id)"), {"id": self._lock_id})
        self._conn.commit()
        if not got:
            self._conn.close()
            self._conn = None
            self.other = "another process"
            return False
        # who held it before: a row left behind names a holder that did not release it
        with session_factory(self.engine).begin() as session:
            row = session.get(EditionLock, self.key)
            if row is not None:
                self.previous_may_live = not _holder_is_dead(row.holder)
                session.delete(row)
                session.flush()
            session.add(EditionLock(edition_key=self.key, holder=self.holder, expires_at=utcnow()))
        return True

    def _acquire_lease(self) -> bool:
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
                elif row.holder == self.holder:
                    row.expires_at = now + self.lease
                elif row.expires_at <= now or _holder_is_dead(row.holder):
                    self.previous_may_live = not _holder_is_dead(row.holder)
                    row.holder, row.expires_at = self.holder, now + self.lease
                else:
                    self.other = row.holder
                    return False
        except IntegrityError:  # another process inserted the row a moment ago
            self.other = "another process"
            return False
        return True

    @property
    def lost(self) -> str | None:
        """Why the hold was lost, once it is."""
        return self._beat.lost

    def holds(self) -> bool:
        """Whether this sender can still prove it holds the edition (call before each
        message: two reads, no I/O)."""
        return self._beat.holds()

    def _renew_lease(self) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                update(EditionLock)
                .where(EditionLock.edition_key == self.key, EditionLock.holder == self.holder)
                .values(expires_at=utcnow() + self.lease)
            )
            return bool(getattr(result, "rowcount", 0))

    def _check_advisory(self) -> bool:
        assert self._conn is not None
        return _advisory_held(self._conn, self._lock_id)

    def release(self) -> None:
        if not self.acquired:
            return
        self.acquired = False
        self._beat.stop()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": self._lock_id})
                conn.commit()
            except SQLAlchemyError:  # the session is gone, and the lock with it
                conn.invalidate()
            finally:
                conn.close()
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
