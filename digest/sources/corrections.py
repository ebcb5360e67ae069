"""Corrections and retractions of stored summaries: the status change and the notice it owes.

A source (or ``digest summaries correct|retract``) marks a summary ``corrected`` or
``retracted`` with a note; each new marking is one :class:`~digest.store.models.Notice`,
which planning (:mod:`digest.planning.notices`) hands to everyone who was sent the summary.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.sources.cleaning import canonical_url
from digest.store.models import Notice, Summary

PUBLISHED, CORRECTED, RETRACTED = "published", "corrected", "retracted"
STATUSES = (PUBLISHED, CORRECTED, RETRACTED)
#: The longest note kept (a notice is a few sentences).
NOTE_LIMIT = 2000


def mark(
    session: Session, summary: Summary, status: str, note: str | None, *, now: dt.datetime
) -> Notice | None:
    """Set the summary's status and note; a new correction or retraction (status or note
    differ from the stored ones) adds a notice, returned. A retracted summary stays so."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    note = (note or "").strip()[:NOTE_LIMIT] or None
    if summary.status == RETRACTED and status != RETRACTED:
        return None  # a withdrawn study is not brought back by a stale source
    changed = (summary.status, summary.correction_note) != (status, note)
    summary.status, summary.correction_note = status, note
    if not changed or status == PUBLISHED:
        return None
    summary.updated_at = now
    notice = Notice(summary_id=summary.id, kind=status, note=note or "", created_at=now)
    session.add(notice)
    session.flush()
    return notice


def find_by_reference(session: Session, reference: str) -> Summary | None:
    """The summary with this id (digits) or URL."""
    text = reference.strip()
    if text.isascii() and text.isdigit():
        return session.get(Summary, int(text)) if len(text) < 12 else None
    url = canonical_url(text)
    return session.scalar(select(Summary).where(Summary.url == url)) if url else None


def correct(
    session: Session, reference: str, status: str, note: str, *, now: dt.datetime
) -> tuple[Summary, Notice | None]:
    """Mark the summary ``reference`` (id or URL) ``corrected`` or ``retracted``; a
    :class:`LookupError` names what was not found."""
    summary = find_by_reference(session, reference)
    if summary is None:
        raise LookupError(reference)
    return summary, mark(session, summary, status, note, now=now)
