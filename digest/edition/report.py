"""What a run of an edition reports: its counts, its variants, and how long it took."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class VariantReport:
    number: int
    subject: str
    summaries: int
    recipients: int  # recipients this run sends (or would send) this variant to


@dataclass
class EditionReport:
    key: str
    cutoff: dt.datetime
    created: bool
    dry_run: bool = False
    queued: int = 0
    nothing_new: int = 0
    not_due: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    skipped: int = 0
    resent_after_crash: int = 0
    #: messages that may have reached their reader twice (see Tally.possibly_duplicated)
    possibly_duplicated: int = 0
    previously_sent: int = 0
    #: rows worker processes still running had claimed when this run started (not requeued)
    held_by_workers: int = 0
    requeued: int = 0  # by --retry-failed
    worker_errors: int = 0  # extra worker processes that did not end cleanly
    sent_by_workers: int = 0  # of ``sent``, by the worker processes this run started
    #: of ``queued``: readers who became active after the edition's cutoff (late readers)
    late: int = 0
    #: of ``queued``: readers who added topics since they were sent it (their new topics only)
    topped_up: int = 0
    #: late readers with nothing new in this edition yet: their first digest is a later one
    waiting: int = 0
    #: while the edition's period lasts: the next edition, and when it is sent (UTC)
    next_key: str | None = None
    next_send: dt.datetime | None = None
    complete: bool = False
    stopped: bool = False  # asked to stop (signal, cancel) before the end
    busy: str | None = None  # another process holds the edition's send lock
    seconds: float = 0.0
    variants: list[VariantReport] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0
