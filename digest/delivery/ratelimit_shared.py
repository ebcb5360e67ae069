"""One rate limit shared exactly by every process sending through one relay (PostgreSQL).

:class:`SharedRateLimiter` behaves like :class:`~digest.delivery.ratelimit.RateLimiter` (messages
spaced ``1/per_second`` apart, at most ``per_hour`` in any hour, the rate halved on a
deferral down to a floor and raised by a tenth after every ``recover_after`` accepted
messages, never above the configured limit), but its state is in the database, so that
``--workers`` and ``digest send --worker`` on other machines share one limit instead of
each taking a part of it:

* ``send_rates``, one row per relay: the current rate, ``next_at`` (where the next free
  slot starts) and the accepted messages counted towards the next recovery step;
* ``send_rate_grants``: the blocks handed out in the last hour (only with ``per_hour``).

A process reserves a *block* in one short transaction that holds the row lock: it starts at
``start = max(db_now, next_at)``, may send ``n`` messages (about a quarter of a second's
worth) spaced ``1/rate`` apart up to ``last = start + (n - 1)/rate``, and moves ``next_at``
to ``start + n/rate``. Its threads then take those slots in order, sleeping until each.
Slots not used in time (the process was busy, or a deferral dropped them) are wasted,
never carried over. Times are seconds of the database clock (``clock_timestamp()``),
turned into local time with the offset measured at the reservations (the most precise
recent measurement: the shortest round trip).

Why the limit is exact across processes. Reservations are serialised by the row lock and
``start`` never decreases in that order. *Per second*: a block's messages are ``1/rate``
apart and the next block starts ``1/rate`` after its last slot, so any two messages are at
least ``1/rate`` apart. *Per hour* (a sliding log): every block is recorded with its size
and ``ends_at``, the latest moment one of its messages may go; a block starting at ``start``
counts the blocks with ``ends_at > start - 3600`` and moves ``start`` forward (or shrinks)
until that count plus its own size is at most ``per_hour``. Take any hour ``(t - 3600, t]``:
its messages belong to blocks with ``start <= t`` and ``ends_at > t - 3600``. Let G be the
last of them reserved; every earlier one has ``ends_at > t - 3600 >= start_G - 3600`` and was
counted when G was reserved, so the hour holds at most ``per_hour`` messages. What remains
is clock error: the offset estimate (half a round trip) and how late ``sleep`` wakes up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from sqlalchemy import Connection, Engine, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert

from digest.delivery.ratelimit import RateLimiter
from digest.store.db import utcnow
from digest.store.models import SendRate, SendRateGrant

#: A block holds about this many seconds of messages at the current rate...
BLOCK_SECONDS = 0.25
#: ...and at most this many.
MAX_BLOCK = 100
HOUR = 3600.0
#: Rounding allowed on slot times (epoch seconds as floats are precise to about 0.3 µs).
SLACK = 1e-5
#: How long a precise measurement of the clock offset is preferred to a new, rougher one.
OFFSET_TTL = 10.0


class SharedRateLimiter(RateLimiter):
    """A :class:`RateLimiter` whose limit is shared through PostgreSQL by every process
    using the same ``name`` (the relay). Thread-safe; one database transaction per block of
    messages and one statement per deferral, none per message. Without any limit it never
    touches the database; without ``per_second``, a deferral slows this process only."""

    def __init__(
        self,
        engine: Engine,
        name: str,
        per_second: float | None = None,
        per_hour: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        floor: float = 0.5,
        recover_after: int = 50,
    ) -> None:
        super().__init__(
            per_second or None,
            per_hour or None,
            clock=clock,
            sleep=sleep,
            floor=floor,
            recover_after=recover_after,
        )
        self.engine = engine
        self.name = name
        #: Without ``per_second`` there is no shared rate to halve: a deferral slows this
        #: process alone, from the rate it measured (see :class:`RateLimiter`).
        self._adaptive = RateLimiter(
            clock=clock, sleep=sleep, floor=floor, recover_after=recover_after
        )
        self._offset = 0.0  # database clock minus local clock...
        self._offset_error = math.inf  # ...known to within this many seconds
        self._offset_at = -math.inf  # local time of that measurement
        self._last = -math.inf  # the latest slot of the current block (database time)
        self._left = 0  # slots left in the current block
        self._fresh = False  # the block was just reserved: its first slot is taken even if late

    def acquire(self) -> None:
        """Block until the next message may be handed over."""
        if self.limit is None:
            self._adaptive.acquire()
            if self.per_hour is None:
                return
        with self._lock:
            at = self._take()
            if at is None:
                self._reserve()
                at = self._take()
                assert at is not None
            wait = at - (self._clock() + self._offset)
        if wait > 0:
            self._sleep(wait)

    def deferred(self) -> None:
        """The server asked us to slow down: halve the shared rate and give up the rest of
        this process's block, so that its next block comes at the new rate."""
        if self.limit is None:
            self._adaptive.deferred()
            return
        with self._lock:
            self._good = 0
            self._left = 0
            with self.engine.begin() as conn:
                rate = conn.scalar(
                    update(SendRate)
                    .where(SendRate.name == self.name)
                    .values(
                        rate=func.least(
                            self.limit,
                            func.greatest(self.floor, func.coalesce(SendRate.rate, self.limit) / 2),
                        ),
                        good=0,
                        updated_at=utcnow(),
                    )
                    .returning(SendRate.rate)
                )
            self.rate = rate if rate is not None else max(self.floor, self.limit / 2)

    def accepted(self) -> None:
        """Counted here and added to the shared count at the next reservation, which raises
        the rate by a tenth for every ``recover_after`` accepted messages (of all processes)."""
        if self.limit is None:
            self._adaptive.accepted()
            return
        with self._lock:
            if self.limit is None or self.rate is None or self.rate >= self.limit:
                return
            self._good += 1

    def _take(self) -> float | None:
        """The next slot of the current block (database time), or None when it is used up."""
        if self._left <= 0:
            return None
        at = max(self._clock() + self._offset, self._next)
        if at > self._last + SLACK and not self._fresh:
            return None
        self._fresh = False
        self._left -= 1
        self._next = at + 1.0 / self.rate if self.rate else at
        return at

    def _reserve(self) -> None:
        """Reserve the next block of slots in one transaction (see the module docstring)."""
        with self.engine.begin() as conn:
            shared_rate, next_at, good = self._lock_row(conn)
            before = self._clock()
            db_now = float(
                conn.execute(select(func.extract("epoch", func.clock_timestamp()))).scalar_one()
            )
            self._measured(db_now, before, self._clock())
            rate = min(self.limit, shared_rate or self.limit) if self.limit else None
            good += self._good
            self._good = 0
            if rate is not None and self.limit is not None and good >= self.recover_after > 0:
                rate = min(self.limit, rate * 1.1 ** (good // self.recover_after))
                good %= self.recover_after
            if rate is None or self.limit is None or rate >= self.limit:
                good = 0
            per = rate or (self.per_hour or 0) / HOUR
            n = max(1, min(MAX_BLOCK, round(per * BLOCK_SECONDS)))
            start = max(db_now, next_at)
            if self.per_hour:
                start, n = self._hour_room(conn, start, n, self.per_hour)
            last = start + (n - 1) / rate if rate else start + BLOCK_SECONDS
            if self.per_hour:
                conn.execute(insert(SendRateGrant).values(name=self.name, ends_at=last, count=n))
                conn.execute(
                    delete(SendRateGrant).where(
                        SendRateGrant.name == self.name, SendRateGrant.ends_at <= start - HOUR
                    )
                )
            conn.execute(
                update(SendRate)
                .where(SendRate.name == self.name)
                .values(
                    rate=rate,
                    next_at=start + n / rate if rate else start,
                    good=good,
                    updated_at=utcnow(),
                )
            )
        self.rate = rate
        self._next, self._last, self._left, self._fresh = start, last, n, True

    def _measured(self, db_now: float, before: float, after: float) -> None:
        """Take the database clock read between local ``before`` and ``after`` as the new
        offset, unless a recent measurement was more precise (a shorter round trip)."""
        error = (after - before) / 2
        if error <= self._offset_error or after - self._offset_at > OFFSET_TTL:
            self._offset = db_now - (before + after) / 2
            self._offset_error, self._offset_at = error, after

    def _lock_row(self, conn: Connection) -> tuple[float | None, float, int]:
        """The relay's rate, next_at and good count, its row locked until the end of the
        transaction (created first if missing)."""
        query = (
            select(SendRate.rate, SendRate.next_at, SendRate.good)
            .where(SendRate.name == self.name)
            .with_for_update()
        )
        row = conn.execute(query).one_or_none()
        if row is None:
            conn.execute(
                insert(SendRate)
                .values(name=self.name, rate=self.limit, next_at=0.0, good=0, updated_at=utcnow())
                .on_conflict_do_nothing(index_elements=["name"])
            )
            row = conn.execute(query).one()
        return row.rate, row.next_at, row.good

    def _hour_room(
        self, conn: Connection, start: float, n: int, per_hour: int
    ) -> tuple[float, int]:
        """Move ``start`` forward until the hour before it has room for one more message
        (waiting for the oldest blocks to leave it), and shrink ``n`` to fit."""
        recent = (SendRateGrant.name == self.name, SendRateGrant.ends_at > start - HOUR)
        total = select(func.coalesce(func.sum(SendRateGrant.count), 0)).where(*recent)
        used = int(conn.execute(total).scalar_one())
        if used >= per_hour:
            freed = func.sum(SendRateGrant.count).over(
                order_by=(SendRateGrant.ends_at, SendRateGrant.id)
            )
            oldest = select(SendRateGrant.ends_at, freed.label("freed")).where(*recent).subquery()
            ends_at, gone = conn.execute(
                select(oldest.c.ends_at, oldest.c.freed)
                .where(oldest.c.freed >= used - per_hour + 1)
                .order_by(oldest.c.freed)
                .limit(1)
            ).one()
            start = max(start, ends_at + HOUR)
            used -= int(gone)
        return start, min(n, per_hour - used)
