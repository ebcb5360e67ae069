"""A send started from the console: ``run_edition`` (the function ``digest send`` calls) in
a background thread of the server, with the progress the week page shows.

One send at a time per console: a second start while one runs is refused here, and across
processes and machines the edition's send lock refuses it (the report then says who holds
it). The thread ends with the run: closing the page does not stop it; cancelling the
edition does, after the current batch.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from digest.edition.report import EditionReport
from digest.errors import DigestError

log = logging.getLogger("digest.web.admin")

#: What a send is given to report its progress: (handled, total, failed).
Progress = Callable[[int, int, int], None]


class AlreadySending(DigestError):
    """A send started from this console is still running."""


@dataclass
class SendJob:
    """One send started from the console, as its thread updates it."""

    key: str
    started_at: dt.datetime
    done: int = 0
    total: int = 0
    failed: int = 0
    finished_at: dt.datetime | None = None
    report: EditionReport | None = None
    error: str = ""
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None

    @property
    def running(self) -> bool:
        return self.finished_at is None

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    @property
    def rate(self) -> float:
        """Messages handled per second so far."""
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def progress(self, done: int, total: int, failed: int) -> None:
        self.done, self.total, self.failed = done, total, failed


class SendJobs:
    """The console's send: none, running or finished (the last one is kept to show)."""

    def __init__(self) -> None:
        self._job: SendJob | None = None
        self._lock = threading.Lock()

    @property
    def current(self) -> SendJob | None:
        with self._lock:
            return self._job

    def start(
        self,
        key: str,
        run: Callable[[Progress], EditionReport],
        *,
        now: dt.datetime,
        clock: Callable[[], dt.datetime],
    ) -> SendJob:
        """Start ``run`` (given the job's progress callback) in a thread; refused with
        :class:`AlreadySending` while the last one runs."""
        with self._lock:
            if self._job is not None and self._job.running:
                raise AlreadySending(
                    f"edition {self._job.key} is being sent from this console: wait for it to end"
                )
            job = self._job = SendJob(key=key, started_at=now)

        def work() -> None:
            try:
                job.report = run(job.progress)
            except DigestError as exc:
                job.error = str(exc)
            except Exception as exc:  # shown on the page; the traceback goes to the log
                log.exception("the send of edition %s started from the console failed", key)
                job.error = f"the send stopped on an unexpected error ({type(exc).__name__})"
            finally:
                job.ended = time.monotonic()
                job.finished_at = clock()

        threading.Thread(target=work, name=f"digest-send-{key}", daemon=True).start()
        return job
