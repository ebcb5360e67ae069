"""How the console names the variants of an edition: a hash of the variant's key in URLs
(no reader's id in it), and the variants of an edition already in the ledger."""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.planning.selection import VariantKey
from digest.store.models import Edition, Variant


def variant_id(key: VariantKey) -> str:
    """A stable name for a variant in URLs."""
    return hashlib.sha256(repr(key).encode("ascii")).hexdigest()[:16]


def ledger_variants(session: Session, key: str) -> dict[VariantKey, int]:
    """The variants of edition ``key`` in the ledger, by key, with their numbers."""
    rows = session.execute(
        select(Variant.number, Variant.category_ids, Variant.summary_ids, Variant.notice_ids)
        .join(Edition, Edition.id == Variant.edition_id)
        .where(Edition.key == key)
        .order_by(Variant.number)
    ).all()
    return {
        (tuple(categories), tuple(summaries), tuple(notices or ())): number
        for number, categories, summaries, notices in rows
    }
