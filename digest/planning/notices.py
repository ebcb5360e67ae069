"""Which correction and retraction notices each reader is owed, and recording who got which.

A reader is owed a notice when the ledger shows they were sent the summary (a ``sent``
delivery whose variant lists it) before the notice was made, and no ledger row carries
that notice to them yet, unless that row ended failed or skipped. Planning records the
notices of each row it queues in the same transaction (:func:`record_notices`), so a
re-run, a crash or the next edition never repeats a notice and never loses one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.store.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    Notice,
    NoticeDelivery,
    Summary,
    Variant,
)

#: Ledger rows that no longer carry their notices: the notice is owed again.
_GAVE_UP = (DeliveryStatus.FAILED.value, DeliveryStatus.SKIPPED.value)


def owed_notices(session: Session) -> dict[int, tuple[int, ...]]:
    """Notice ids owed to each subscriber (by id), oldest first. A reader sent the summary
    in an edition cut off after the notice was made read the corrected version: nothing
    is owed to them."""
    notices = session.execute(
        select(Notice.id, Notice.summary_id, Notice.created_at).order_by(Notice.id)
    ).all()
    if not notices:
        return {}
    by_summary: dict[int, list[tuple[int, dt.datetime]]] = {}
    for notice_id, summary_id, made in notices:
        by_summary.setdefault(summary_id, []).append((notice_id, made))
    owed: dict[int, set[int]] = {}
    latest = max(made for _, _, made in notices)
    variants = session.execute(  # only editions cut off before a notice can owe one
        select(Variant.id, Variant.summary_ids, Edition.cutoff)
        .join(Edition, Edition.id == Variant.edition_id)
        .where(Edition.cutoff <= latest)
    ).all()
    for variant_id, summary_ids, cutoff in variants:
        concerned = [
            notice_id
            for s in summary_ids or ()
            for notice_id, made in by_summary.get(s, ())
            if cutoff <= made
        ]
        if not concerned:
            continue
        sent = session.scalars(
            select(Delivery.subscriber_id).where(
                Delivery.variant_id == variant_id,
                Delivery.status == DeliveryStatus.SENT.value,
                Delivery.subscriber_id.is_not(None),
            )
        ).all()
        for subscriber_id in sent:
            assert subscriber_id is not None
            owed.setdefault(subscriber_id, set()).update(concerned)
    if not owed:
        return {}
    carried = session.execute(
        select(NoticeDelivery.subscriber_id, NoticeDelivery.notice_id)
        .join(Delivery, Delivery.id == NoticeDelivery.delivery_id)
        .where(Delivery.status.not_in(_GAVE_UP))
    )
    for subscriber_id, notice_id in carried:
        if subscriber_id in owed:
            owed[subscriber_id].discard(notice_id)
    return {s: tuple(sorted(ids)) for s, ids in owed.items() if ids}


def record_notices(
    session: Session, edition_id: int, planned: Mapping[int, tuple[int, ...]]
) -> None:
    """Tie each planned reader's notices (``planned``: subscriber id -> notice ids) to
    their ledger row of ``edition_id``, in the caller's transaction."""
    if not planned:
        return
    rows = session.execute(
        select(Delivery.id, Delivery.subscriber_id).where(
            Delivery.edition_id == edition_id, Delivery.subscriber_id.in_(list(planned))
        )
    ).all()
    session.add_all(
        NoticeDelivery(
            notice_id=notice_id,
            delivery_id=delivery_id,
            subscriber_id=reader,
            edition_id=edition_id,
        )
        for delivery_id, reader in rows
        if reader is not None
        for notice_id in planned.get(reader, ())
    )
    session.flush()


def notices_sent(session: Session, edition_id: int) -> int:
    """How many notices went out in ``edition_id`` (on rows that were sent)."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(NoticeDelivery)
            .join(Delivery, Delivery.id == NoticeDelivery.delivery_id)
            .where(
                NoticeDelivery.edition_id == edition_id,
                Delivery.status == DeliveryStatus.SENT.value,
            )
        )
        or 0
    )


def notices_planned(session: Session, edition_id: int) -> int:
    """How many notices ride on ledger rows of ``edition_id``, whatever their status."""
    count = select(func.count()).select_from(NoticeDelivery)
    return int(session.scalar(count.where(NoticeDelivery.edition_id == edition_id)) or 0)


def notice_summaries(session: Session, notice_ids: Iterable[int]) -> list[tuple[Notice, Summary]]:
    """The notices ``notice_ids`` with their summaries, in id order."""
    wanted = sorted(set(notice_ids))
    if not wanted:
        return []
    rows = session.execute(
        select(Notice, Summary)
        .join(Summary, Summary.id == Notice.summary_id)
        .where(Notice.id.in_(wanted))
        .order_by(Notice.id)
    ).all()
    return [(notice, summary) for notice, summary in rows]
