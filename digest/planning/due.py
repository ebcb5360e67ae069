"""Whether this period's edition is due now (``digest send --due``), and if not, why not.

Cheap on purpose (cron runs it every five minutes): an edition that has gone to everyone
it planned is left alone unless something happened since it was planned that a new plan
would see: a reader became active (import, confirmation, resubscription) or came back from
a pause, or a summary of its period arrived.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, exists, select
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.planning.when import (
    EARLIEST_ZONE,
    Schedule,
    all_readers_due,
    current_key,
    is_due,
    send_moment,
)
from digest.store.models import Delivery, Edition, EditionStatus, Summary
from digest.store.schema import open_database
from subscribers.models import Consent, Status, Subscriber


def not_due_reason(
    settings: Settings, *, now: dt.datetime, engine: Engine | None = None
) -> str | None:
    """None when this period's edition should be sent now; otherwise why not, in one line."""
    schedule = Schedule.from_settings(settings)
    key = current_key(now, schedule)
    if not is_due(now, schedule):
        zone = EARLIEST_ZONE if schedule.local_delivery else schedule.zone
        when = send_moment(key, schedule, zone).astimezone(schedule.zone)
        return f"edition {key} is not due until {when:%a %Y-%m-%d %H:%M} ({settings.timezone})"
    with open_database(settings, engine)() as session:
        edition = session.scalar(select(Edition).where(Edition.key == key))
        if edition is None:
            return None
        if edition.status == EditionStatus.CANCELLED:
            return f"edition {key} was cancelled"
        if edition.status == EditionStatus.PAUSED:
            return f"edition {key} is paused (digest bounces resume {key})"
        if edition.planned_at is None or not all_readers_due(key, schedule, now):
            return None
        if edition.status == EditionStatus.OPEN and session.scalar(
            select(exists().where(Delivery.edition_id == edition.id))
        ):
            return None  # rows to send, or a run that ended before recording completion
        if changed_since(session, edition, now=now):
            return None  # late readers, or summaries for readers who had nothing new
    if edition.status == EditionStatus.COMPLETE:
        return f"edition {key} is complete"
    return f"edition {key} has nobody to send to yet; readers who join this week get it"


def changed_since(session: Session, edition: Edition, *, now: dt.datetime) -> bool:
    """Whether a plan of ``edition`` now could find readers its last plan did not: someone
    became active, chose topics or their pause ended after ``planned_at``, or a summary
    published up to its cutoff was imported since. A few single-pass ``EXISTS`` queries."""
    since = edition.planned_at
    assert since is not None
    active = Subscriber.status == Status.ACTIVE.value
    queries = (
        exists().where(active, Subscriber.active_since > since),
        exists().where(active, Subscriber.paused_until > since, Subscriber.paused_until <= now),
        exists().where(Summary.created_at > since, Summary.published_at <= edition.cutoff),
        exists().where(Consent.created_at > since),  # someone chose (or changed) topics
    )
    return any(session.scalar(select(query)) for query in queries)
