"""Readers who change topics after they were sent this period's edition: plan a second
message (ledger part 2, 3...) with only the summaries of their new topics that the edition's
earlier messages to them did not hold, up to the edition's cutoff. Nothing twice: a summary
they were already sent in this edition is never in it, and the next edition starts at this
one's cutoff as for everyone.

Only readers who chose topics (a consent record) after the edition's cutoff are looked at,
so the pass costs one query of the consents when nobody changed anything.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.delivery.ledger import DELIVERIES, SUBSCRIBERS
from digest.planning.readers import reader_subqueries
from digest.planning.selection import Catalog, Reader, select_items
from digest.store.models import DeliveryStatus, Variant
from subscribers.models import Consent, Status, Subscriber, Suppression

SUPPRESSIONS = Subscriber.metadata.tables[Suppression.__tablename__]
CONSENTS = Subscriber.metadata.tables[Consent.__tablename__]
BATCH = 5000


@dataclass(frozen=True, slots=True)
class TopUp:
    """A second (or later) message of the edition to one reader."""

    subscriber_id: int
    part: int
    categories: tuple[int, ...]  # the reader's categories now, sorted
    summary_ids: tuple[int, ...]  # newest first, none sent to them in this edition


def find_topups(
    session: Session,
    edition_id: int,
    cutoff: dt.datetime,
    catalog: Catalog,
    lookback: dt.timedelta,
) -> list[TopUp]:
    """The messages owed to readers who added topics after they were sent ``edition_id``."""
    chose = select(CONSENTS.c.subscriber_id).where(CONSENTS.c.created_at > cutoff).distinct()
    candidates = list(session.scalars(chose))
    rows: list[Any] = []  # (reader, part, status, categories, summaries) of their rows
    for start in range(0, len(candidates), BATCH):
        rows += session.execute(
            select(
                DELIVERIES.c.subscriber_id,
                DELIVERIES.c.part,
                DELIVERIES.c.status,
                Variant.category_ids,
                Variant.summary_ids,
            )
            .join(Variant, Variant.id == DELIVERIES.c.variant_id)
            .where(
                DELIVERIES.c.edition_id == edition_id,
                DELIVERIES.c.subscriber_id.in_(candidates[start : start + BATCH]),
            )
        ).all()
    if not rows:
        return []
    held: dict[int, list[tuple[int, str, list[int], list[int]]]] = {}
    for subscriber_id, part, status, categories, summaries in rows:
        held.setdefault(subscriber_id, []).append((part, status, categories, summaries))
    topups = []
    for reader in _readers(session, edition_id, list(held)):
        parts = sorted(held[reader.subscriber_id])
        last_part, last_status, _, _ = parts[-1]
        if last_status != DeliveryStatus.SENT:
            continue  # still to go (it is sent as planned), failed or skipped
        covered = {c for part in parts for c in part[2]}
        if reader.category_ids <= covered:
            continue
        sent = {s for part in parts for s in part[3]}
        items = tuple(i for i in select_items(reader, catalog, lookback) if i not in sent)
        if items:
            categories = tuple(sorted(reader.category_ids))
            topups.append(TopUp(reader.subscriber_id, last_part + 1, categories, items))
    return topups


def _readers(session: Session, edition_id: int, ids: list[int]) -> list[Reader]:
    """Those of ``ids`` who are active readers now, with their categories and windows."""
    categories, last_cutoff = reader_subqueries(edition_id)
    query = select(
        SUBSCRIBERS.c.id,
        categories,
        SUBSCRIBERS.c.active_since,
        last_cutoff,
        SUBSCRIBERS.c.frequency,
        SUBSCRIBERS.c.paused_until,
        SUBSCRIBERS.c.timezone,
    ).where(
        SUBSCRIBERS.c.id.in_(ids),
        SUBSCRIBERS.c.status == Status.ACTIVE.value,
        SUBSCRIBERS.c.active_since.is_not(None),
        ~select(SUPPRESSIONS.c.id)
        .where(SUPPRESSIONS.c.email_hash == SUBSCRIBERS.c.email_hash)
        .exists(),
    )
    return [
        Reader(rid, frozenset(map(int, chosen.split(","))), since, last, freq, paused, zone)
        for rid, chosen, since, last, freq, paused, zone in session.execute(query)
        if chosen
    ]
