"""Locking out a client address after repeated failed sign-ins to the console.

In process memory, bounded, thread-safe: ``FAILURES`` wrong passwords within ``WINDOW``
seconds lock the address for ``LOCKED_FOR`` seconds, during which even the right password
is refused (so guessing cannot go on, and the answer does not say whether a guess was
right). Several processes of one console each count on their own; a reverse proxy in front
(``trusted_proxies``) makes the address the client's, not the proxy's.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

FAILURES = 5
WINDOW = 15 * 60.0
LOCKED_FOR = 15 * 60.0
MAX_CLIENTS = 10_000


class Lockout:
    """Failed sign-ins per client address, and the addresses locked out until when."""

    def __init__(
        self,
        failures: int = FAILURES,
        window: float = WINDOW,
        locked_for: float = LOCKED_FOR,
        *,
        clock: Callable[[], float] = time.time,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.failures, self.window, self.locked_for = failures, window, locked_for
        self.clock, self.max_clients = clock, max_clients
        self._failed: OrderedDict[str, deque[float]] = OrderedDict()
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def locked_until(self, client: str) -> float | None:
        """When ``client``'s lockout ends (a time.time() value), or None if it is not locked."""
        with self._lock:
            until = self._until.get(client)
            if until is not None and until <= self.clock():
                del self._until[client]
                return None
            return until

    def failed(self, client: str) -> float | None:
        """Count one failed sign-in; returns when the lockout ends if this one locked it."""
        now = self.clock()
        with self._lock:
            times = self._failed.pop(client, None) or deque()
            while times and now - times[0] >= self.window:
                times.popleft()
            times.append(now)
            if len(times) >= self.failures:
                if len(self._until) >= self.max_clients:  # forget the lockouts that ended
                    self._until = {k: t for k, t in self._until.items() if t > now}
                self._until[client] = now + self.locked_for
                times.clear()
            else:
                self._failed[client] = times
            while len(self._failed) > self.max_clients:
                self._failed.popitem(last=False)
            return self._until.get(client)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failed.pop(client, None)
