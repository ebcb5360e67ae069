"""The CPU a PostgreSQL server spends for one database, read from ``/proc`` (issue 17).

A benchmark that counts only its own process's CPU hides the server's share of the work:
on PostgreSQL every ledger write is parsed, planned, executed, indexed and WAL-logged by a
backend process. :class:`ServerCpu` polls ``pg_stat_activity`` for the backends connected
to one database (client backends, and autovacuum workers the run's writes wake up) and
reads each one's ``utime + stime`` from ``/proc/<pid>/stat``. Backends come and go (pools,
worker processes, the send lock's own connection), so it polls every ``interval`` seconds
and keeps the last figure of each pid: a backend that exits between two polls loses at most
one interval's CPU. Backends alive when it starts count from their figure then; later ones
from zero. Its own polling backend is left out.

Only for a server on this machine (``/proc`` must show its processes). Shared background
processes (WAL writer, checkpointer) serve every database and are not counted.
"""

from __future__ import annotations

import os
import threading
import time
from types import TracebackType

from sqlalchemy import text

from digest.store.db import make_engine

TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid``, or None when it is gone (or hidden)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # after "pid (comm)": state is field 3, utime field 14, stime field 15 (proc(5))
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_cpu() -> float:
    """CPU seconds every process of this machine has used since boot (``/proc/stat``)."""
    with open("/proc/stat", encoding="ascii") as stat:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(
            int, stat.readline().split()[1:9]
        )
    return (user + nice + system + irq + softirq + steal) / TICKS


class ServerCpu:
    """CPU seconds spent by the backends of the database at ``url`` while it runs, and by
    the whole machine (other users' load included: :attr:`machine`).

    With ``progress`` (a query counting rows sent), it also samples that count every
    ``progress_every`` seconds on its own connection (left out of the CPU figures):
    :attr:`samples` of (seconds since start, count) give a steady rate."""

    def __init__(
        self,
        url: str | None,
        interval: float = 0.1,
        progress: str | None = None,
        progress_every: float = 0.5,
    ) -> None:
        self.url = url
        self.interval = interval
        self.progress = progress
        self.progress_every = progress_every
        self.samples: list[tuple[float, int]] = []
        self.seconds = 0.0
        self.machine = 0.0
        self.wall = 0.0
        self.backends = 0  # distinct backend pids seen
        self._start: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._ended = 0.0  # CPU of backends whose pid was reused meanwhile
        self._kinds: dict[int, str] = {}  # pid -> backend_type ("autovacuum worker", ...)
        self.autovacuum = 0.0  # of ``seconds``: autovacuum workers woken by the run
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ServerCpu:
        self._machine, self._started = machine_cpu(), time.perf_counter()
        if self.url is None:  # SQLite: the database works inside the client's process
            return self
        self._engine = make_engine(self.url)
        self._connection = self._engine.connect()
        self._start = self._poll()
        self._last = dict(self._start)
        self._thread = threading.Thread(target=self._run, name="server-cpu", daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> dict[int, float]:
        rows = self._connection.execute(
            text(
                "SELECT pid, backend_type FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).all()
        self._connection.rollback()  # no snapshot kept open between polls
        found = {}
        for pid, kind in rows:
            self._kinds[pid] = kind
            cpu = process_cpu(pid)
            if cpu is not None:
                found[pid] = cpu
        return found

    def _run(self) -> None:
        sampled = 0.0
        while not self._stop.wait(self.interval):
            self._note(self._poll())
            now = time.perf_counter() - self._started
            if self.progress is not None and now - sampled >= self.progress_every:
                sent = self._connection.execute(text(self.progress)).scalar()
                self._connection.rollback()
                self.samples.append((now, int(sent or 0)))
                sampled = now

    def _note(self, polled: dict[int, float]) -> None:
        for pid, cpu in polled.items():
            last = self._last.get(pid)
            if last is not None and cpu < last:  # the pid was reused by a new backend
                self._ended += last - self._start.pop(pid, 0.0)
            self._last[pid] = cpu

    def stop(self) -> float:
        """Stop polling; returns the CPU seconds counted (also in :attr:`seconds`)."""
        if not self.wall:
            self.machine = machine_cpu() - self._machine
            self.wall = time.perf_counter() - self._started
        if self._thread is None:
            return self.seconds
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._note(self._poll())
        self._connection.close()
        self._engine.dispose()
        self.backends = len(self._last)
        self.seconds = self._ended + sum(
            cpu - self._start.get(pid, 0.0) for pid, cpu in self._last.items()
        )
        self.autovacuum = sum(
            cpu - self._start.get(pid, 0.0)
            for pid, cpu in self._last.items()
            if self._kinds.get(pid, "").startswith("autovacuum")
        )
        return self.seconds

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def steady_rate(samples: list[tuple[float, int]], total: int, low: float = 0.2) -> float:
    """Rows/s between the samples where ``low`` and ``1 - low`` of ``total`` were done: the
    rate once every process is sending, before the last ones run out of rows."""
    start = next(((t, n) for t, n in samples if n >= low * total), None)
    end = next(((t, n) for t, n in samples if n >= (1 - low) * total), None)
    if start is None or end is None or end[0] <= start[0]:
        return 0.0
    return (end[1] - start[1]) / (end[0] - start[0])
