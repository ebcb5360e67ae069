"""What the "This week" page shows, read from the same functions as the CLI: the plan
``digest send --dry-run`` makes (:func:`digest.edition.checks.plan_week`), the ledger
``digest editions show`` reads (:func:`digest.edition.manage.edition_info`) and the checks
``digest check`` runs, without the MJML validator (the preflight button runs that too).

Counts only, never a reader's address: "readers" are numbers of readers.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass, replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.edition.checks import WeekPlan, check_variants
from digest.edition.manage import EditionInfo, edition_info
from digest.planning.notices import notice_summaries
from digest.planning.selection import VariantKey
from digest.planning.when import Schedule, is_due, next_key, send_moment
from digest.store.db import Category
from digest.store.models import Edition, EditionStatus
from digest.web.admin.sending import SendJob
from digest.web.admin.variants import ledger_variants, variant_id

#: Variants rendered and checked on the page, most readers first ("Run the preflight"
#: checks every one).
CHECKED_ON_PAGE = 20


@dataclass(frozen=True)
class VariantRow:
    number: int
    id: str  # for preview URLs (see :func:`variant_id`)
    topics: tuple[str, ...]
    subject: str
    summaries: tuple[str, ...]  # titles, in the email's order
    readers: int
    notices: int
    problems: tuple[str, ...] = ()
    checked: bool = True  # rendered and checked for the page (see CHECKED_ON_PAGE)
    count: int = 0  # summaries


@dataclass(frozen=True)
class NoticeRow:
    kind: str  # corrected or retracted
    title: str
    note: str


@dataclass(frozen=True)
class Week:
    key: str
    state: str  # planned, due, sending, partly sent, complete, cancelled, paused
    says: str  # one sentence on the state
    due_at: dt.datetime  # in the list's time zone
    cutoff: dt.datetime
    info: EditionInfo | None  # None: the edition does not exist yet
    to_send: tuple[VariantRow, ...]  # what a send now would send
    in_ledger: tuple[VariantRow, ...]  # the variants already planned in the ledger
    notices: tuple[NoticeRow, ...]
    next_key: str
    next_due: dt.datetime
    can_send: bool
    can_cancel: bool
    #: messages of the edition handled (sent, failed or skipped), of all in it, failed:
    #: what the ledger and the console's running send say, whichever has seen more
    handled: int = 0
    total: int = 0
    failed: int = 0

    @property
    def readers_to_send(self) -> int:
        return sum(v.readers for v in self.to_send)

    @property
    def problems(self) -> int:
        return sum(len(v.problems) for v in self.to_send)

    @property
    def unchecked(self) -> int:
        return sum(not v.checked for v in self.to_send)


class CheckCache:
    """Variants rendered and checked for the page, by key, for ``ttl`` seconds (the page
    reloads every few seconds while a send runs; a template edit shows within a minute, and
    at once in a preview). Thread-safe, at most ``size`` variants."""

    def __init__(self, ttl: float = 60.0, size: int = 256) -> None:
        self.ttl, self.size = ttl, size
        self._kept: dict[VariantKey, tuple[float, VariantRow]] = {}
        self._lock = threading.Lock()

    def get(self, key: VariantKey) -> VariantRow | None:
        with self._lock:
            kept = self._kept.get(key)
        if kept is None or time.monotonic() - kept[0] >= self.ttl:
            return None
        return kept[1]

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()

    def put(self, key: VariantKey, row: VariantRow) -> None:
        with self._lock:
            if len(self._kept) >= self.size:
                self._kept.clear()
            self._kept[key] = (time.monotonic(), row)


def _variants_to_send(
    session: Session, settings: Settings, plan: WeekPlan, *, now: dt.datetime, cache: CheckCache
) -> tuple[VariantRow, ...]:
    """Each variant of the plan, most readers first; the first :data:`CHECKED_ON_PAGE`
    rendered and checked (about 60 ms each), the others named by topics and counts."""
    numbered = plan.numbered()
    names = dict(session.execute(select(Category.id, Category.name)).all())
    missing = [(n, key) for n, key in numbered[:CHECKED_ON_PAGE] if cache.get(key) is None]
    if missing:
        checked = check_variants(
            session, settings, missing, date=now, validate=False, edition=plan.key
        )
        for v in checked.variants:
            cards = checked.contents[v.key].cards
            titles = tuple(card.title for card in cards)
            cache.put(v.key, VariantRow(0, "", v.categories, v.subject, titles, 0, 0, v.problems))
    rows = []
    for number, key in numbered:
        found = cache.get(key) if number <= CHECKED_ON_PAGE else None
        topics = tuple(sorted(names.get(c, f"#{c}") for c in key[0]))
        row = found or VariantRow(0, "", topics, "", (), 0, 0, checked=False)
        rows.append(
            replace(
                row,
                number=number,
                id=variant_id(key),
                readers=plan.recipients[key],
                notices=len(key[2]),
                count=len(key[1]),
            )
        )
    return tuple(rows)


def progress(info: EditionInfo | None, job: SendJob | None) -> tuple[int, int, int]:
    """(handled, total, failed) of the edition's messages."""
    counts = info.counts if info is not None else None
    handled = sum(counts[s] for s in ("sent", "failed", "skipped")) if counts else 0
    total, failed = (sum(counts.values()), counts["failed"]) if counts else (0, 0)
    if job is not None and info is not None and job.key == info.key and job.running:
        # the run's count is ahead of the ledger between two recordings (every 100)
        handled, failed = max(handled, job.done), max(failed, job.failed)
        total = max(total, job.total)
    return handled, total, failed


def _state(
    info: EditionInfo | None, job: SendJob | None, due: bool, due_at: dt.datetime
) -> tuple[str, str]:
    when = f"{due_at:%a %d %b %Y %H:%M} ({due_at.tzname()})"
    if job is not None and job.running and info is not None and job.key == info.key:
        handled, total, _ = progress(info, job)
        return "sending", f"Sending now: {handled} of {total} messages handled."
    if info is None or (info.status == EditionStatus.OPEN and not any(info.counts.values())):
        if due:
            return "due", f"Due since {when}; not sent yet."
        return "planned", f"Planned for {when}."
    counts = info.counts
    if info.status == EditionStatus.OPEN:
        waiting = counts["queued"] + counts["deferred"]
        if counts["sending"]:
            return "sending", f"Being sent: {counts['sending']} messages in flight."
        if counts["sent"] and waiting:
            return "partly sent", f"{counts['sent']} sent, {waiting} waiting: send it again."
        if waiting:
            return "planned", f"{waiting} messages queued; due {when}."
        return "sent", f"Every planned message went out; open while its week lasts ({when})."
    if info.status == EditionStatus.COMPLETE:
        done = f"{info.completed_at:%a %d %b %Y %H:%M} UTC" if info.completed_at else "earlier"
        return "complete", f"Complete since {done}: {counts['sent']} sent."
    if info.status == EditionStatus.CANCELLED:
        return "cancelled", "Cancelled: nothing more of it will be sent."
    return "paused", f"Paused after a policy bounce: `digest bounces resume {info.key}`."


def build_week(
    session: Session,
    settings: Settings,
    plan: WeekPlan,
    *,
    now: dt.datetime,
    job: SendJob | None,
    cache: CheckCache,
) -> Week:
    """The page's model for this week's edition (``plan``)."""
    schedule = Schedule.from_settings(settings)
    due_at = send_moment(plan.key, schedule).astimezone(settings.zone)
    exists = session.scalar(select(Edition.id).where(Edition.key == plan.key)) is not None
    info = edition_info(session, plan.key) if exists else None
    to_send = _variants_to_send(session, settings, plan, now=now, cache=cache)
    kept = ledger_variants(session, plan.key)
    readers = {v.number: v.recipients for v in info.variants} if info else {}
    topics = {v.number: v.categories for v in info.variants} if info else {}
    in_ledger = tuple(
        VariantRow(
            number=number,
            id=variant_id(key),
            topics=topics.get(number, ()),
            subject="",
            summaries=(),
            readers=readers.get(number, 0),
            count=len(key[1]),
            notices=len(key[2]),
        )
        for key, number in kept.items()
    )
    notice_ids = {n for key in [*plan.recipients, *kept] for n in key[2]}
    notices = tuple(
        NoticeRow(notice.kind, summary.title, notice.note)
        for notice, summary in notice_summaries(session, notice_ids)
    )
    state, says = _state(info, job, is_due(now, schedule), due_at)
    handled, total, failed = progress(info, job)
    following = next_key(plan.key)
    final = info is not None and info.status in (EditionStatus.COMPLETE, EditionStatus.CANCELLED)
    return Week(
        key=plan.key,
        state=state,
        says=says,
        due_at=due_at,
        cutoff=plan.cutoff,
        info=info,
        to_send=to_send,
        in_ledger=in_ledger,
        notices=notices,
        next_key=following,
        next_due=send_moment(following, schedule).astimezone(settings.zone),
        can_send=bool(to_send) and not final and state != "sending",
        can_cancel=info is not None and not final,
        handled=handled,
        total=total,
        failed=failed,
    )
