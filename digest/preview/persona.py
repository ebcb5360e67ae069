"""Which digest one subscriber gets this week, decided exactly as planning decides it.

The subscriber becomes a :class:`~digest.planning.selection.Reader` built from the same columns
:func:`digest.planning.plan.iter_readers` reads, and goes through the same ``wants_edition``,
``reader_due`` and ``select_items``. A subscriber already planned in this week's edition
gets the variant of their ledger row, which is what a send hands over.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from digest.planning.notices import owed_notices
from digest.planning.plan import load_catalog
from digest.planning.selection import (
    Reader,
    VariantKey,
    select_items,
    variant_key,
    wants_edition,
    window_start,
)
from digest.planning.when import Schedule, is_current, reader_due
from digest.store.models import Delivery, DeliveryStatus, Edition, Variant
from subscribers.models import Status, Subscriber, Subscription, Suppression


@dataclass(frozen=True)
class Persona:
    """What one subscriber gets in edition ``edition``: a variant, or why nothing."""

    address: str
    name: str | None
    edition: str
    cutoff: dt.datetime
    key: VariantKey | None
    since: dt.datetime | None = None
    reason: str = ""  # why there is no digest, or a note on the ledger row


def reader_of(session: Session, subscriber: Subscriber, edition_key: str) -> Reader | None:
    """``subscriber`` as planning sees them, or None if they were never active."""
    if subscriber.active_since is None:
        return None
    categories = frozenset(
        session.scalars(
            select(Subscription.category_id).where(Subscription.subscriber_id == subscriber.id)
        )
    )
    last_cutoff = session.scalar(
        select(func.max(Edition.cutoff))
        .join(Delivery, Delivery.edition_id == Edition.id)
        .where(
            Delivery.subscriber_id == subscriber.id,
            Delivery.status == DeliveryStatus.SENT.value,
            Edition.key != edition_key,
        )
    )
    return Reader(
        subscriber_id=subscriber.id,
        category_ids=categories,
        active_since=subscriber.active_since,
        last_cutoff=last_cutoff,
        frequency=subscriber.frequency,
        paused_until=subscriber.paused_until,
        timezone=subscriber.timezone,
    )


def persona_of(
    session: Session,
    subscriber: Subscriber,
    *,
    edition_key: str,
    edition: Edition | None,
    cutoff: dt.datetime,
    lookback: dt.timedelta,
    schedule: Schedule,
    now: dt.datetime,
) -> Persona:
    """The digest ``subscriber`` gets in this edition (``edition`` None: not created yet)."""
    reader = reader_of(session, subscriber, edition_key)
    since = window_start(reader, lookback) if reader is not None else None
    base = Persona(subscriber.email, subscriber.name, edition_key, cutoff, None, since)
    if edition is not None and edition.id is not None:
        row = session.execute(
            select(
                Delivery.status,
                Delivery.sent_at,
                Variant.category_ids,
                Variant.summary_ids,
                Variant.notice_ids,
            )
            .join(Variant, Variant.id == Delivery.variant_id)
            .where(Delivery.edition_id == edition.id, Delivery.subscriber_id == subscriber.id)
        ).first()
        if row is not None:
            status, sent_at, category_ids, summary_ids, notice_ids = row
            note = f"ledger row of edition {edition_key}: {status}"
            if sent_at is not None:
                note += f" at {sent_at:%Y-%m-%d %H:%M} UTC"
            key = (tuple(category_ids), tuple(summary_ids), tuple(notice_ids or ()))
            return replace(base, key=key, reason=note)
    # late readers (active since after the cutoff) join the edition while its week lasts
    joined_by = max(now, cutoff) if is_current(edition_key, now, schedule) else cutoff
    reason = _not_a_reader(session, subscriber, joined_by)
    if reason or reader is None or since is None:
        return replace(base, reason=reason or "never confirmed")
    if not wants_edition(reader, cutoff, now, schedule.zone):
        if reader.paused_until is not None and reader.paused_until > now:
            why = f"paused until {reader.paused_until:%Y-%m-%d}"
        else:
            why = "a monthly reader who already had this month's digest"
        return replace(base, reason=why)
    if not reader_due(edition_key, schedule, now, reader.timezone):
        why = f"not due yet in their time zone ({reader.timezone})"
        return replace(base, reason=why)
    items = select_items(reader, load_catalog(session, cutoff), lookback)
    notices = owed_notices(session).get(subscriber.id, ())  # corrections they are owed
    if not items and not notices:
        why = "nothing new in their categories: no email this week"
        return replace(base, reason=why)
    return replace(base, key=variant_key(reader, items, notices))


def _not_a_reader(session: Session, subscriber: Subscriber, joined_by: dt.datetime) -> str:
    """Why planning skips ``subscriber`` whatever their categories, or "" (``joined_by``: the
    latest moment a reader of the edition can have become active)."""
    if subscriber.status != Status.ACTIVE.value:
        return f"{subscriber.status}: only active subscribers get the digest"
    suppressed = session.scalar(
        select(exists().where(Suppression.email_hash == subscriber.email_hash))
    )
    if suppressed:
        return "on the suppression list: never sent anything"
    if subscriber.active_since is None or subscriber.active_since > joined_by:
        return "became active after this edition's cutoff: from next week on"
    return ""
