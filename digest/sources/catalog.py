"""The catalogue of categories: each one's slug, name, summaries and active subscribers."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.store.db import Category
from digest.store.models import summary_categories
from subscribers.service import category_subscriber_counts


@dataclass(frozen=True, slots=True)
class CategoryCount:
    slug: str
    name: str
    summaries: int
    subscribers: int


def category_counts(session: Session) -> list[CategoryCount]:
    """Every category by name, with how many summaries it holds and how many active
    subscribers chose it."""
    per_category = select(summary_categories.c.category_id, func.count()).group_by(
        summary_categories.c.category_id
    )
    summaries: dict[int, int] = {int(row[0]): int(row[1]) for row in session.execute(per_category)}
    subscribers = category_subscriber_counts(session)
    return [
        CategoryCount(c.slug, c.name, summaries.get(c.id, 0), subscribers.get(c.id, 0))
        for c in session.scalars(select(Category).order_by(Category.name))
    ]
