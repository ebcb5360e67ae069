"""What a classified bounce or complaint does: record it, suppress the reader, count soft
bounces, pause an edition after a policy block. Takes an open session; never commits."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.bounces.classify import COMPLAINT, HARD, IGNORED, POLICY, SOFT, describe
from digest.bounces.match import Match
from digest.store.models import BounceEvent, Delivery, Edition, EditionStatus
from subscribers import service, suppression
from subscribers.models import SUPPRESSED, Status, Subscriber

#: Soft bounces that suppress a reader, and how many editions they must span (§10).
SOFT_LIMIT = 3
SOFT_EDITIONS = 2
#: What an address looks like in a server's words; replaced before anything is stored.
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
NO_ADDRESS = "[address]"


def without_addresses(text: str) -> str:
    """``text`` with every email address in it replaced by ``[address]``: a bounce's
    diagnostic often names the recipient, and nothing stored may keep it."""
    return _ADDRESS.sub(NO_ADDRESS, text)


@dataclass(frozen=True)
class Outcome:
    """One line of the processing report, and what to count it as."""

    counted: str  # hard, soft, policy, complaint, ignored, unmatched, duplicate
    line: str
    warning: str | None = None


def fingerprint(reference: str, address: str, kind: str, status: str, delivery: str) -> str:
    text = "\x00".join((reference, address, kind, status, delivery))
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()


def record(
    session: Session,
    *,
    kind: str,
    status: str,
    reference: str,
    address: str,
    match: Match | None,
    detail: str,
    now: dt.datetime,
) -> bool:
    """Store the event; False when this very report was processed before. Nothing personal
    is kept: no address (in ``detail`` they are replaced), and an unmatched event has no
    link to anyone (``digest bounces unmatched`` lists those)."""
    delivery = str(match.delivery_id) if match else "-"
    print_ = fingerprint(reference, address, kind, status, delivery)
    if session.scalar(select(BounceEvent.id).where(BounceEvent.fingerprint == print_)):
        return False
    session.add(
        BounceEvent(
            received_at=now,
            kind=kind,
            status=status[:40] or None,
            delivery_id=match.delivery_id if match else None,
            subscriber_id=match.subscriber_id if match else None,
            edition_id=match.edition_id if match else None,
            matched_by=match.how if match else None,
            reference=reference[:255],
            fingerprint=print_,
            detail=without_addresses(detail)[:1000] or None,
        )
    )
    session.flush()
    return True


def apply(
    session: Session, kind: str, status: str, match: Match, detail: str, *, now: dt.datetime
) -> tuple[str, str | None]:
    """Act on a recorded event; returns (what was done, operator warning or None)."""
    _note_in_ledger(session, match.delivery_id, kind, status, detail)
    if kind == HARD:
        return _suppress(session, match, Status.BOUNCED, now=now), None
    if kind == COMPLAINT:
        return _suppress(session, match, Status.COMPLAINED, now=now), None
    if kind == SOFT:
        return _count_soft(session, match, now=now), None
    if kind == POLICY:
        return _pause(session, match, status, detail)
    assert kind == IGNORED
    return "nothing to do", None


def _note_in_ledger(
    session: Session, delivery_id: int | None, kind: str, status: str, detail: str
) -> None:
    """Add the bounce to the ledger row's detail (its status stays what the server said)."""
    delivery = session.get(Delivery, delivery_id) if delivery_id is not None else None
    if delivery is None or kind == IGNORED:
        return
    detail = without_addresses(detail)
    note = f"then {describe(kind, status)}" + (f": {detail}" if detail else "")
    delivery.detail = (f"{delivery.detail}; " if delivery.detail else "") + note[:300]


def _suppress(session: Session, match: Match, status: Status, *, now: dt.datetime) -> str:
    subscriber = session.get(Subscriber, match.subscriber_id) if match.subscriber_id else None
    if subscriber is None:
        return "no subscriber (erased)"
    if subscriber.status == status or (
        subscriber.status in SUPPRESSED and status == Status.BOUNCED
    ):
        return f"already {subscriber.status}"
    service.unsubscribe(session, subscriber, now=now)  # closes any open confirmation
    subscriber.status = status.value
    subscriber.unsubscribed_at = subscriber.unsubscribed_at or now
    reason = (
        suppression.Reason.BOUNCED if status == Status.BOUNCED else suppression.Reason.COMPLAINED
    )
    suppression.suppress(session, subscriber.email_hash, reason, now=now)
    return f"suppressed ({status.value})"


def _count_soft(session: Session, match: Match, *, now: dt.datetime) -> str:
    subscriber = session.get(Subscriber, match.subscriber_id) if match.subscriber_id else None
    if subscriber is None:
        return "no subscriber (erased)"
    query = select(func.count(), func.count(func.distinct(BounceEvent.edition_id))).where(
        BounceEvent.subscriber_id == subscriber.id, BounceEvent.kind == SOFT
    )
    if subscriber.active_since is not None:  # a reader who came back starts afresh
        query = query.where(BounceEvent.received_at >= subscriber.active_since)
    row = session.execute(query).one()
    total, editions = int(row[0]), int(row[1])
    counted = f"soft bounce {total} of {SOFT_LIMIT} over {editions} edition(s)"
    if total >= SOFT_LIMIT and editions >= SOFT_EDITIONS:
        return f"{counted}: " + _suppress(session, match, Status.BOUNCED, now=now)
    return counted


def _pause(session: Session, match: Match, status: str, detail: str) -> tuple[str, str]:
    edition = session.get(Edition, match.edition_id) if match.edition_id is not None else None
    assert edition is not None, "only deliveries can be refused by policy"
    why = f"policy block {status or '(no code)'}" + (f": {detail[:200]}" if detail else "")
    if edition.status == EditionStatus.OPEN:
        edition.status = EditionStatus.PAUSED.value
        done = f"edition {edition.key} paused; reader not suppressed"
    else:
        done = f"edition {edition.key} is {edition.status}; reader not suppressed"
    warning = (
        f"WARNING: {why}. The receiving side refused our mail, not this address: check "
        f"blocklists, SPF/DKIM/DMARC and sending rate, then `digest bounces resume {edition.key}`."
    )
    return done, warning
