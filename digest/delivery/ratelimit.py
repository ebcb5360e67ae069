"""One rate limiter for a whole run, shared by every connection thread.

Messages are spaced exactly ``1/per_second`` apart and at most ``per_hour`` go out in any
hour. On a server-wide deferral (a 421, a rate-limit reply; the sender decides which) the
rate halves, down to a floor; it climbs back by a tenth after every ``recover_after`` accepted
messages, and doubles for every ``recover_seconds`` without a deferral, so that a slow floor
recovers within seconds once the deferrals stop. Without ``per_second`` the first deferral
halves the rate measured over the last second or so, and once the rate has climbed back to
that, messages go out unlimited again. It is one process's limiter (SQLite has a
single sender); on PostgreSQL, processes share one limit through the database
(:mod:`digest.delivery.ratelimit_shared`).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(
        self,
        per_second: float | None = None,
        per_hour: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        floor: float = 0.5,
        recover_after: int = 50,
        recover_seconds: float = 1.0,
    ) -> None:
        self.limit = per_second
        self.rate = per_second
        self.per_hour = per_hour
        self.floor = floor
        self.recover_after = recover_after
        self.recover_seconds = recover_seconds
        self._changed = clock()  # when the rate was last lowered or doubled
        #: how many times the rate was lowered (for reports and tests)
        self.lowered = 0
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._next = 0.0
        self._hour: collections.deque[float] = collections.deque()
        self._good = 0
        self._ceiling: float | None = None  # without a limit: the rate before backing off
        self._window = (clock(), 0)  # start, messages: the rate measured without a limit
        self._seen_rate: float | None = None

    def acquire(self) -> None:
        """Block until the next message may be handed over."""
        with self._lock:
            now = self._clock()
            at = now
            if self.rate:
                at = max(at, self._next)
                self._next = at + 1.0 / self.rate
            else:
                self._measure(now)
            if self.per_hour:
                while self._hour and self._hour[0] <= at - 3600:
                    self._hour.popleft()
                if len(self._hour) >= self.per_hour:
                    at = max(at, self._hour[0] + 3600)
                    self._hour.popleft()
                self._hour.append(at)
        if at > now:
            self._sleep(at - now)

    def _measure(self, now: float) -> None:
        """Count a message sent without a limit; the rate over windows of a second."""
        start, sent = self._window
        sent += 1
        if now - start >= 1.0:
            self._seen_rate = sent / (now - start)
            start, sent = now, 0
        self._window = (start, sent)

    def deferred(self) -> None:
        """The server asked us to slow down."""
        with self._lock:
            self._good = 0
            current = self.rate or self.limit
            if current is None:  # no limit: start from the rate measured so far
                start, sent = self._window
                elapsed = self._clock() - start
                current = self._seen_rate or (sent / elapsed if elapsed > 0 and sent else None)
                self._ceiling = current
            if current:
                self.rate = max(self.floor, current / 2)
                self.lowered += 1
            self._changed = self._clock()

    def accepted(self) -> None:
        with self._lock:
            ceiling = self.limit or self._ceiling
            if ceiling is None or self.rate is None:
                return
            if self.rate >= ceiling:
                if self.limit is None:  # recovered: unlimited again
                    self.rate, self._ceiling = None, None
                    self._window, self._seen_rate = (self._clock(), 0), None
                return
            self._good += 1
            now = self._clock()
            if now - self._changed >= self.recover_seconds:
                self._good, self._changed = 0, now
                self.rate = min(ceiling, self.rate * 2)
            elif self._good >= self.recover_after:
                self._good = 0
                self.rate = min(ceiling, self.rate * 1.1)
