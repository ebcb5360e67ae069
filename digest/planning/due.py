"""Whether this period's edition is due now (``digest send --due``), and if not, why not."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, select

from digest.config import Settings
from digest.planning.when import EARLIEST_ZONE, Schedule, current_key, is_due, send_moment
from digest.store.models import Edition, EditionStatus
from digest.store.schema import open_database


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
        status = session.scalar(select(Edition.status).where(Edition.key == key))
    if status == EditionStatus.COMPLETE:
        return f"edition {key} is complete"
    if status == EditionStatus.CANCELLED:
        return f"edition {key} was cancelled"
    if status == EditionStatus.PAUSED:
        return f"edition {key} is paused (digest bounces resume {key})"
    return None
