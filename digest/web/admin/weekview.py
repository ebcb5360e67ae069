"""What the "This week" page shows, read from the same functions as the CLI: the plan
``digest send --dry-run`` makes (:func:`digest.edition.checks.plan_week`), the ledger
``digest editions show`` reads (:func:`digest.edition.manage.edition_info`) and the checks
``digest check`` runs, without the MJML validator (the preflight button runs that too).

Counts only, never a reader's address: "readers" are numbers of readers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.edition.checks import WeekPlan, check_variants
from digest.edition.manage import EditionInfo, edition_info
from digest.planning.notices import notice_summaries
from digest.planning.when import Schedule, is_due, next_key, send_moment
from digest.store.models import Edition, EditionStatus
from digest.web.admin.sending import SendJob
from digest.web.admin.variants import ledger_variants, variant_id


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
) -> Week:
    """The page's model for this week's edition (``plan``)."""
    schedule = Schedule.from_settings(settings)
    due_at = send_moment(plan.key, schedule).astimezone(settings.zone)
    exists = session.scalar(select(Edition.id).where(Edition.key == plan.key)) is not None
    info = edition_info(session, plan.key) if exists else None
    checked = check_variants(
        session, settings, plan.numbered(), date=now, validate=False, edition=plan.key
    )
    to_send = tuple(
        VariantRow(
            number=v.number,
            id=variant_id(v.key),
            topics=v.categories,
            subject=v.subject,
            summaries=tuple(card.title for card in checked.contents[v.key].cards),
            readers=plan.recipients[v.key],
            notices=len(v.key[2]),
            problems=v.problems,
        )
        for v in checked.variants
    )
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
