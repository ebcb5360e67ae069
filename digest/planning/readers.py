"""What planning needs to know of each reader, as correlated subqueries (each one index
look-up): the categories they chose, and the cutoff of the last other edition they were sent.
Shared by the planning of an edition and by its top-ups for readers who added topics."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, cast, func, select
from sqlalchemy.sql.selectable import ScalarSelect

from digest.delivery.ledger import DELIVERIES, EDITIONS, SUBSCRIBERS
from subscribers.models import Subscription

SUBSCRIPTIONS = Subscription.metadata.tables[Subscription.__tablename__]


def reader_subqueries(edition_id: int | None) -> tuple[ScalarSelect[Any], ScalarSelect[Any]]:
    """(categories as text such as ``1,4,7``, last cutoff before ``edition_id``'s) of the
    reader in the outer query's ``subscribers`` row."""
    delivered = DELIVERIES.alias("delivered")
    categories = (
        select(func.aggregate_strings(cast(SUBSCRIPTIONS.c.category_id, String), ","))
        .where(SUBSCRIPTIONS.c.subscriber_id == SUBSCRIBERS.c.id)
        .scalar_subquery()
    )
    last_cutoff = (
        select(func.max(EDITIONS.c.cutoff))
        .select_from(delivered.join(EDITIONS, EDITIONS.c.id == delivered.c.edition_id))
        .where(
            delivered.c.subscriber_id == SUBSCRIBERS.c.id,
            # the condition of the partial index ix_deliveries_subscriber_sent, as it is:
            # only rows sent have a sent_at
            delivered.c.sent_at.is_not(None),
            EDITIONS.c.id != edition_id,
        )
        .scalar_subquery()
    )
    return categories, last_cutoff
